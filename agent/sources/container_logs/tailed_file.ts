import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { LogRecord } from '../../record.ts';
import type { ContainerDecoder } from './container_decoder.ts';
import type { PendingStarts } from '../../../parsers/partial_merger.ts';
import { crc32 } from 'node:zlib';
import { FINGERPRINT_BYTES, TAIL_BYTES, fingerprint, fingerprintMatches, tailAt, type Fingerprint } from './file_identity.ts';
import { splitLines } from './line_splitter.ts';

/** live: the path still names this file. rotated: renamed away. orphaned: its symlink or name is gone. */
export type FileState = 'live' | 'rotated' | 'orphaned';

/**
 * Where a restart resumes: read from `offset`; lines before `delivered` were already sent, except
 * those of a stream whose P/F join was in progress (`pending`: where each such join started).
 */
export interface ResumePosition {
  offset: number;
  delivered: number;
  pending: PendingStarts;
  /** Checksum of the bytes just before `offset` as they were read: a restart checks the file still holds them. */
  tail?: Fingerprint;
}

interface PendingAck {
  position: ResumePosition;
  acked: boolean;
}

export interface ReadResult {
  /** Bytes consumed from the file by this read. */
  bytes: number;
  /** The read filled its chunk: more is probably waiting. */
  more: boolean;
  /** The bytes before the read offset are no longer those read there: the file was rewritten (nothing was read). */
  rewritten?: boolean;
}

/** Why a file no longer holds what was read from it. */
export type RewriteReason = 'shrunk' | 'rewritten';

const NOTHING: ReadResult = { bytes: 0, more: false };
const REWRITTEN: ReadResult = { bytes: 0, more: false, rewritten: true };

/**
 * One file being tailed: its descriptor, how far it was read, and how far every output has
 * accepted what was read (the checkpoint). Reads are large and synchronous (page cache, local disk);
 * lines are decoded by the file's own ContainerDecoder.
 */
export class TailedFile {
  readonly key: string;
  readonly dev: number;
  readonly ino: number;
  readonly realPath: string;
  linkPath: string | undefined;
  state: FileState = 'live';
  /** Must be read to its end before this file is read (the file this one replaced by rotation). */
  predecessor: TailedFile | undefined;
  readonly decoder: ContainerDecoder;

  fd: number | undefined;
  fingerprint: Fingerprint;
  /** Next byte to read. */
  readOffset: number;
  /** What every output has accepted: the checkpoint. */
  committed: ResumePosition;
  size = 0;
  lastActivity = Date.now();
  /** When the agent first opened it: rotated copies newer than this were written after. */
  readonly firstSeen = Date.now();
  /** Read to its current end at least once since the last change of state. */
  atEof = false;
  /** Finished: closed and read to the end; dropped once its last acknowledgement is in. */
  finished = false;

  private generation = 0;
  private readonly pending: PendingAck[] = [];
  private pendingHead = 0;
  /** Start of an over-long line whose rest is being skipped; a restart re-reads from here. */
  private skipFrom: number | undefined;
  /** The last TAIL_BYTES (fewer near the start) bytes read before readOffset, as read. */
  private readonly tail = Buffer.allocUnsafe(TAIL_BYTES);
  private tailLength = 0;
  /** The checksum of the bytes before one offset, computed once per offset. */
  private tailSum: { offset: number; sum: Fingerprint } | undefined;
  /** Size and mtime at the last content check of poll: unchanged files are not checked again. */
  private checkedSize = -1;
  private checkedMtime = -1;

  constructor(opts: {
    fd: number;
    dev: number;
    ino: number;
    realPath: string;
    linkPath: string | undefined;
    offset: number;
    fingerprint: Fingerprint;
    decoder: ContainerDecoder;
  }) {
    this.fd = opts.fd;
    this.dev = opts.dev;
    this.ino = opts.ino;
    this.key = `${opts.dev}:${opts.ino}`;
    this.realPath = opts.realPath;
    this.linkPath = opts.linkPath;
    this.readOffset = opts.offset;
    this.fingerprint = opts.fingerprint;
    this.decoder = opts.decoder;
    if (opts.offset > 0) {
      // Resumed from a checkpoint whose tail the caller checked: these are the bytes to compare.
      const n = readSync(opts.fd, this.tail, 0, Math.min(TAIL_BYTES, opts.offset), opts.offset - Math.min(TAIL_BYTES, opts.offset));
      this.tailLength = n;
    }
    this.committed = { offset: opts.offset, delivered: opts.offset, pending: {}, tail: this.tailBefore(opts.offset) };
  }

  get unacked(): boolean {
    return this.pendingHead < this.pending.length;
  }

