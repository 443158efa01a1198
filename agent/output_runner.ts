import { PermanentError, RetryableError, type Output, type RecordFailure } from '../outputs/output.ts';
import { Backoff } from './backoff.ts';
import type { BufferChunk, RecordBuffer } from './buffers/buffer.ts';
import type { DeadLetterFile } from './dead_letter.ts';
import { RateLimitedLog, type Logger } from './log.ts';
import type { SelfMetrics } from './metrics.ts';
import type { Acknowledger, LogRecord } from './record.ts';
import type { TapPoint } from './tap.ts';

export interface BatchSettings {
  readonly maxBytes: number;
  readonly maxEvents: number;
  /** How long a worker waits for a partly filled batch to fill; 0: send what is there at once. */
  readonly timeoutMs: number;
}

export interface RunnerOptions {
  readonly buffer: RecordBuffer;
  readonly batch: BatchSettings;
  readonly retry: { readonly initialMs: number; readonly maxMs: number };
  /** Batches in flight at once. */
  readonly concurrency: number;
  /** Absent: refused records are dropped (counted) instead. */
  readonly deadLetter: DeadLetterFile | undefined;
  readonly metrics: SelfMetrics;
  readonly log: Logger;
  /** What the output is handed, for `tap` (published only while someone listens). */
  readonly tap?: TapPoint;
}

/** How an output fares, for the status page and `top`. */
export interface OutputHealth {
  /** Epoch ms of the last batch the receiver accepted. */
  lastSuccessMs: number | undefined;
  /** Epoch ms of the first failed attempt since the last success; undefined while healthy. */
  failingSince: number | undefined;
  /** The last failure's message while failing. */
  lastError: string | undefined;
}

/** A Retry-After longer than this is taken as this: a receiver's typo must not park an output for a day. */
const MAX_RETRY_AFTER_MS = 10 * 60_000;

/** Attempts a batch gets when encoding it throws (see isEncodingFault) before it is dead-lettered. */
const MAX_ENCODING_FAULTS = 3;

/**
 * A JavaScript error thrown by the output's own code (TypeError, RangeError: a record it cannot
 * encode), as opposed to an I/O error (a system error has a `code`: ENOSPC, ECONNRESET …) or an
 * answer the output classified. Those are retried for as long as it takes; this one would fail
 * the same way every time.
 */
function isEncodingFault(err: unknown): boolean {
  return (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError) && !('code' in err);
}

/** Chunks a stopped runner had read but not delivered, for its successor to send first. */
export type Unfinished = BufferChunk[][];

/**
 * Feeds one output from its buffer: `concurrency` workers each read a batch (up to
 * `batch.max_events` / `max_bytes`, waiting at most `batch.timeout` for it to fill), send it, and
 * acknowledge it to the buffer once the receiver accepted it. A failed request is retried, with
 * exponential backoff and jitter or after the receiver's Retry-After, until it goes through: an
 * output down for an hour holds its records in the buffer (and, `when_full: block`, pauses its
 * sources), it drops nothing. What the receiver refuses for good (PermanentError, or items a bulk
 * answer marks as not retryable) goes to the dead-letter file and is acknowledged, so it does not
 * block what follows; items marked retryable are sent again alone.
 */
export class OutputRunner {
  readonly output: Output;
  readonly buffer: RecordBuffer;
  private readonly opts: RunnerOptions;
  private readonly warnings: RateLimitedLog;
  private readonly labels: { output: string };
  /** Aborts reads and backoff waits (stop, detach): a request in flight still ends. */
  private readonly stopReads = new AbortController();
  /** Aborts requests in flight (abandon, discard). */
  private readonly stopSends = new AbortController();
  /** Aborted when batches should stop waiting to fill (drain, stop). */
  private readonly noLinger = new AbortController();
  private stopping = false;
  private workers: Promise<void>[] = [];
  private readonly carried: BufferChunk[][] = [];
  private readonly unfinished: BufferChunk[][] = [];
  private readonly healthState: OutputHealth = { lastSuccessMs: undefined, failingSince: undefined, lastError: undefined };
  private failedAttempts = 0;
  private readonly lastSuccessGauge;

  constructor(output: Output, opts: RunnerOptions) {
    this.output = output;
    this.buffer = opts.buffer;
    this.opts = opts;
    this.warnings = new RateLimitedLog(opts.log, 10_000);
    this.labels = { output: output.name };
    this.lastSuccessGauge = opts.metrics.outputLastSuccess.labels(this.labels);
  }

  health(): OutputHealth {
    return { ...this.healthState };
  }

  /** Starts the workers; `carried` (a predecessor's unfinished batches) go out first. */
  start(carried: Unfinished = []): void {
    this.carried.push(...carried);
    for (let i = 0; i < this.opts.concurrency; i++) this.workers.push(this.work());
  }

