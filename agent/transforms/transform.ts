import type { Logger, RateLimitedLog } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';
import type { LogRecord } from '../record.ts';

/**
 * One processing step between sources and outputs (`transforms:` in the config). A transform sees
 * each batch once, synchronously, and says what goes on through `out`; the pipeline node around
 * it (agent/pipeline.ts) does the routing, the fan-out and the acknowledgements:
 * - records not passed on are dropped: the transform counts them in dropped_records_total with
 *   its reason, and the batch is acknowledged upstream once what was passed on is accepted;
 * - transforms never change a record they were given (another branch of the graph may hold the
 *   same object): they pass on a new record object with the change;
 * - a transform that keeps a record past the batch (dedupe) takes a `hold()` on the batch and
 *   releases it once what it made of the record was accepted downstream.
 */
export interface Transform {
  process(records: LogRecord[], batch: BatchContext, out: Outlet): void;
  /** Passes on everything held (stop, reload); the records go out through the context's `emit`. */
  flush?(): void;
  /** Stops timers; called after `flush`. */
  close?(): void;
}

/** What a transform knows about the batch it is handed. */
export interface BatchContext {
  /** Raw bytes the batch was read from (0 when the source does not count them). */
  readonly bytes: number;
  /** Keeps the batch unacknowledged until the returned function is called (once). */
  hold(): () => void;
  /**
   * Asks the source to read what this batch came from no sooner than `ms` from now (throttle's
   * `pause`): per file for container_logs, the whole source's next batch otherwise.
   */
  pause(ms: number): void;
}

/**
 * Passes records on. `port` names a route (undefined: the transform's one output). `release` is
 * called once every reader of the port accepted them (dedupe releases the holds it took).
 */
export type Outlet = (records: LogRecord[], port?: string, release?: () => void) => void;

/** Everything a transform is built with. */
export interface TransformContext {
  name: string;
  metrics: SelfMetrics;
  log: Logger;
  /** For problems that recur per record (an expression failing): once a minute per key. */
  warnings: RateLimitedLog;
  /** Passes records on outside of `process` (a timer, `flush`): acknowledged through `release`. */
  emit: (records: LogRecord[], release: () => void) => void;
}

/** Counts a failed expression; `on_error` decides what happens to the record. */
export function transformError(ctx: TransformContext, expression: string, message: string): void {
  ctx.metrics.transformErrors.inc({ transform: ctx.name, expression });
  ctx.warnings.warn(
    `error:${expression}`,
    `transform ${ctx.name}: ${expression} failed on a record: ${message} (counted in telemetry_agent_transform_errors_total)`,
  );
}
