import { closeSync, fstatSync, fsync, mkdirSync, openSync, truncateSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

import { safeFileName } from '../safe_file_name.ts';
import { RateLimitedLog, type Logger } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';
import type { LogRecord } from '../record.ts';
import type { BufferChunk, BufferStats, FsyncPolicy, PushResult, RecordBuffer, WhenFull } from './buffer.ts';
import { BufferMetrics } from './buffer_metrics.ts';
import { encodeFrames, FRAME_HEADER_BYTES } from './frame_codec.ts';
import { loadReadPosition, READ_POSITION_FILE, saveReadPosition, type ReadPosition } from './read_position.ts';
import { decodeRecord, encodeRecord, RecordDecoder } from './record_codec.ts';
import {
  listSegments,
  scanSegment,
  segmentName,
  segmentPath,
  SegmentReader,
  SegmentWriteError,
  SegmentWriter,
  walkFrames,
  type ReadFrame,
  type ScanResult,
} from './segment_file.ts';
import { Wakeup, waitUntil } from './wakeup.ts';

export interface DiskBufferOptions {
  readonly output: string;
  /** The agent's data_dir; segments live in `<dataDir>/buffers/<output>/`. */
  readonly dataDir: string;
  /** Bytes of segment files on disk, acknowledged-but-not-yet-deleted ones included. */
  readonly maxSize: number;
  readonly whenFull: WhenFull;
  /** Default `interval`. */
  readonly fsync?: FsyncPolicy;
  /** For `fsync: interval`; default 500 ms. */
  readonly fsyncIntervalMs?: number;
  /** Segment file size (a push is never split, so a segment may exceed it by one push); default 8 MiB, at most max_size / 4. */
  readonly segmentBytes?: number;
  /** How soon a push blocked by a failed write (volume full) is tried again; default 1 s. */
  readonly retryMs?: number;
  readonly metrics: SelfMetrics;
  readonly log: Logger;
}

/** With `fsync: interval`, unsynced bytes that start a sync before the timer does. */
const EARLY_SYNC_BYTES = 2 * 1024 * 1024;

export const DISK_BUFFER_DEFAULTS = { fsync: 'interval' as FsyncPolicy, fsyncIntervalMs: 500, segmentBytes: 8 * 1024 * 1024, retryMs: 1000 };

/** `<dataDir>/buffers/<output>`, the output name made safe as one path component. */
export function diskBufferDir(dataDir: string, output: string): string {
  return join(dataDir, 'buffers', safeFileName(output));
}

interface Segment {
  readonly seq: number;
  readonly path: string;
  /** End of the last whole, valid frame: nothing past it is ever read. */
  end: number;
  /** Bytes the file takes (equal to `end` unless cutting a torn write failed). */
  size: number;
  /** Frames between where reading it starts (the read position, or 0) and `end`. */
  frames: number;
  /** When its first record was pushed (recovered: observed time of the first unacknowledged record). */
  readonly createdMs: number;
  /**
   * When each push into it was taken, by the offset its frames end at, oldest first (`markHead`:
   * the first not wholly acknowledged): the buffer's oldest record is the first frame past the
   * acknowledged position, so its age is that of its push, not of the segment. A recovered segment
   * has one mark, its first unacknowledged record's observed time.
   */
  readonly marks: { end: number; ms: number }[];
  markHead: number;
  /** Not to be appended to again (a write could not be cut back, or corruption was found in it). */
  broken: boolean;
  /** Damaged ranges found (and counted) at recovery: start -> the next good frame. */
  holes?: Map<number, number>;
}

interface Pos {
  seq: number;
  offset: number;
}

class DiskChunk implements BufferChunk {
  readonly records: LogRecord[];
  readonly bytes: number;
  readonly owner: DiskBuffer;
  /** Read position after its last frame. */
  readonly end: ReadPosition;
  /** Frames and frame bytes it covers, unreadable ones skipped over included. */
  readonly frames: number;
  readonly frameBytes: number;
  acked = false;

  constructor(owner: DiskBuffer, records: LogRecord[], bytes: number, end: ReadPosition, frames: number, frameBytes: number) {
    this.owner = owner;
    this.records = records;
    this.bytes = bytes;
    this.end = end;
    this.frames = frames;
    this.frameBytes = frameBytes;
  }
}

interface PendingPush {
  readonly buf: Buffer;
  readonly records: number;
  readonly onAccepted: () => void;
  readonly resolve: (r: PushResult) => void;
}

interface SyncWaiter {
  /** Bytes written (in all) that must be synced before it fires. */
  readonly target: number;
  readonly onAccepted: () => void;
}

const VOLUME_FULL = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);
/** How long a fully acknowledged buffer stays empty before its last segment file is deleted. */
const IDLE_RETIRE_MS = 1000;

