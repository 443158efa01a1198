import type { LogRecord } from '../agent/record.ts';
import type { SelfMetrics } from '../agent/metrics.ts';

/**
 * What every output plugin implements: encode and send one batch. Batching, buffering, retries,
 * dead letters and acknowledgements belong to the pipeline (agent/pipeline.ts), so a plugin is only
 * its wire format and the receiver's answer, told apart as:
 * - resolves: the receiver accepted the batch, or all of it except `failed` records;
 * - throws RetryableError: nothing was accepted, try the whole batch again (after `retryAfterMs`
 *   when the receiver said so, e.g. 429/503 Retry-After);
 * - throws PermanentError: the batch can never be accepted as it is (a 400 for the whole request);
 *   its records go to the dead-letter file;
 * - throws anything else: treated as retryable (a reset connection, a timeout).
 */
export interface Output {
  readonly name: string;
  send(records: readonly LogRecord[], signal: AbortSignal): Promise<SendResult>;
  /** Make everything accepted so far durable where that means something (fsync, flush). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface SendResult {
  /** Bytes put on the wire (after compression). */
  bytes: number;
  /** Records the receiver refused one by one (bulk item errors, partial success); absent: all accepted. */
  failed?: readonly RecordFailure[];
  /**
   * Records the receiver says it dropped without saying which (OTLP partial_success
   * rejected_log_records): counted as failed and logged with the receiver's message, not retried.
   */
  rejected?: { count: number; reason: string };
}

export interface RecordFailure {
  /** Index into the `records` passed to `send`. */
  index: number;
  /** True when sending this record again may succeed (an item 429 or 503 in a bulk answer). */
  retryable: boolean;
  reason: string;
}

export class RetryableError extends Error {
  override name = 'RetryableError';
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retryAfterMs?: number) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

export class PermanentError extends Error {
  override name = 'PermanentError';
}

export interface OutputContext {
  readonly name: string;
  readonly metrics: SelfMetrics;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string) => void;
  /** The agent's data_dir (disk buffers, dead letters live below it). */
  readonly dataDir: string;
}