  /**
   * Hands records to the buffer. Resolves once the buffer took them (or dropped them, counted):
   * with `when_full: block` it stays pending while the buffer is full, which is how a slow output
   * slows its sources. `ack` fires per the buffer's promise (disk: durable; memory: delivered).
   */
  push(records: LogRecord[], bytes: number, ack: Acknowledger): Promise<void> {
    const tap = this.opts.tap;
    if (tap?.active) tap.publish(records);
    return this.buffer.push(records, bytes, () => ack.accept()).then(() => undefined);
  }

  /**
   * For shutdown: stop waiting for batches to fill, then wait until what the buffer holds is
   * accepted (memory: delivered) or, for a disk buffer, only until the requests in flight end: its
   * records are durable already and are sent after the restart. True when nothing is left owed.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.noLinger.abort();
    if (this.buffer.type === 'disk') return this.stopWorkers(timeoutMs);
    return this.buffer.drain(timeoutMs);
  }

  /**
   * For a reload that replaces the output but keeps its buffer: stops after the requests in
   * flight, and gives back the batches read but not delivered, for the successor (which shares
   * this buffer) to send first. Nothing is acknowledged twice and nothing is left behind.
   */
  async detach(): Promise<Unfinished> {
    await this.stopWorkers(Infinity);
    return [...this.carried.splice(0), ...this.unfinished.splice(0)];
  }

  /** Gives up on what is in flight (shutdown past its deadline): it is read again after the restart. */
  abandon(): void {
    this.stopSends.abort();
    void this.stopWorkers(0);
  }

  /**
   * For an output removed from the config that could not deliver in time: every record still
   * held is acknowledged as dropped (counted), so its sources move on. Returns how many.
   */
  async discard(): Promise<number> {
    this.stopSends.abort();
    await this.stopWorkers(Infinity);
    let dropped = 0;
    const ackAll = (chunks: BufferChunk[]) => {
      for (const c of chunks) {
        dropped += c.records.length;
        this.buffer.ack(c);
      }
    };
    for (const chunks of [...this.carried.splice(0), ...this.unfinished.splice(0)]) ackAll(chunks);
    for (;;) {
      const chunk = await this.buffer.read(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, AbortSignal.timeout(5));
      if (!chunk) break;
      ackAll([chunk]);
    }
    return dropped;
  }

  async close(): Promise<void> {
    await this.stopWorkers(0);
    await this.buffer.close();
    await this.output.close();
  }

  private async stopWorkers(timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    this.noLinger.abort();
    this.stopReads.abort();
    const all = Promise.all(this.workers).then(() => true);
    if (timeoutMs === Infinity) return all;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    const done = await Promise.race([all, late]);
    clearTimeout(timer);
    return done;
  }

  private async work(): Promise<void> {
    while (!this.stopping) {
      const chunks = this.carried.shift() ?? (await this.collect());
      if (!chunks) return;
      if (!(await this.deliver(chunks))) {
        this.unfinished.push(chunks);
        return;
      }
      for (const c of chunks) this.buffer.ack(c);
    }
  }