/**
 * Records in segmented append-only files, one frame per record (length, CRC-32, JSON). See
 * buffer.ts for the contract; here is how it is kept.
 *
 * - Writes: a push is encoded into one buffer and written with one positional write(2) at the end
 *   of the newest segment. A write that fails part way (ENOSPC) is cut back to the last frame
 *   boundary; the push then waits and is retried (`block`) or is dropped and counted
 *   (`drop_newest`). Never a crash.
 * - Durability: `onAccepted` fires per the fsync policy (buffer.ts). `always` syncs right away and
 *   lets the pushes that arrive meanwhile share the next fsync (group commit); `interval` syncs on a
 *   timer. New segment files also fsync the folder before their records count as durable.
 * - Reads: frames are read from the files (the page cache, in practice), checked again, and decoded;
 *   chunks carry the position after their last frame. Acknowledgements move the read position over
 *   the in-order prefix; it is saved (temp file + rename) once per event-loop turn in which it
 *   moved, and segments wholly before it are deleted. A crash repeats at most what was acknowledged
 *   since the last save.
 * - Recovery (`open`): segments before the saved position are deleted; from it on every frame of
 *   every segment is checked, and at the first bad one the file is cut back to the last good frame
 *   (counted in telemetry_agent_buffer_corrupt_bytes_total, logged); later segments are still read.
 *   A missing or unreadable position file means reading from the first segment again (at least once).
 * - Space: `max_size` bounds the segment files on disk. A segment is freed only when all of it is
 *   acknowledged; when the buffer is full and everything in it is acknowledged, the newest segment
 *   is retired early so a small `max_size` cannot deadlock.
 *
 * Synchronous fs calls for writes and reads: they go to the page cache of a local disk and take
 * microseconds per push (64 KiB), cheaper than a thread-pool round trip each; fsync, the one call
 * that waits for the device, runs on the thread pool. One agent process per folder (not locked).
 */
export class DiskBuffer implements RecordBuffer {
  readonly type = 'disk' as const;
  readonly output: string;
  readonly dir: string;
  private readonly maxSize: number;
  private readonly whenFull: WhenFull;
  private readonly fsyncPolicy: FsyncPolicy;
  private readonly segmentBytes: number;
  private readonly retryMs: number;
  private readonly m: BufferMetrics;
  private readonly log: Logger;
  private readonly warnings: RateLimitedLog;
  private readonly positionPath: string;
  private readonly dirFd: number;
  private readonly decoder = new RecordDecoder();

  private segments: Segment[] = [];
  private writer: SegmentWriter | undefined;
  private writerSeg: Segment | undefined;
  private nextSeq = 1;
  private reader: SegmentReader | undefined;
  private readPos: Pos = { seq: 1, offset: 0 };
  private framesReadInSeg = 0;
  private ackPos: Pos = { seq: 1, offset: 0 };
  private savedPosition = '';
  private outstanding: DiskChunk[] = [];
  private outstandingHead = 0;
  /** Stands in the slots of acknowledged chunks until they are compacted away. */
  private readonly spent: DiskChunk = new DiskChunk(this, [], 0, { seq: 0, offset: 0 }, 0, 0);
  private unackedBytes = 0;
  private unackedRecords = 0;
  private diskBytes = 0;
  private readonly pending: PendingPush[] = [];
  private writeFailing = false;
  private readFailing = false;

  private written = 0;
  private synced = 0;
  private syncWaiters: SyncWaiter[] = [];
  private readonly dirtyFds = new Set<number>();
  private closeAfterSync: number[] = [];
  private dirDirty = false;
  private syncing = false;
  private syncAgain = false;
  private syncRun: Promise<void> | undefined;

