import type { RecordBatch } from '../agent/record.ts';
import type { SelfMetrics } from '../agent/metrics.ts';

/**
 * What every output plugin implements. The pipeline hands batches over in order; `write` resolves
 * once the records are accepted (written, delivered, or made durable). The pipeline calls the
 * batch's acknowledger after that, so an output never touches checkpoints itself.
 * A rejected promise means "not accepted": the pipeline retries it (records are never dropped silently).
 */
export interface Output {
  readonly name: string;
  /** Resolves with the number of encoded bytes written or sent. */
  write(batch: RecordBatch): Promise<number>;
  /** Make everything accepted so far durable where that means something (fsync, flush). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface OutputContext {
  readonly name: string;
  readonly metrics: SelfMetrics;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string) => void;
}