  /**
   * Reads up to `want` bytes at the read offset and decodes the complete lines in them into `out`.
   * `buf` must hold more than max(want, the decoder's physical line cap) bytes.
   */
  read(space: Buffer, want: number, observed: string, out: LogRecord[]): ReadResult {
    const fd = this.fd;
    if (fd === undefined) return NOTHING;
    // The same read(2) takes the bytes just before the offset: a file rewritten in place (truncated
    // and refilled past the offset between two looks) shows here, for a 128-byte compare.
    const g = this.tailLength;
    let n = readSync(fd, space, 0, want + g, this.readOffset - g);
    if (g > 0) {
      if (n < g || this.tail.compare(space, 0, g, 0, g) !== 0) return REWRITTEN;
      n -= g;
    }
    const buf = g > 0 ? space.subarray(g) : space;
    if (n === 0) {
      this.atEof = true;
      return NOTHING;
    }
    if (!this.decoder.formatKnown) {
      const first = buf.subarray(0, n).indexOf(10);
      this.decoder.detect(buf.toString('latin1', 0, first < 0 ? Math.min(n, 256) : Math.min(first, 256)));
    }
    const maxLineBytes = this.decoder.physicalLineCap;
    this.lastActivity = Date.now();
    if (this.skipFrom !== undefined) {
      const nl = buf.subarray(0, n).indexOf(10);
      if (nl < 0) {
        this.consumed(buf, n);
        return { bytes: n, more: n === want };
      }
      this.skipFrom = undefined;
      this.consumed(buf, nl + 1);
      return { bytes: nl + 1, more: true };
    }
    let last = buf.lastIndexOf(10, n - 1);
    if (last < 0 && n === want && n < buf.length) {
      // One line longer than a chunk: read on, up to the line cap.
      n += readSync(fd, buf, n, buf.length - n, this.readOffset + n);
      last = buf.lastIndexOf(10, n - 1);
    }
    if (last < 0) {
      if (n > maxLineBytes) {
        // Keep the head of an over-long line, marked truncated; skip the rest until its LF.
        this.decoder.decodeBytes(buf.subarray(0, maxLineBytes), this.readOffset, observed, out, true);
        this.skipFrom = this.readOffset;
        this.consumed(buf, n);
        return { bytes: n, more: true };
      }
      // An unterminated line the writer has not finished: read it again when it has.
      this.atEof = true;
      return NOTHING;
    }
    const decoder = this.decoder;
    splitLines(buf, last + 1, this.readOffset, decoder.lineMode, (line, lineStart, binary) => {
      if (line.length > maxLineBytes) decoder.decode(line.slice(0, maxLineBytes), lineStart, observed, out, binary, true);
      else decoder.decode(line, lineStart, observed, out, binary);
    });
    this.consumed(buf, last + 1);
    const more = n === want;
    if (!more) this.atEof = last + 1 === n;
    return { bytes: last + 1, more };
  }

  /**
   * The file will not grow again (rotated or orphaned and idle): decode a last line that lacks its
   * LF and close every partial join, so nothing is held back.
   */
  finishTail(buf: Buffer, observed: string, out: LogRecord[]): number {
    let consumed = 0;
    if (this.fd !== undefined && this.skipFrom === undefined) {
      const n = readSync(this.fd, buf, 0, Math.min(buf.length, this.decoder.physicalLineCap), this.readOffset);
      if (n > 0 && buf.subarray(0, n).indexOf(10) < 0) {
        this.decoder.decodeBytes(buf.subarray(0, n), this.readOffset, observed, out, false);
        this.consumed(buf, n);
        consumed = n;
      }
    }
    this.skipFrom = undefined;
    this.decoder.flush(observed, out);
    return consumed;
  }

  /** Where a restart may resume without losing a line: nothing held in a join or skip lies before it. */
  safeOffset(): number {
    let offset = this.readOffset;
    const held = this.decoder.heldFrom();
    if (held !== undefined && held < offset) offset = held;
    if (this.skipFrom !== undefined && this.skipFrom < offset) offset = this.skipFrom;
    return offset;
  }

  /** Where a restart may resume, with what was already delivered beyond it. */
  position(): ResumePosition {
    const offset = this.safeOffset();
    const tail = this.tailBefore(offset);
    return offset === this.readOffset
      ? { offset, delivered: offset, pending: {}, tail }
      : { offset, delivered: this.readOffset, pending: this.decoder.pendingStarts(), tail };
  }