  private syncTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private positionTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private positionImmediate: NodeJS.Immediate | undefined;
  private readonly dataArrived = new Wakeup();
  private readonly changed = new Wakeup();
  private closed = false;

  /** Opens (creating, or recovering what a previous run left) the buffer of `opts.output`. Synchronous: call at startup. */
  static open(opts: DiskBufferOptions): DiskBuffer {
    const b = new DiskBuffer(opts);
    b.recover();
    return b;
  }

  private constructor(opts: DiskBufferOptions) {
    this.output = opts.output;
    this.dir = diskBufferDir(opts.dataDir, opts.output);
    this.maxSize = opts.maxSize;
    this.whenFull = opts.whenFull;
    this.fsyncPolicy = opts.fsync ?? DISK_BUFFER_DEFAULTS.fsync;
    this.segmentBytes = Math.max(4096, Math.min(opts.segmentBytes ?? DISK_BUFFER_DEFAULTS.segmentBytes, Math.floor(opts.maxSize / 4)));
    this.retryMs = opts.retryMs ?? DISK_BUFFER_DEFAULTS.retryMs;
    this.m = new BufferMetrics(opts.metrics, opts.output, 'disk', opts.log);
    this.log = opts.log;
    this.warnings = new RateLimitedLog(opts.log);
    this.positionPath = join(this.dir, READ_POSITION_FILE);
    mkdirSync(this.dir, { recursive: true });
    this.dirFd = openSync(this.dir, 'r');
    if (this.fsyncPolicy === 'interval') {
      const every = opts.fsyncIntervalMs ?? DISK_BUFFER_DEFAULTS.fsyncIntervalMs;
      this.syncTimer = setInterval(() => {
        if (this.written > this.synced || this.dirDirty || this.closeAfterSync.length > 0) this.requestSync();
      }, every);
      this.syncTimer.unref();
    }
  }

  push(records: LogRecord[], _bytes: number, onAccepted: () => void): Promise<PushResult> {
    if (this.closed) return Promise.resolve({ accepted: 0, dropped: 0 });
    if (records.length === 0) {
      onAccepted();
      return Promise.resolve({ accepted: 0, dropped: 0 });
    }
    const buf = encodeFrames(records.map(encodeRecord));
    if (this.pending.length === 0) {
      const r = this.tryWrite(buf, records.length, onAccepted);
      if (r !== 'wait') return Promise.resolve(r);
    }
    return new Promise((resolve) => this.pending.push({ buf, records: records.length, onAccepted, resolve }));
  }

  async read(maxEvents: number, maxBytes: number, signal?: AbortSignal): Promise<BufferChunk | undefined> {
    for (;;) {
      if (this.closed || signal?.aborted) return undefined;
      this.readFailing = false;
      const chunk = this.take(Math.max(1, maxEvents), maxBytes);
      if (chunk) return chunk;
      if (this.readFailing) await sleep(this.retryMs, signal);
      else await this.dataArrived.wait(signal);
    }
  }

  /** After `close` acknowledgements are ignored: the files are closed, and a successor may own the folder. */
  ack(chunk: BufferChunk): void {
    if (!(chunk instanceof DiskChunk) || chunk.owner !== this || chunk.acked || this.closed) return;
    chunk.acked = true;
    let moved = false;
    while (this.outstandingHead < this.outstanding.length && this.outstanding[this.outstandingHead]!.acked) {
      const c = this.outstanding[this.outstandingHead]!;
      // Compaction waits for 1024 slots: the slot must not keep the records alive until then.
      this.outstanding[this.outstandingHead++] = this.spent;
      this.ackPos = { seq: c.end.seq, offset: c.end.offset };
      this.unackedBytes -= c.frameBytes;
      this.unackedRecords -= c.frames;
      moved = true;
    }
    if (!moved) return;
    if (this.outstandingHead > 1024 && this.outstandingHead * 2 > this.outstanding.length) {
      this.outstanding = this.outstanding.slice(this.outstandingHead);
      this.outstandingHead = 0;
    }
    this.normalizeAckPos();
    this.deleteAckedSegments();
    this.schedulePositionSave();
    if (this.unackedRecords === 0) this.scheduleIdleRetire();
    this.gauges();
    this.pump();
    this.changed.wake();
  }

