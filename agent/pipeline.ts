import type { Output } from '../outputs/output.ts';
import type { Logger } from './log.ts';
import type { SelfMetrics } from './metrics.ts';
import { BatchAck, type LogRecord, type RecordBatch } from './record.ts';

/** What a source sees of the pipeline: hand over records, learn when to slow down. */
export interface Emitter {
  /**
   * Routes records to every output that lists the source. `onAccepted` fires once all of them
   * accepted. The returned promise resolves when the outputs have room for more.
   */
  emit(records: LogRecord[], bytes: number, onAccepted: () => void): Promise<void>;
}

interface Queued {
  batch: RecordBatch;
}

/**
 * Feeds one output in order, retrying a batch it rejected (with backoff) rather than dropping it,
 * and holding at most `maxQueuedBytes` so a slow output slows its sources instead of growing memory.
 */
export class OutputRunner {
  readonly output: Output;
  private readonly metrics: SelfMetrics;
  private readonly log: Logger;
  private readonly maxQueuedBytes: number;
  private readonly queue: Queued[] = [];
  private queuedBytes = 0;
  private queuedRecords = 0;
  private running = false;
  private closing = false;
  private roomWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;

  constructor(output: Output, metrics: SelfMetrics, log: Logger, opts: { maxQueuedBytes: number; retryInitialMs?: number; retryMaxMs?: number }) {
    this.output = output;
    this.metrics = metrics;
    this.log = log;
    this.maxQueuedBytes = opts.maxQueuedBytes;
    this.retryInitialMs = opts.retryInitialMs ?? 250;
    this.retryMaxMs = opts.retryMaxMs ?? 30_000;
  }

  get hasRoom(): boolean {
    return this.queuedBytes < this.maxQueuedBytes;
  }

  get idle(): boolean {
    return !this.running && this.queue.length === 0;
  }

  waitForRoom(): Promise<void> {
    if (this.hasRoom) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Takes over batches a replaced runner did not deliver, ahead of anything new. */
  adopt(batches: RecordBatch[]): void {
    for (const batch of batches) this.enqueue(batch);
  }

  enqueue(batch: RecordBatch): void {
    this.queue.push({ batch });
    this.queuedBytes += batch.bytes;
    this.queuedRecords += batch.records.length;
    this.updateGauges();
    if (!this.running) void this.run();
  }

  /** Resolves when everything queued was accepted, or after `timeoutMs`; true when drained. */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.idle) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Stop retrying: a shutdown past its deadline leaves the rest to the checkpoint (read again next start). */
  abandon(): void {
    this.closing = true;
  }

  /**
   * For a config reload that replaces this output: stop after the write in progress and give back
   * every batch not accepted yet, in order, for the replacement to send. Nothing is acknowledged
   * twice and nothing is left behind.
   */
  async detach(): Promise<RecordBatch[]> {
    this.closing = true;
    if (this.running) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    const rest = this.queue.map((q) => q.batch);
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.queuedRecords = 0;
    this.updateGauges();
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
    return rest;
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0 && !this.closing) {
      const { batch } = this.queue[0]!;
      // A batch written is acknowledged even when a detach or shutdown came meanwhile: handing
      // it on as well would send it twice.
      if (!(await this.deliver(batch))) break;
      this.queue.shift();
      this.queuedBytes -= batch.bytes;
      this.queuedRecords -= batch.records.length;
      this.updateGauges();
      batch.ack.accept();
      if (this.hasRoom && this.roomWaiters.length) {
        const waiters = this.roomWaiters;
        this.roomWaiters = [];
        for (const w of waiters) w();
      }
    }
    this.running = false;
    if (this.queue.length === 0 || this.closing) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Writes one batch, retrying with backoff until accepted (true) or the runner closes (false). */
  private async deliver(batch: RecordBatch): Promise<boolean> {
    const name = this.output.name;
    for (let attempt = 0; ; attempt++) {
      const started = process.hrtime.bigint();
      try {
        const { bytes, failed } = await this.output.send(batch.records, new AbortController().signal);
        if (failed?.length) throw new Error(`${failed.length} records refused: ${failed[0]!.reason}`);
        this.metrics.outputRequestDuration.observe({ output: name }, Number(process.hrtime.bigint() - started) / 1e9);
        this.metrics.outputRecords.inc({ output: name, status: 'sent' }, batch.records.length);
        this.metrics.outputBytes.inc({ output: name }, bytes);
        return true;
      } catch (err) {
        this.metrics.outputRecords.inc({ output: name, status: 'failed' }, batch.records.length);
        if (this.closing) return false;
        const delay = Math.min(this.retryMaxMs, this.retryInitialMs * 2 ** attempt) * (0.5 + Math.random() / 2);
        this.log.warn(`output ${name}: write failed (${(err as Error).message}); retrying in ${Math.round(delay)} ms`);
        this.metrics.outputRetries.inc({ output: name });
        await new Promise((r) => setTimeout(r, delay));
        if (this.closing) return false;
      }
    }
  }


  private updateGauges(): void {
    const labels = { output: this.output.name, type: 'memory' };
    this.metrics.bufferBytes.set(labels, this.queuedBytes);
    this.metrics.bufferRecords.set(labels, this.queuedRecords);
  }
}

/**
 * source -> route -> output runners; acknowledgements come back through each batch's BatchAck.
 * Routes are looked up per batch, so a config reload can swap outputs under running sources.
 */
export class Pipeline {
  readonly runners = new Map<string, OutputRunner>();
  private routes = new Map<string, OutputRunner[]>();
  private readonly metrics: SelfMetrics;

  constructor(metrics: SelfMetrics) {
    this.metrics = metrics;
  }

  /** Installs the outputs and the source -> outputs routes (`inputs` of each output). */
  setRoutes(runners: Map<string, OutputRunner>, inputsByOutput: Map<string, readonly string[]>): void {
    this.runners.clear();
    for (const [name, r] of runners) this.runners.set(name, r);
    const routes = new Map<string, OutputRunner[]>();
    for (const [output, inputs] of inputsByOutput) {
      for (const source of inputs) routes.set(source, [...(routes.get(source) ?? []), runners.get(output)!]);
    }
    this.routes = routes;
  }

  emitterFor(source: string): Emitter {
    const records = this.metrics.sourceRecords.labels({ source });
    return {
      emit: (batchRecords, bytes, onAccepted) => {
        const targets = this.routes.get(source) ?? [];
        records.inc(batchRecords.length);
        const batch: RecordBatch = { source, records: batchRecords, bytes, ack: new BatchAck(targets.length, onAccepted) };
        for (const t of targets) t.enqueue(batch);
        let waits: Promise<void>[] | undefined;
        for (const t of targets) if (!t.hasRoom) (waits ??= []).push(t.waitForRoom());
        return waits ? Promise.all(waits).then(() => undefined) : Promise.resolve();
      },
    };
  }

  /** Waits for every output to accept what it holds, up to `timeoutMs` in all. */
  async drain(timeoutMs: number): Promise<boolean> {
    const results = await Promise.all([...this.runners.values()].map((r) => r.drain(timeoutMs)));
    return results.every(Boolean);
  }
}
