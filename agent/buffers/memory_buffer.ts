import type { Logger } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';
import type { LogRecord } from '../record.ts';
import type { BufferChunk, BufferStats, PushResult, RecordBuffer, WhenFull } from './buffer.ts';
import { BufferMetrics } from './buffer_metrics.ts';
import { Wakeup, waitUntil } from './wakeup.ts';

export interface MemoryBufferOptions {
  readonly output: string;
  /** Raw bytes held (pushed, not yet acknowledged). */
  readonly maxBytes: number;
  /** Records held. */
  readonly maxEvents: number;
  readonly whenFull: WhenFull;
  readonly metrics: SelfMetrics;
  /** Drops (`when_full: drop_newest`) are logged here with counts, once per interval. */
  readonly log?: Logger;
}

/** One push, kept whole until every record of it is acknowledged; then its `onAccepted` fires. */
interface Batch {
  readonly records: LogRecord[];
  readonly bytes: number;
  /** Sequence number of its first record (records are numbered in push order). */
  readonly first: number;
  readonly pushedMs: number;
  readonly onAccepted: () => void;
}

interface PendingPush {
  readonly records: LogRecord[];
  readonly bytes: number;
  readonly onAccepted: () => void;
  readonly resolve: (r: PushResult) => void;
}

/** Stands in the slots of acknowledged batches until they are compacted away, so their records can be collected. */
const SPENT_BATCH: Batch = Object.freeze({ records: [], bytes: 0, first: 0, pushedMs: 0, onAccepted: () => {} });

class MemoryChunk implements BufferChunk {
  readonly records: LogRecord[];
  readonly bytes: number;
  readonly owner: MemoryBuffer;
  /** Sequence number after its last record. */
  readonly end: number;
  acked = false;

  constructor(owner: MemoryBuffer, records: LogRecord[], bytes: number, end: number) {
    this.owner = owner;
    this.records = records;
    this.bytes = bytes;
    this.end = end;
  }
}

/**
 * Records held in the agent's memory, bounded by `maxBytes` (the raw bytes pushed) and
 * `maxEvents`. Sources are acknowledged on delivery: a push's `onAccepted` fires once the
 * acknowledged prefix of chunks covers all its records. A restart loses what it holds, which is
 * fine for the promise: none of it was acknowledged to its source, so the source reads it again.
 * A batch larger than the whole buffer is taken when the buffer is empty rather than never.
 */
export class MemoryBuffer implements RecordBuffer {
  readonly type = 'memory' as const;
  readonly output: string;
  private readonly opts: MemoryBufferOptions;
  private readonly m: BufferMetrics;

  private batches: Batch[] = [];
  private head = 0;
  /** Next record to hand out: batch index (absolute, into `batches`) and offset in it. */
  private readBatch = 0;
  private readOffset = 0;
  /** Records ever pushed / acknowledged (in-order prefix), as sequence numbers. */
  private pushedSeq = 0;
  private ackedSeq = 0;
  private heldBytes = 0;
  private readonly outstanding: MemoryChunk[] = [];
  private outstandingHead = 0;
  private readonly pending: PendingPush[] = [];
  private readonly dataArrived = new Wakeup();
  private readonly changed = new Wakeup();
  private closed = false;
  /** Stands in the slots of acknowledged chunks until they are compacted away. */
  private readonly spent: MemoryChunk = new MemoryChunk(this, [], 0, 0);

  constructor(opts: MemoryBufferOptions) {
    this.opts = opts;
    this.output = opts.output;
    this.m = new BufferMetrics(opts.metrics, opts.output, 'memory', opts.log);
  }

  push(records: LogRecord[], bytes: number, onAccepted: () => void): Promise<PushResult> {
    if (this.closed) return Promise.resolve({ accepted: 0, dropped: 0 });
    if (records.length === 0) {
      onAccepted();
      return Promise.resolve({ accepted: 0, dropped: 0 });
    }
    if (this.pending.length === 0 && this.fits(records.length, bytes)) {
      this.append(records, bytes, onAccepted);
      return Promise.resolve({ accepted: records.length, dropped: 0 });
    }
    if (this.opts.whenFull === 'drop_newest') {
      this.m.dropped(records.length, 'buffer_full');
      onAccepted();
      return Promise.resolve({ accepted: 0, dropped: records.length });
    }
    return new Promise((resolve) => this.pending.push({ records, bytes, onAccepted, resolve }));
  }

  async read(maxEvents: number, maxBytes: number, signal?: AbortSignal): Promise<BufferChunk | undefined> {
    for (;;) {
      if (this.closed || signal?.aborted) return undefined;
      if (this.readBatch < this.batches.length) return this.take(Math.max(1, maxEvents), maxBytes);
      await this.dataArrived.wait(signal);
    }
  }