  /**
   * Everything is acknowledged: the newest segment (still open for appends) holds only delivered
   * records. It is deleted too once the buffer stays empty a moment (right away when writes are
   * failing), so an idle buffer takes no space and a volume that filled up gets its space back.
   */
  private scheduleIdleRetire(): void {
    if (this.writeFailing) {
      this.retireIfAllAcked();
      return;
    }
    if (this.idleTimer || this.closed) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.pending.length === 0) this.retireIfAllAcked();
    }, IDLE_RETIRE_MS);
    this.idleTimer.unref();
  }

  stats(): BufferStats {
    return { bytes: this.unackedBytes, records: this.unackedRecords, oldestMs: this.unackedRecords > 0 ? this.oldestPushMs() : undefined };
  }

  /** When the push holding the first unacknowledged frame was taken. */
  private oldestPushMs(): number | undefined {
    for (const seg of this.segments) {
      if (seg.seq < this.ackPos.seq) continue;
      const from = seg.seq === this.ackPos.seq ? this.ackPos.offset : 0;
      while (seg.markHead < seg.marks.length && seg.marks[seg.markHead]!.end <= from) seg.markHead++;
      if (seg.markHead > 1024 && seg.markHead * 2 > seg.marks.length) {
        seg.marks.splice(0, seg.markHead);
        seg.markHead = 0;
      }
      if (seg.markHead < seg.marks.length) return seg.marks[seg.markHead]!.ms;
      if (from < seg.end) return seg.createdMs;
    }
    return undefined;
  }

  async drain(timeoutMs: number): Promise<boolean> {
    const empty = () => this.unackedRecords === 0 && this.pending.length === 0;
    await waitUntil(this.changed, () => empty() || this.closed, timeoutMs);
    return empty();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.m.close();
    clearInterval(this.syncTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.positionTimer);
    clearTimeout(this.idleTimer);
    if (this.positionImmediate) clearImmediate(this.positionImmediate);
    for (const p of this.pending.splice(0)) p.resolve({ accepted: 0, dropped: 0 });
    this.dataArrived.wake();
    this.changed.wake();
    if (this.syncRun) await this.syncRun;
    if (this.fsyncPolicy !== 'never') {
      this.requestSync();
      await this.syncRun;
    }
    this.savePosition(this.fsyncPolicy !== 'never');
    this.reader?.close();
    this.reader = undefined;
    this.writer?.close();
    this.writer = undefined;
    for (const fd of this.closeAfterSync.splice(0)) closeQuietly(fd);
    closeQuietly(this.dirFd);
  }

  // ---- recovery ----

  private recover(): void {
    const seqs = listSegments(this.dir);
    const loaded = loadReadPosition(this.positionPath);
    let start: Pos;
    let remaining = seqs;
    let highest = seqs.at(-1) ?? 0;
    if (loaded.status === 'ok') {
      const p = loaded.position;
      for (const seq of seqs) if (seq < p.seq) this.unlinkQuietly(segmentPath(this.dir, seq));
      remaining = seqs.filter((s) => s >= p.seq);
      highest = Math.max(highest, p.seq);
      start = remaining[0] === p.seq ? { seq: p.seq, offset: p.offset } : { seq: remaining[0] ?? highest + 1, offset: 0 };
      this.savedPosition = positionKey(p);
    } else {
      if (seqs.length > 0) {
        const why = loaded.status === 'missing' ? 'is missing' : `is unreadable (${loaded.reason})`;
        this.log.warn(`disk buffer ${this.output}: read position file ${this.positionPath} ${why}; reading from the first segment again, records may repeat`);
      }
      start = { seq: seqs[0] ?? 1, offset: 0 };
    }
    this.nextSeq = highest + 1;

    for (const seq of remaining) {
      const path = segmentPath(this.dir, seq);
      const from = seq === start.seq ? start.offset : 0;
      let r: ScanResult;
      try {
        r = scanSegment(path, seq, from);
      } catch (err) {
        this.log.warn(`disk buffer ${this.output}: cannot read segment ${path} (${(err as Error).message}); skipping it`);
        continue;
      }
      let size = r.size;
      if (r.skipped > 0) {
        this.m.corruptBytes(r.skipped);
        this.log.warn(
          `disk buffer ${this.output}: segment ${segmentName(seq)} is damaged from byte ${r.firstDamage!.at} (${r.firstDamage!.reason}); ` +
            `skipped ${r.skipped} bytes to the next good frames, the records in them are lost; the ${r.frames} good records are read`,
        );
      }
      if (r.problem !== undefined) {
        const cut = r.size - r.goodEnd;
        this.m.corruptBytes(cut);
        this.log.warn(
          `disk buffer ${this.output}: segment ${segmentName(seq)} is torn or corrupt at byte ${r.goodEnd} (${r.problem}); ` +
            `cut off ${cut} bytes, the records in them are lost; later segments are read`,
        );
        try {
          truncateSync(path, r.goodEnd);
          size = r.goodEnd;
        } catch (err) {
          this.log.warn(`disk buffer ${this.output}: cannot cut ${path} (${(err as Error).message}); not reading past byte ${r.goodEnd}`);
        }
      }
      const first = r.first === undefined ? undefined : decodeRecord(r.first);
      const observed = first ? Date.parse(first.observedTimestamp) : NaN;
      const createdMs = Number.isNaN(observed) ? Date.now() : observed;
      this.segments.push({ seq, path, end: r.goodEnd, size, frames: r.frames, createdMs, marks: [{ end: r.goodEnd, ms: createdMs }], markHead: 0, broken: true, holes: r.holes });
      this.diskBytes += size;
      this.unackedBytes += r.goodEnd - Math.min(from, r.size);
      this.unackedRecords += r.frames;
    }
    // Segments with nothing left to read (acknowledged to their end before the restart) are freed
    // now: on a full volume they are the space the next writes need.
    while (this.segments.length > 0 && this.segments[0]!.frames === 0) {
      const s = this.segments.shift()!;
      this.unlinkSegment(s);
      start = { seq: this.segments[0]?.seq ?? this.nextSeq, offset: 0 };
      if (this.segments.length === 0) this.unackedBytes = 0;
    }
    this.readPos = { ...start };
    this.ackPos = { ...start };
    if (positionKey(start) !== this.savedPosition && loaded.status === 'ok') this.savePosition(false);
    this.gauges();
  }

  // ---- writing ----

  /** Writes one push when there is room: the result, or 'wait' (block: full, or the write failed). */
  private tryWrite(buf: Buffer, records: number, onAccepted: () => void): PushResult | 'wait' {
    if (!this.hasRoom(buf.length)) {
      if (this.whenFull === 'block') return 'wait';
      this.m.dropped(records, 'buffer_full');
      onAccepted();
      return { accepted: 0, dropped: records };
    }
    try {
      this.append(buf, records);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      this.m.writeError(code);
      const what = VOLUME_FULL.has(code) ? `the volume is full (${code})` : `write failed (${code}: ${(err as Error).message})`;
      this.writeFailing = true;
      // What is delivered already gives its space back now, not when the next segment fills.
      this.retireIfAllAcked();
      if (this.whenFull === 'block') {
        this.warnings.warn(`write:${code}`, `disk buffer ${this.output}: cannot write to ${this.dir}: ${what}; sources paused, retrying every ${this.retryMs} ms`);
        this.scheduleRetry();
        return 'wait';
      }
      this.warnings.warn(`write:${code}`, `disk buffer ${this.output}: cannot write to ${this.dir}: ${what}; dropping records (when_full: drop_newest)`);
      this.m.dropped(records, VOLUME_FULL.has(code) ? 'volume_full' : 'buffer_full');
      onAccepted();
      return { accepted: 0, dropped: records };
    }
    if (this.writeFailing) {
      this.writeFailing = false;
      this.log.info(`disk buffer ${this.output}: writing to ${this.dir} again`);
    }
    this.afterWrite(onAccepted);
    return { accepted: records, dropped: 0 };
  }

  private hasRoom(size: number): boolean {
    if (this.diskBytes + size <= this.maxSize) return true;
    this.retireIfAllAcked();
    // A push larger than the whole buffer goes in alone rather than never.
    return this.diskBytes + size <= this.maxSize || this.diskBytes === 0;
  }

  private append(buf: Buffer, records: number): void {
    let w = this.writer;
    let seg = this.writerSeg;
    if (!w || !seg || seg.broken || (w.size > 0 && w.size + buf.length > this.segmentBytes)) {
      this.retireWriter();
      ({ w, seg } = this.openSegment());
    }
    try {
      w.append(buf);
    } catch (err) {
      if (err instanceof SegmentWriteError && err.torn) {
        seg.broken = true;
        this.resizeTorn(seg, w.fd);
      }
      throw err;
    }
    seg.end += buf.length;
    seg.size += buf.length;
    seg.marks.push({ end: seg.end, ms: Date.now() });
    seg.frames += records;
    this.diskBytes += buf.length;
    this.unackedBytes += buf.length;
    this.unackedRecords += records;
    this.written += buf.length;
    if (this.fsyncPolicy !== 'never') this.dirtyFds.add(w.fd);
    this.gauges();
    this.dataArrived.wake();
  }

  private afterWrite(onAccepted: () => void): void {
    if (this.fsyncPolicy === 'never') {
      onAccepted();
      return;
    }
    this.syncWaiters.push({ target: this.written, onAccepted });
    // `interval` also syncs early once a few MiB wait: the sources' window is bounded in bytes,
    // so a timer alone would cap throughput at window / fsync_interval.
    if (this.fsyncPolicy === 'always' || this.written - this.synced >= EARLY_SYNC_BYTES) this.requestSync();
  }

  private openSegment(): { w: SegmentWriter; seg: Segment } {
    const seq = this.nextSeq++;
    const path = segmentPath(this.dir, seq);
    const w = SegmentWriter.create(path);
    const seg: Segment = { seq, path, end: 0, size: 0, frames: 0, createdMs: Date.now(), marks: [], markHead: 0, broken: false };
    this.segments.push(seg);
    this.writer = w;
    this.writerSeg = seg;
    this.dirDirty = true;
    return { w, seg };
  }

  /** Stops appending to the newest segment; its descriptor is closed once its data is synced. */
  private retireWriter(): void {
    const w = this.writer;
    if (!w) return;
    this.writer = undefined;
    this.writerSeg = undefined;
    if (this.fsyncPolicy === 'never') w.close();
    else this.closeAfterSync.push(w.fd);
  }

  /** Everything written is acknowledged: drop every segment now (they would go one by one later). */
  private retireIfAllAcked(): void {
    if (this.unackedRecords > 0 || this.outstandingHead < this.outstanding.length || this.segments.length === 0) return;
    this.retireWriter();
    // Their records are delivered: nothing in them needs an fsync, and a deleted file's space only
    // comes back once its last descriptor is closed. During a sync pass the loop closes them.
    if (this.syncing) this.syncAgain = true;
    else {
      for (const fd of this.closeAfterSync.splice(0)) {
        this.dirtyFds.delete(fd);
        closeQuietly(fd);
      }
    }
    this.reader?.close();
    this.reader = undefined;
    const pos = { seq: this.nextSeq, offset: 0 };
    this.ackPos = { ...pos };
    this.readPos = { ...pos };
    this.framesReadInSeg = 0;
    // Deleted first: on a full volume the position file can only be written once they are gone
    // (a crash in between is harmless: recovery starts at the first segment that exists).
    for (const s of this.segments) this.unlinkSegment(s);
    this.segments = [];
    this.savePosition(false);
  }

  private resizeTorn(seg: Segment, fd: number): void {
    try {
      const size = fstatSync(fd).size;
      this.diskBytes += size - seg.size;
      seg.size = size;
    } catch {
      // keep the old figure
    }
  }

  /** Takes waiting pushes, in order, while they fit. */
  private pump(): void {
    while (this.pending.length > 0 && !this.closed) {
      const p = this.pending[0]!;
      const r = this.tryWrite(p.buf, p.records, p.onAccepted);
      if (r === 'wait') return;
      this.pending.shift();
      p.resolve(r);
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.pump();
    }, this.retryMs);
  }

  // ---- fsync ----

  private requestSync(): void {
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    this.syncRun = this.syncLoop();
  }

  /** One fsync pass after another while there is more to sync (`always`) or once (`interval`). */
  private async syncLoop(): Promise<void> {
    try {
      for (;;) {
        this.syncAgain = false;
        const target = this.written;
        const fds = [...this.dirtyFds];
        this.dirtyFds.clear();
        const closing = this.closeAfterSync.splice(0);
        const dir = this.dirDirty;
        this.dirDirty = false;
        try {
          for (const fd of fds) await fsyncAsync(fd);
          if (dir) await fsyncAsync(this.dirFd);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
          this.m.writeError(code);
          for (const fd of fds) this.dirtyFds.add(fd);
          this.closeAfterSync.unshift(...closing);
          this.dirDirty ||= dir;
          this.warnings.warn(`fsync:${code}`, `disk buffer ${this.output}: fsync failed (${code}); records wait to count as durable, retrying`);
          if (this.closed) return;
          await sleep(this.retryMs);
          continue;
        }
        for (const fd of closing) closeQuietly(fd);
        if (target > this.synced) this.synced = target;
        let n = 0;
        while (n < this.syncWaiters.length && this.syncWaiters[n]!.target <= this.synced) n++;
        if (n > 0) for (const w of this.syncWaiters.splice(0, n)) w.onAccepted();
        const more = this.syncAgain || (this.fsyncPolicy === 'always' && this.syncWaiters.length > 0);
        if (!more) return;
      }
    } finally {
      this.syncing = false;
    }
  }

  // ---- reading ----

  /** The next chunk of records not handed out yet, or undefined when there are none. */
  private take(maxEvents: number, maxBytes: number): DiskChunk | undefined {
    for (;;) {
      const records: LogRecord[] = [];
      let bytes = 0;
      let frames = 0;
      let frameBytes = 0;
      while (records.length < maxEvents) {
        const seg = this.segmentToRead();
        if (!seg) break;
        const f = this.frameAt(seg);
        if (f === 'retry') break;
        const hole = f.ok ? undefined : seg.holes?.get(this.readPos.offset);
        if (hole !== undefined) {
          // Found, counted and logged at recovery, where its frames were not counted either.
          frameBytes += hole - this.readPos.offset;
          this.readPos.offset = hole;
          continue;
        }
        if (!f.ok) {
          // Checked when written or recovered, bad now: changed on disk under us. Skip to the next
          // good frame (the rest of the segment when there is none); only what is damaged is lost.
          const at = this.readPos.offset;
          const rest = this.framesAfterDamage(seg, at);
          const next = rest?.from ?? seg.end;
          const lostFrames = Math.max(0, seg.frames - this.framesReadInSeg - (rest?.frames ?? 0));
          this.m.corruptBytes(next - at);
          this.log.warn(
            `disk buffer ${this.output}: segment ${segmentName(seg.seq)} unreadable at byte ${at} (${f.reason}); ` +
              `skipped ${next - at} bytes (about ${lostFrames} records)${rest ? ` to the next good frame at byte ${next}` : ', the rest of the segment'}`,
          );
          frames += lostFrames;
          frameBytes += next - at;
          this.framesReadInSeg += lostFrames;
          this.readPos.offset = next;
          seg.broken = true;
          continue;
        }
        const size = f.payload.length;
        if (records.length > 0 && bytes + size > maxBytes) break;
        const record = this.decoder.decode(f.payload);
        frames++;
        frameBytes += FRAME_HEADER_BYTES + size;
        this.framesReadInSeg++;
        this.readPos.offset = f.next;
        if (!record) {
          this.m.corruptBytes(FRAME_HEADER_BYTES + size);
          this.warnings.warn('decode', `disk buffer ${this.output}: a frame in ${segmentName(seg.seq)} is not a record; skipped`);
          continue;
        }
        records.push(record);
        bytes += size;
      }
      if (frames === 0) return undefined;
      const chunk = new DiskChunk(this, records, bytes, { seq: this.readPos.seq, offset: this.readPos.offset }, frames, frameBytes);
      this.outstanding.push(chunk);
      if (records.length > 0) return chunk;
      this.ack(chunk); // only unreadable frames: nothing to hand out, move past them
    }
  }

  /** Where good frames start again after damage at `at`, and how many good ones follow; undefined when none. */
  private framesAfterDamage(seg: Segment, at: number): { from: number; frames: number } | undefined {
    const reader = this.reader;
    if (!reader) return undefined;
    try {
      const from = reader.resync(at + 1, seg.end);
      if (from === undefined) return undefined;
      return { from, frames: walkFrames(reader, from, seg.end).frames };
    } catch {
      return undefined;
    }
  }

  /** The segment holding the next frame to read (moving the read position across segment ends), or undefined. */
  private segmentToRead(): Segment | undefined {
    for (const seg of this.segments) {
      if (seg.seq < this.readPos.seq) continue;
      if (seg.seq > this.readPos.seq) this.moveReadTo(seg.seq);
      if (this.readPos.offset < seg.end) return seg;
      if (seg === this.writerSeg) return undefined;
    }
    return undefined;
  }

  private moveReadTo(seq: number): void {
    this.readPos = { seq, offset: 0 };
    this.framesReadInSeg = 0;
    this.reader?.close();
    this.reader = undefined;
  }

  /**
   * The frame at the read position, checked; or 'retry' after an I/O error (EIO, EMFILE): nothing is
   * skipped, `read` tries again after `retryMs`.
   */
  private frameAt(seg: Segment): ReadFrame | 'retry' {
    try {
      if (this.reader?.seq !== seg.seq) {
        this.reader?.close();
        this.reader = undefined;
        this.reader = new SegmentReader(seg.path, seg.seq);
      }
      return this.reader.frame(this.readPos.offset, seg.end);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      if (code === 'ENOENT') return { ok: false, reason: 'the file is gone' };
      this.reader?.close();
      this.reader = undefined;
      this.readFailing = true;
      this.warnings.warn(`read:${code}`, `disk buffer ${this.output}: cannot read ${seg.path} (${(err as Error).message}); retrying every ${this.retryMs} ms`);
      return 'retry';
    }
  }

  // ---- acknowledged prefix: read position file, deleting segments ----

  /** A segment read to its end and acknowledged, with a later one after it: the position moves to the later one. */
  private normalizeAckPos(): void {
    for (let i = 0; i < this.segments.length; i++) {
      const s = this.segments[i]!;
      if (s.seq < this.ackPos.seq) continue;
      if (s.seq > this.ackPos.seq) this.ackPos = { seq: s.seq, offset: 0 };
      if (this.ackPos.offset < s.end || s === this.writerSeg || i === this.segments.length - 1) return;
      this.ackPos = { seq: this.segments[i + 1]!.seq, offset: 0 };
    }
  }

  private deleteAckedSegments(): void {
    while (this.segments.length > 0 && this.segments[0]!.seq < this.ackPos.seq && this.segments[0] !== this.writerSeg) {
      this.unlinkSegment(this.segments.shift()!);
    }
  }

  private unlinkSegment(s: Segment): void {
    if (this.reader?.seq === s.seq) {
      this.reader.close();
      this.reader = undefined;
    }
    this.unlinkQuietly(s.path);
    this.diskBytes -= s.size;
  }

  private unlinkQuietly(path: string): void {
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.warnings.warn('unlink', `disk buffer ${this.output}: cannot delete ${path} (${(err as Error).message})`);
      }
    }
  }

  /** Saves the position once per event-loop turn however many acknowledgements moved it. */
  private schedulePositionSave(): void {
    if (this.positionImmediate || this.closed) return;
    this.positionImmediate = setImmediate(() => {
      this.positionImmediate = undefined;
      this.savePosition(false);
    });
  }

  private savePosition(durable: boolean): void {
    const key = positionKey(this.ackPos);
    if (key === this.savedPosition && !durable) return;
    try {
      saveReadPosition(this.positionPath, this.ackPos, durable);
      this.savedPosition = key;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      this.m.writeError(code);
      this.warnings.warn('position', `disk buffer ${this.output}: cannot save the read position (${code}); retrying (a restart now repeats records)`);
      if (!this.positionTimer && !this.closed) {
        this.positionTimer = setTimeout(() => {
          this.positionTimer = undefined;
          this.savePosition(false);
        }, this.retryMs);
        this.positionTimer.unref();
      }
    }
  }

  private gauges(): void {
    this.m.set(this.unackedBytes, this.unackedRecords);
  }
}

function positionKey(p: ReadPosition): string {
  return `${p.seq}:${p.offset}`;
}

function fsyncAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}
