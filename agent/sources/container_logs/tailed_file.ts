import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { LogRecord } from '../../record.ts';
import type { ContainerDecoder } from './container_decoder.ts';
import type { PendingStarts } from '../../../parsers/partial_merger.ts';
import { FINGERPRINT_BYTES, fingerprint, type Fingerprint } from './file_identity.ts';
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
}

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
    this.committed = { offset: opts.offset, delivered: opts.offset, pending: {} };
    this.fingerprint = opts.fingerprint;
    this.decoder = opts.decoder;
  }

  get unacked(): boolean {
    return this.pendingHead < this.pending.length;
  }

  /**
   * Reads up to `want` bytes at the read offset and decodes the complete lines in them into `out`.
   * `buf` must hold more than max(want, the decoder's physical line cap) bytes.
   */
  read(buf: Buffer, want: number, observed: string, out: LogRecord[]): ReadResult {
    const fd = this.fd;
    if (fd === undefined) return { bytes: 0, more: false };
    let n = readSync(fd, buf, 0, want, this.readOffset);
    if (n === 0) {
      this.atEof = true;
      return { bytes: 0, more: false };
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
        this.readOffset += n;
        return { bytes: n, more: n === want };
      }
      this.skipFrom = undefined;
      this.readOffset += nl + 1;
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
        this.readOffset += n;
        return { bytes: n, more: true };
      }
      // An unterminated line the writer has not finished: read it again when it has.
      this.atEof = true;
      return { bytes: 0, more: false };
    }
    const decoder = this.decoder;
    splitLines(buf, last + 1, this.readOffset, decoder.lineMode, (line, lineStart, binary) => {
      if (line.length > maxLineBytes) decoder.decode(line.slice(0, maxLineBytes), lineStart, observed, out, binary, true);
      else decoder.decode(line, lineStart, observed, out, binary);
    });
    this.readOffset += last + 1;
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
        this.readOffset += n;
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
    return offset === this.readOffset ? { offset, delivered: offset, pending: {} } : { offset, delivered: this.readOffset, pending: this.decoder.pendingStarts() };
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
  stat(): { size: number; nlink: number } | undefined {
    if (this.fd === undefined) return undefined;
    const st = fstatSync(this.fd);
    this.size = st.size;
    return { size: st.size, nlink: st.nlink };
  }

  /** copytruncate: the file shrank under us; its new content starts at 0. */
  restartFromZero(): void {
    this.generation++;
    this.pending.length = 0;
    this.pendingHead = 0;
    this.readOffset = 0;
    this.committed = { offset: 0, delivered: 0, pending: {} };
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
