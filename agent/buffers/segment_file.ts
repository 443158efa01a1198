import { closeSync, fstatSync, ftruncateSync, openSync, readdirSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import { checkHeader, checkPayload, FRAME_HEADER_BYTES } from './frame_codec.ts';

/**
 * One segment of a disk buffer: `<16-digit sequence number>.seg`, frames appended back to back
 * (frame_codec.ts), never rewritten; deleted whole once every frame in it is acknowledged.
 */
const NAME = /^(\d{16})\.seg$/;

export function segmentName(seq: number): string {
  return `${String(seq).padStart(16, '0')}.seg`;
}

/** Sequence numbers of the segments in `dir`, oldest first. */
export function listSegments(dir: string): number[] {
  const seqs: number[] = [];
  for (const name of readdirSync(dir)) {
    const m = NAME.exec(name);
    if (m) seqs.push(Number(m[1]));
  }
  return seqs.sort((a, b) => a - b);
}

export function segmentPath(dir: string, seq: number): string {
  return join(dir, segmentName(seq));
}

/** The file's bytes would not go on disk: the volume is full, or another write error. */
export class SegmentWriteError extends Error {
  readonly code: string;
  /** The partial frames could not be cut back either: the segment must not be appended to again. */
  readonly torn: boolean;

  constructor(cause: NodeJS.ErrnoException, torn: boolean) {
    super(cause.message, { cause });
    this.code = cause.code ?? 'EIO';
    this.torn = torn;
  }
}

/** The append end of the newest segment. Synchronous positional writes (the page cache; see disk_buffer.ts). */
export class SegmentWriter {
  readonly fd: number;
  size: number;

  private constructor(fd: number, size: number) {
    this.fd = fd;
    this.size = size;
  }

  /** Creates a new, empty segment file (fails when it exists). */
  static create(path: string): SegmentWriter {
    return new SegmentWriter(openSync(path, 'wx', 0o600), 0);
  }

  /**
   * Appends `buf` whole or not at all: when a write fails part way (ENOSPC, EDQUOT, EFBIG, EIO)
   * what was written of it is cut off again, so the file ends at a frame boundary, and the error
   * is thrown as a SegmentWriteError.
   */
  append(buf: Buffer): void {
    const start = this.size;
    let done = 0;
    try {
      while (done < buf.length) done += writeSync(this.fd, buf, done, buf.length - done, start + done);
    } catch (err) {
      let torn = false;
      if (done > 0) {
        try {
          ftruncateSync(this.fd, start);
        } catch {
          torn = true;
        }
      }
      throw new SegmentWriteError(err as NodeJS.ErrnoException, torn);
    }
    this.size = start + buf.length;
  }

  close(): void {
    closeSync(this.fd);
  }
}

export type ReadFrame =
  | { readonly ok: true; /** Only valid until the next call on the reader. */ readonly payload: Buffer; readonly next: number }
  | { readonly ok: false; readonly reason: string };

const WINDOW = 256 * 1024;
const SCAN_WINDOW = 64 * 1024;

/** Reads frames of one segment through a window (one read(2) per 256 KiB, not per frame). */
export class SegmentReader {
  readonly seq: number;
  private readonly fd: number;
  private buf = Buffer.allocUnsafe(WINDOW);
  private winStart = 0;
  private winLen = 0;

  constructor(path: string, seq: number) {
    this.seq = seq;
    this.fd = openSync(path, 'r');
  }

  size(): number {
    return fstatSync(this.fd).size;
  }

  /** The frame starting at `at`, checked (length, CRC) against a file that is valid up to `end`. */
  frame(at: number, end: number): ReadFrame {
    const available = end - at;
    if (available < FRAME_HEADER_BYTES) return { ok: false, reason: `torn frame header (${available} bytes)` };
    let view = this.view(at, FRAME_HEADER_BYTES, end);
    if (view.length < FRAME_HEADER_BYTES) return { ok: false, reason: 'file shorter than expected' };
    const header = checkHeader(view, available);
    if (!header.ok) return header;
    view = this.view(at, FRAME_HEADER_BYTES + header.length, end);
    const body = checkPayload(view, header.length);
    if (!body.ok) return body;
    return { ok: true, payload: view.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + header.length), next: at + FRAME_HEADER_BYTES + header.length };
  }

  /**
   * After a bad frame: the next offset in `[from, end)` where a whole, valid frame starts, or
   * undefined. A frame is only taken when its length fits and its CRC matches, so damaged bytes
   * cost only the records in them. Lengths are checked first in a tight loop: text, zero fill and
   * random bytes almost never pass that, so the CRC is rarely computed.
   */
  resync(from: number, end: number): number | undefined {
    const scan = Buffer.allocUnsafe(SCAN_WINDOW + FRAME_HEADER_BYTES);
    for (let base = from; base + FRAME_HEADER_BYTES <= end; base += SCAN_WINDOW) {
      const want = Math.min(SCAN_WINDOW + FRAME_HEADER_BYTES, end - base);
      let got = 0;
      while (got < want) {
        const n = readSync(this.fd, scan, got, want - got, base + got);
        if (n === 0) break;
        got += n;
      }
      const last = Math.min(SCAN_WINDOW, got - FRAME_HEADER_BYTES + 1);
      for (let i = 0; i < last; i++) {
        const at = base + i;
        const length = scan.readUInt32LE(i);
        if (length === 0 || length > end - at - FRAME_HEADER_BYTES) continue;
        if (this.frame(at, end).ok) return at;
      }
      if (got < want) return undefined;
    }
    return undefined;
  }

  close(): void {
    closeSync(this.fd);
  }

  /** Bytes `[at, at + len)` (fewer when the file is shorter), read ahead up to the window size. */
  private view(at: number, len: number, end: number): Buffer {
    if (at >= this.winStart && at + len <= this.winStart + this.winLen) {
      return this.buf.subarray(at - this.winStart, at - this.winStart + len);
    }
    const want = Math.max(len, Math.min(WINDOW, end - at));
    if (this.buf.length < want || (this.buf.length > WINDOW && want <= WINDOW)) this.buf = Buffer.allocUnsafe(Math.max(want, WINDOW));
    let got = 0;
    while (got < want) {
      const n = readSync(this.fd, this.buf, got, want - got, at + got);
      if (n === 0) break;
      got += n;
    }
    this.winStart = at;
    this.winLen = got;
    return this.buf.subarray(0, Math.min(len, got));
  }
}

