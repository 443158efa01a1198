import type { LogRecord } from '../record.ts';

/**
 * The buffer in front of one output: sources push records in, the output's workers read chunks out
 * and acknowledge them once the output accepted them. Two implementations, chosen per output in the
 * config: `memory` (bounded by bytes and events, lost on a restart) and `disk` (segmented
 * append-only files under data_dir, survives a restart).
 *
 * Two promises, two moments, the same code for both types:
 * - `push(...)` resolves when the buffer has TAKEN the records (queued in memory; written to the
 *   segment file), or dropped them (`when_full: drop_newest`). It is the flow control: with
 *   `when_full: block` it stays pending while the buffer is full, so the caller's sources pause.
 * - `onAccepted` (the argument of `push`) fires when the delivery promise lets the source move its
 *   checkpoint past these records: for `disk` once they are durable per the fsync policy, for
 *   `memory` once the output delivered them (every chunk holding them was acknowledged). Records
 *   dropped on purpose (counted) are accepted at once. It fires once per push, pushes in order, and
 *   may fire before `push` returns (a drop; `fsync: never`). A buffer closed before taking a push
 *   never calls it: the source reads those records again after a restart.
 * Keeping the two apart lets a source go on reading while its earlier records wait for an fsync
 * (group commit) or for delivery, within the buffer's bounds.
 * So the pipeline writes `await buffer.push(records, bytes, () => batch.ack.accept())` whatever the
 * type; it never needs to know which moment applies.
 */
export interface RecordBuffer {
  readonly type: BufferType;
  /** Name of the output the buffer feeds (metric label). */
  readonly output: string;

  /**
   * Hands records over, in order (pushes are taken in call order, a later small one never passes a
   * blocked earlier one). `bytes` is the raw input size the records came from (the memory buffer
   * counts it against `max_bytes`; the disk buffer counts the bytes it writes instead). The buffer
   * keeps the array and the records: the caller must not change them afterwards. Never rejects.
   */
  push(records: LogRecord[], bytes: number, onAccepted: () => void): Promise<PushResult>;

  /**
   * Waits until records are available and returns the oldest records not handed out yet, at most
   * `maxEvents` and `maxBytes` (a record is never split: a single record larger than `maxBytes`
   * comes alone). Several chunks may be outstanding at once. Resolves `undefined` when `signal`
   * aborts or the buffer closes.
   */
  read(maxEvents: number, maxBytes: number, signal?: AbortSignal): Promise<BufferChunk | undefined>;

  /**
   * The output accepted this chunk. Acknowledgements may come in any order; space is freed (and the
   * disk buffer's read position persisted) only over the acknowledged prefix, so a chunk not
   * acknowledged before a restart is read again after it (at least once). Unknown or repeated
   * chunks are ignored.
   */
  ack(chunk: BufferChunk): void;

  /** What the buffer holds and nobody acknowledged yet (`oldestMs`: epoch ms when the oldest of it was pushed). */
  stats(): BufferStats;

  /** Resolves true once everything pushed is acknowledged; false after `timeoutMs` or when the buffer closes first. */
  drain(timeoutMs: number): Promise<boolean>;

  /**
   * Stops taking records: pending pushes resolve `{ accepted: 0, dropped: 0 }`, pending reads
   * `undefined`. The disk buffer syncs, persists its read position and closes its files;
   * unacknowledged records stay on disk and are read again by the next open.
   */
  close(): Promise<void>;
}

export type BufferType = 'memory' | 'disk';

/** What a full buffer does with a push: wait for room (sources pause) or drop it (counted). */
export type WhenFull = 'block' | 'drop_newest';

/**
 * When the disk buffer calls `onAccepted` (lets the source checkpoint move):
 * - `always`: after an fsync that covers the records (concurrent pushes share one fsync);
 * - `interval`: after the next periodic fsync (every `fsync_interval`, or sooner once 2 MiB wait);
 * - `never`: right after write(2). Survives the agent being killed (the data is in the page cache),
 *   not the node crashing or losing power.
 */
export type FsyncPolicy = 'always' | 'interval' | 'never';

export interface PushResult {
  /** Records the buffer took. */
  readonly accepted: number;
  /** Records dropped because the buffer (or its volume) was full; counted in dropped_records_total. */
  readonly dropped: number;
}

/** Records read out of a buffer, to be written by the output and then given back to `ack`. */
export interface BufferChunk {
  readonly records: LogRecord[];
  /** Memory: the raw bytes the records were pushed with. Disk: their encoded JSON size. */
  readonly bytes: number;
}

export interface BufferStats {
  bytes: number;
  records: number;
  oldestMs: number | undefined;
}
