import type { Logger } from '../log.ts';
import { RateLimitedLog } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';
import type { ReadPace, Reader } from '../pipeline.ts';
import type { TapPoint } from '../tap.ts';
import { BatchAck, type Acknowledger, type LogRecord } from '../record.ts';
import { UNMATCHED } from './graph.ts';
import { createTransform, type TransformConfig } from './registry.ts';
import type { BatchContext, Outlet, Transform } from './transform.ts';

const RESOLVED = Promise.resolve();
const noop = () => {};

export interface TransformNodeOptions {
  metrics: SelfMetrics;
  log: Logger;
  /** The readers of a port now (looked up per batch, so a reload can swap them). */
  readers: (port: string) => readonly Reader[];
  /** The transform's live tap (what it passes on); one boolean check while nobody listens. */
  tap?: TapPoint;
}

/**
 * A transform in the running graph: takes a batch like an output does (`push`), hands it to the
 * transform, sends what comes out to the readers of each port, and acknowledges the batch upstream
 * once every reader of everything it passed on accepted it (and every hold is released). Records
 * it passed on to nobody (a route's unread `_unmatched`) are dropped and counted. The promise of
 * `push` is the flow control of the readers' pushes (a full `block` buffer) and of a `pause`
 * asked for a source that cannot pace per file.
 */
export class TransformNode implements Reader {
  readonly name: string;
  readonly config: TransformConfig;
  readonly transform: Transform;
  private readonly o: TransformNodeOptions;
  private readonly recordsIn: { inc(n: number): void };
  private readonly recordsOut: { inc(n: number): void };
  private readonly warnings: RateLimitedLog;

  constructor(name: string, config: TransformConfig, o: TransformNodeOptions) {
    this.name = name;
    this.config = config;
    this.o = o;
    this.recordsIn = o.metrics.transformRecords.labels({ transform: name, direction: 'in' });
    this.recordsOut = o.metrics.transformRecords.labels({ transform: name, direction: 'out' });
    this.warnings = new RateLimitedLog(o.log);
    this.transform = createTransform(config, {
      name,
      metrics: o.metrics,
      log: o.log,
      warnings: this.warnings,
      emit: (records, release) => void this.send(records, undefined, estimateBytes(records), undefined, release),
    });
  }

  push(records: LogRecord[], bytes: number, ack: Acknowledger, pace?: ReadPace): Promise<void> {
    this.recordsIn.inc(records.length);
    let pending = 1;
    const release = () => {
      if (--pending === 0) ack.accept();
    };
    let waits: Promise<void>[] | undefined;
    let pauseMs = 0;
    const batch: BatchContext = {
      bytes,
      hold: () => {
        pending++;
        let released = false;
        return () => {
          if (released) return;
          released = true;
          release();
        };
      },
      pause: (ms) => {
        if (pace) pace.holdFor(ms);
        else pauseMs = Math.max(pauseMs, ms);
      },
    };
    const outlet: Outlet = (out, port, extra) => {
      const share = out === records ? bytes : Math.round((bytes * out.length) / Math.max(1, records.length));
      pending++;
      const wait = this.send(out, port, share, pace, () => {
        extra?.();
        release();
      });
      if (wait !== RESOLVED) (waits ??= []).push(wait);
    };
    try {
      this.transform.process(records, batch, outlet);
    } catch (err) {
      // A bug, not bad input: say so loudly, and let the records through rather than lose them.
      this.o.metrics.transformErrors.inc({ transform: this.name, expression: 'internal' });
      this.warnings.warn('internal', `transform ${this.name}: failed on a batch (${(err as Error).stack ?? String(err)}); passing it on unchanged`);
      outlet(records);
    }
    release();
    if (pauseMs > 0) (waits ??= []).push(new Promise((r) => setTimeout(r, pauseMs).unref()));
    if (!waits) return RESOLVED;
    return waits.length === 1 ? waits[0]! : Promise.all(waits).then(noop);
  }

  /** Passes `records` to the readers of `port`; `done` once all accepted them (or at once when none reads it). */
  private send(records: LogRecord[], port: string | undefined, bytes: number, pace: ReadPace | undefined, done: () => void): Promise<void> {
    if (records.length === 0) {
      done();
      return RESOLVED;
    }
    const tap = this.o.tap;
    if (tap?.active) tap.publish(records);
    const readers = this.o.readers(port === undefined ? this.name : `${this.name}.${port}`);
    if (readers.length === 0) {
      this.o.metrics.droppedRecords.inc({ component: this.name, reason: port === UNMATCHED ? 'unmatched' : 'no_reader' }, records.length);
      done();
      return RESOLVED;
    }
    this.recordsOut.inc(records.length);
    const ack = new BatchAck(readers.length, done);
    if (readers.length === 1) return readers[0]!.push(records, bytes, ack, pace);
    let waits: Promise<void>[] | undefined;
    for (const r of readers) {
      const w = r.push(records, bytes, ack, pace);
      if (w !== RESOLVED) (waits ??= []).push(w);
    }
    return waits ? Promise.all(waits).then(noop) : RESOLVED;
  }

  flush(): void {
    this.transform.flush?.();
  }

  close(): void {
    this.transform.close?.();
  }
}

/** Raw size of records a transform emits on its own (a memory buffer counts bytes against max_size). */
function estimateBytes(records: readonly LogRecord[]): number {
  let n = 0;
  for (const r of records) n += typeof r.body === 'string' ? r.body.length + 64 : 256;
  return n;
}