  /** One batch: the first chunk as soon as there is one, then more until full or `batch.timeout`. */
  private async collect(): Promise<BufferChunk[] | undefined> {
    const { maxEvents, maxBytes, timeoutMs } = this.opts.batch;
    const first = await this.buffer.read(maxEvents, maxBytes, this.stopReads.signal);
    if (!first) return undefined;
    const chunks = [first];
    let events = first.records.length;
    let bytes = first.bytes;
    const deadline = Date.now() + timeoutMs;
    while (events < maxEvents && bytes < maxBytes && !this.noLinger.signal.aborted) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const next = await this.buffer.read(maxEvents - events, maxBytes - bytes, AbortSignal.any([this.noLinger.signal, AbortSignal.timeout(left)]));
      if (!next) break;
      chunks.push(next);
      events += next.records.length;
      bytes += next.bytes;
    }
    return chunks;
  }

  /**
   * Sends until every record is accepted or dead-lettered (true), or the runner stops first
   * (false: the chunks are not acknowledged and go out again, from the successor or after a restart).
   */
  private async deliver(chunks: BufferChunk[]): Promise<boolean> {
    const { metrics } = this.opts;
    const name = this.output.name;
    let records = chunks.length === 1 ? chunks[0]!.records : chunks.flatMap((c) => c.records);
    const backoff = new Backoff(this.opts.retry.initialMs, this.opts.retry.maxMs);
    let faults = 0;
    for (;;) {
      if (this.stopSends.signal.aborted) return false;
      const started = process.hrtime.bigint();
      let failed: readonly RecordFailure[];
      try {
        const result = await this.output.send(records, this.stopSends.signal);
        metrics.outputRequestDuration.observe(this.labels, Number(process.hrtime.bigint() - started) / 1e9);
        this.succeeded();
        failed = result.failed ?? [];
        const rejected = result.rejected?.count ?? 0;
        metrics.outputRecords.inc({ output: name, status: 'sent' }, records.length - failed.length - rejected);
        metrics.outputBytes.inc(this.labels, result.bytes);
        if (rejected > 0) {
          metrics.outputRecords.inc({ output: name, status: 'failed' }, rejected);
          metrics.droppedRecords.inc({ component: name, reason: 'rejected_by_receiver' }, rejected);
          this.warnings.warn('rejected', `output ${name}: the receiver dropped ${rejected} of ${records.length} records: ${result.rejected!.reason}`);
        }
      } catch (err) {
        metrics.outputRequestDuration.observe(this.labels, Number(process.hrtime.bigint() - started) / 1e9);
        if (err instanceof PermanentError) {
          await this.refuse(records, err.message);
          return true;
        }
        if (this.stopSends.signal.aborted) return false;
        if (isEncodingFault(err) && ++faults >= MAX_ENCODING_FAULTS) {
          // Not the receiver, not the network: the batch itself cannot be encoded (a bug meeting
          // an odd record). Retrying forever would stop this output for good behind it.
          await this.refuse(records, `could not be encoded: ${(err as Error).message}`);
          return true;
        }
        this.failed(err as Error);
        // A Retry-After of 0 (or a date in the past) still waits retry.initial: no hot loop against a receiver that keeps refusing.
        const wait =
          err instanceof RetryableError && err.retryAfterMs !== undefined
            ? Math.min(Math.max(err.retryAfterMs, this.opts.retry.initialMs), MAX_RETRY_AFTER_MS)
            : backoff.next();
        this.warnings.warn('retry', `output ${name}: sending ${records.length} records failed (${(err as Error).message}); retrying in ${Math.round(wait)} ms`);
        if (!(await this.retryAfter(wait, records.length))) return false;
        continue;
      }
      if (failed.length === 0) return true;

      const again: LogRecord[] = [];
      const refused = new Map<string, LogRecord[]>();
      for (const f of failed) {
        const r = records[f.index];
        if (r === undefined) continue;
        if (f.retryable) again.push(r);
        else refused.set(f.reason, [...(refused.get(f.reason) ?? []), r]);
      }
      for (const [reason, rs] of refused) await this.refuse(rs, reason);
      if (again.length === 0) return true;
      this.warnings.warn('items', `output ${name}: the receiver refused ${again.length} of ${records.length} records for now (${failed.find((f) => f.retryable)!.reason}); sending those again`);
      records = again;
      if (!(await this.retryAfter(backoff.next(), again.length))) return false;
    }
  }

  private succeeded(): void {
    const now = Date.now();
    const h = this.healthState;
    h.lastSuccessMs = now;
    this.lastSuccessGauge.set(now / 1000);
    if (h.failingSince === undefined) return;
    // The failures were logged at most once per 10 s; the way back is logged once, with what it cost.
    const waiting = this.buffer.stats().records;
    this.opts.log.info(
      `output ${this.output.name}: recovered: the receiver accepts again after ${((now - h.failingSince) / 1000).toFixed(1)} s and ` +
        `${this.failedAttempts} failed attempts (last: ${h.lastError}); ${waiting} records waiting in the buffer are on their way`,
    );
    h.failingSince = undefined;
    h.lastError = undefined;
    this.failedAttempts = 0;
  }

  private failed(err: Error): void {
    const h = this.healthState;
    h.failingSince ??= Date.now();
    h.lastError = err.message;
    this.failedAttempts++;
  }

  private async retryAfter(ms: number, records: number): Promise<boolean> {
    this.opts.metrics.outputRetries.inc(this.labels);
    this.opts.metrics.outputRetriedRecords.inc(this.labels, records);
    return sleep(ms, this.stopReads.signal);
  }

  /** Records the receiver will never take: to the dead-letter file (or dropped when there is none or it fails), counted either way. */
  private async refuse(records: LogRecord[], reason: string): Promise<void> {
    const { metrics, deadLetter } = this.opts;
    const name = this.output.name;
    metrics.outputRecords.inc({ output: name, status: 'failed' }, records.length);
    if (deadLetter) {
      try {
        await deadLetter.write(records, reason);
        metrics.deadLetterRecords.inc(this.labels, records.length);
        this.warnings.warn('refused', `output ${name}: the receiver refused ${records.length} records for good (${reason}); written to ${deadLetter.path}`);
        return;
      } catch (err) {
        this.opts.log.error(`output ${name}: could not write the dead-letter file ${deadLetter.path}: ${(err as Error).message}`);
      }
    }
    metrics.droppedRecords.inc({ component: name, reason: 'undeliverable' }, records.length);
    this.warnings.warn('dropped', `output ${name}: the receiver refused ${records.length} records for good (${reason}); dropped`);
  }
}

/** Resolves true after `ms`, false at once when `signal` aborts first. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(ok);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