  ack(chunk: BufferChunk): void {
    if (!(chunk instanceof MemoryChunk) || chunk.owner !== this || chunk.acked) return;
    chunk.acked = true;
    let moved = false;
    while (this.outstandingHead < this.outstanding.length && this.outstanding[this.outstandingHead]!.acked) {
      const c = this.outstanding[this.outstandingHead]!;
      // Compaction waits for 1024 slots: the slot must not keep the records alive until then.
      this.outstanding[this.outstandingHead++] = this.spent;
      this.ackedSeq = c.end;
      this.heldBytes -= c.bytes;
      moved = true;
    }
    if (!moved) return;
    if (this.outstandingHead > 1024 && this.outstandingHead * 2 > this.outstanding.length) {
      this.outstanding.splice(0, this.outstandingHead);
      this.outstandingHead = 0;
    }
    while (this.head < this.batches.length) {
      const b = this.batches[this.head]!;
      if (b.first + b.records.length > this.ackedSeq) break;
      this.batches[this.head++] = SPENT_BATCH;
      b.onAccepted();
    }
    this.compact();
    this.admitPending();
    this.gauges();
    this.changed.wake();
  }

  stats(): BufferStats {
    const oldest = this.batches[this.head];
    return { bytes: this.heldBytes, records: this.pushedSeq - this.ackedSeq, oldestMs: oldest?.pushedMs };
  }

  async drain(timeoutMs: number): Promise<boolean> {
    const empty = () => this.ackedSeq === this.pushedSeq && this.pending.length === 0;
    await waitUntil(this.changed, () => empty() || this.closed, timeoutMs);
    return empty();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.m.close();
    for (const p of this.pending.splice(0)) p.resolve({ accepted: 0, dropped: 0 });
    this.dataArrived.wake();
    this.changed.wake();
  }

  private fits(records: number, bytes: number): boolean {
    const held = this.pushedSeq - this.ackedSeq;
    if (held === 0) return true;
    return held + records <= this.opts.maxEvents && this.heldBytes + bytes <= this.opts.maxBytes;
  }

  private append(records: LogRecord[], bytes: number, onAccepted: () => void): void {
    this.batches.push({ records, bytes, first: this.pushedSeq, pushedMs: Date.now(), onAccepted });
    this.pushedSeq += records.length;
    this.heldBytes += bytes;
    this.gauges();
    this.dataArrived.wake();
  }

  private admitPending(): void {
    while (this.pending.length > 0) {
      const p = this.pending[0]!;
      if (!this.fits(p.records.length, p.bytes)) return;
      this.pending.shift();
      this.append(p.records, p.bytes, p.onAccepted);
      p.resolve({ accepted: p.records.length, dropped: 0 });
    }
  }

  /** Hands out up to `maxEvents` / `maxBytes` of the oldest records not handed out yet (at least one). */
  private take(maxEvents: number, maxBytes: number): MemoryChunk {
    const records: LogRecord[] = [];
    let bytes = 0;
    while (this.readBatch < this.batches.length && records.length < maxEvents) {
      const b = this.batches[this.readBatch]!;
      const n = b.records.length;
      let i = this.readOffset;
      // Whole rest of a batch when it fits (the common case: a slice, no per-record loop).
      const restBytes = i === 0 ? b.bytes : b.bytes - prefixBytes(b, i);
      if (records.length + (n - i) <= maxEvents && bytes + restBytes <= maxBytes) {
        for (; i < n; i++) records.push(b.records[i]!);
        bytes += restBytes;
      } else {
        for (; i < n && records.length < maxEvents; i++) {
          const size = share(b.bytes, n, i);
          if (records.length > 0 && bytes + size > maxBytes) break;
          records.push(b.records[i]!);
          bytes += size;
        }
      }
      if (i < n) {
        this.readOffset = i;
        break;
      }
      this.readBatch++;
      this.readOffset = 0;
    }
    const chunk = new MemoryChunk(this, records, bytes, this.ackedSeqOfRead());
    this.outstanding.push(chunk);
    return chunk;
  }

  /** Sequence number of the next record to hand out. */
  private ackedSeqOfRead(): number {
    const b = this.batches[this.readBatch];
    return b ? b.first + this.readOffset : this.pushedSeq;
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.batches.length) {
      this.batches = this.batches.slice(this.head);
      this.readBatch -= this.head;
      this.head = 0;
    }
  }

  private gauges(): void {
    this.m.set(this.heldBytes, this.pushedSeq - this.ackedSeq);
  }
}

/** Raw bytes of record `index` of a batch: its bytes shared out evenly (the shares sum to the whole exactly). */
function share(total: number, count: number, index: number): number {
  return Math.floor((total * (index + 1)) / count) - Math.floor((total * index) / count);
}

/** Raw bytes of a batch's first `count` records (the sum of their shares). */
function prefixBytes(b: Batch, count: number): number {
  return Math.floor((b.bytes * count) / b.records.length);
}