export interface ScanResult {
  /** File size before any cut. */
  readonly size: number;
  /** End of the last good frame from `start` on: where the file is cut when it is shorter than `size`. */
  readonly goodEnd: number;
  /** Good frames from `start` to `goodEnd`. */
  readonly frames: number;
  /** Why the bytes after `goodEnd` are no frame (undefined: the file ends there): a torn or damaged tail. */
  readonly problem: string | undefined;
  /** Damaged ranges before `goodEnd` skipped over to the next good frame: bytes, and the first one's reason and place. */
  readonly skipped: number;
  readonly firstDamage: { readonly at: number; readonly reason: string } | undefined;
  /** Each damaged range: its start -> the next good frame (undefined when there is none). */
  readonly holes: Map<number, number> | undefined;
  /** Payload of the first good frame (the oldest record), when there is one. */
  readonly first: string | undefined;
}

/**
 * Walks and checks every frame from `start` (a frame boundary) to `end`; a bad frame is skipped to
 * the next good one, and bytes with no good frame after them are the tail to cut.
 */
export function walkFrames(reader: SegmentReader, start: number, end: number): Omit<ScanResult, 'size'> {
  let at = start;
  let frames = 0;
  let skipped = 0;
  let firstDamage: ScanResult['firstDamage'];
  let holes: Map<number, number> | undefined;
  let first: string | undefined;
  while (at < end) {
    const f = reader.frame(at, end);
    if (!f.ok) {
      const next = reader.resync(at + 1, end);
      if (next === undefined) return { goodEnd: at, frames, problem: f.reason, skipped, firstDamage, holes, first };
      firstDamage ??= { at, reason: f.reason };
      (holes ??= new Map()).set(at, next);
      skipped += next - at;
      at = next;
      continue;
    }
    if (frames === 0) first = f.payload.toString('utf8');
    frames++;
    at = f.next;
  }
  return { goodEnd: at, frames, problem: undefined, skipped, firstDamage, holes, first };
}

/** Walks and checks every frame of a segment from `start` (a frame boundary) to the file's end. */
export function scanSegment(path: string, seq: number, start: number): ScanResult {
  const reader = new SegmentReader(path, seq);
  try {
    const size = reader.size();
    return { size, ...walkFrames(reader, Math.min(start, size), size) };
  } finally {
    reader.close();
  }
}