  /** `buf[0, n)` were read at readOffset: move past them, keeping the last bytes for the rewrite check. */
  private consumed(buf: Buffer, n: number): void {
    this.readOffset += n;
    this.tailSum = undefined;
    if (n >= TAIL_BYTES) {
      buf.copy(this.tail, 0, n - TAIL_BYTES, n);
      this.tailLength = TAIL_BYTES;
      return;
    }
    const keep = Math.min(this.tailLength, TAIL_BYTES - n);
    if (keep < this.tailLength) this.tail.copy(this.tail, 0, this.tailLength - keep, this.tailLength);
    buf.copy(this.tail, keep, 0, n);
    this.tailLength = keep + n;
  }

  /**
   * Checksum of the bytes before `offset` for the checkpoint: from memory at the read offset; an
   * earlier offset (a join or group still held) is read back once (the file cannot have changed
   * unseen since: the next read compares the kept bytes first).
   */
  private tailBefore(offset: number): Fingerprint | undefined {
    if (offset === 0) return undefined;
    if (this.tailSum?.offset === offset) return this.tailSum.sum;
    let sum: Fingerprint | undefined;
    if (offset === this.readOffset) sum = { length: this.tailLength, crc: crc32(this.tail.subarray(0, this.tailLength)) };
    else if (this.fd !== undefined) {
      try {
        sum = tailAt(this.fd, offset);
      } catch {
        return undefined;
      }
    }
    if (sum) this.tailSum = { offset, sum };
    return sum;
  }

  /** Registers the records read so far; the returned callback marks them accepted. */
  track(): () => void {
    const entry: PendingAck = { position: this.position(), acked: false };
    this.pending.push(entry);
    const generation = this.generation;
    return () => {
      if (generation !== this.generation) return;
      entry.acked = true;
      this.advance();
    };
  }

  private advance(): void {
    let head = this.pendingHead;
    while (head < this.pending.length && this.pending[head]!.acked) {
      const position = this.pending[head]!.position;
      if (position.offset >= this.committed.offset) this.committed = position;
      head++;
    }
    if (head === this.pending.length) {
      this.pending.length = 0;
      head = 0;
    } else if (head > 1024) {
      this.pending.splice(0, head);
      head = 0;
    }
    this.pendingHead = head;
  }

  /** Fresh size and link count from the open descriptor. */
  stat(): { size: number; nlink: number; mtimeMs: number } | undefined {
    if (this.fd === undefined) return undefined;
    const st = fstatSync(this.fd);
    this.size = st.size;
    return { size: st.size, nlink: st.nlink, mtimeMs: st.mtimeMs };
  }

  /**
   * Whether the file still holds what was read from it (its first bytes and those just before the
   * read offset), checked when its size or mtime moved since the last check: undefined when it does.
   */
  changedUnderUs(st: { size: number; mtimeMs: number }): RewriteReason | undefined {
    if (st.size < this.readOffset) return 'shrunk';
    if (st.size === this.checkedSize && st.mtimeMs === this.checkedMtime) return undefined;
    this.checkedSize = st.size;
    this.checkedMtime = st.mtimeMs;
    const fd = this.fd;
    if (fd === undefined || this.readOffset === 0) return undefined;
    if (this.fingerprint.length > 0 && this.fingerprint.length <= this.readOffset && !fingerprintMatches(fd, this.fingerprint)) return 'rewritten';
    const g = this.tailLength;
    if (g === 0) return undefined;
    const now = tailAt(fd, this.readOffset, g);
    return now.length === g && now.crc === crc32(this.tail.subarray(0, g)) ? undefined : 'rewritten';
  }

  /** copytruncate: the file shrank under us; its new content starts at 0. */
  restartFromZero(): void {
    this.generation++;
    this.pending.length = 0;
    this.pendingHead = 0;
    this.readOffset = 0;
    this.committed = { offset: 0, delivered: 0, pending: {} };
    this.tailLength = 0;
    this.tailSum = undefined;
    this.checkedSize = -1;
    this.skipFrom = undefined;
    this.atEof = false;
    this.fingerprint = { length: 0, crc: 0 };
  }

  /** Keeps the inode-reuse fingerprint current while the file is still shorter than its length. */
  refreshFingerprint(): void {
    if (this.fd !== undefined && this.fingerprint.length < FINGERPRINT_BYTES && this.size > this.fingerprint.length) {
      this.fingerprint = fingerprint(this.fd);
    }
  }

  close(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }

  /** Reopens a live file closed to stay under the descriptor cap; false when the path now names another file. */
  reopen(): boolean {
    if (this.fd !== undefined) return true;
    let fd: number;
    try {
      fd = openSync(this.realPath, 'r');
    } catch {
      return false;
    }
    const st = fstatSync(fd);
    if (st.dev !== this.dev || st.ino !== this.ino) {
      closeSync(fd);
      return false;
    }
    this.fd = fd;
    return true;
  }
}
