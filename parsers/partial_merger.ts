import type { ContainerLine } from './container_line.ts';

export interface PendingStarts {
  stdout?: number;
  stderr?: number;
}

/** A logical line: the P chunks and closing F of one stream joined (log-formats.md §1.3). */
export interface JoinedLine {
  /** The first chunk's time: when the line started to be written. */
  time: string;
  stream: 'stdout' | 'stderr';
  content: string;
  /** Flushed without its F (container exit, rotation mid-line, timeout, shutdown). */
  incomplete: boolean;
  /** Cut at maxBytes; the rest of the line up to its F was discarded. */
  truncated: boolean;
}

export interface PartialMergerOptions {
  /**
   * Cap on a joined line, in UTF-16 code units (string length), default 1 MiB. It bounds memory,
   * so it counts what a string costs rather than its UTF-8 size: for ASCII the two are equal, other
   * text has up to 3 UTF-8 bytes per unit.
   */
  maxBytes?: number;
}

interface Pending {
  /** Joined once at the F: repeated concatenation would build a deep rope per 16 KiB chunk. */
  parts: string[];
  size: number;
  time: string;
  startOffset: number;
  lastSeen: number;
  truncated: boolean;
}

const STDOUT = 0;
const STDERR = 1;

/** Cuts to at most n code units without leaving half a surrogate pair at the end. */
function cut(s: string, n: number): string {
  if (n >= s.length) return s;
  if (n <= 0) return '';
  const c = s.charCodeAt(n - 1);
  return s.slice(0, c >= 0xd800 && c <= 0xdbff ? n - 1 : n);
}

/**
 * Joins P chunks with the F that ends them, per stream. One merger per file (per inode, not path),
 * so the stream is the whole key: stdout and stderr interleave freely and are never joined.
 */
export class PartialMerger {
  private readonly maxBytes: number;
  // Indexed by STDOUT/STDERR: two keys do not need a Map.
  private readonly slots: [Pending | undefined, Pending | undefined] = [undefined, undefined];

  constructor(options: PartialMergerOptions = {}) {
    const maxBytes = options.maxBytes ?? 1024 * 1024;
    if (!(maxBytes >= 1)) throw new RangeError(`maxBytes must be at least 1, got ${maxBytes}`);
    this.maxBytes = maxBytes;
  }

  /**
   * Takes the next line of one file. `startOffset` is the byte offset where this physical line
   * starts; it matters only for a P that opens a join (see earliestPendingOffset). `now` is read
   * only for P lines, to time out joins whose F never comes.
   */
  push(line: ContainerLine, startOffset: number, now?: number): JoinedLine | undefined {
    const key = line.stream === 'stdout' ? STDOUT : STDERR;
    const p = this.slots[key];
    if (p === undefined) {
      if (!line.partial) {
        // The common case: a whole line and nothing pending. One allocation, the result.
        const content = line.content;
        if (content.length <= this.maxBytes) {
          return { time: line.time, stream: line.stream, content, incomplete: false, truncated: false };
        }
        return { time: line.time, stream: line.stream, content: cut(content, this.maxBytes), incomplete: false, truncated: true };
      }
      const content = line.content;
      const fits = content.length <= this.maxBytes;
      const first = fits ? content : cut(content, this.maxBytes);
      this.slots[key] = {
        parts: [first],
        size: first.length,
        time: line.time,
        startOffset,
        lastSeen: now ?? Date.now(),
        truncated: !fits,
      };
      return undefined;
    }

    if (!p.truncated) {
      const content = line.content;
      const room = this.maxBytes - p.size;
      if (content.length <= room) {
        p.parts.push(content);
        p.size += content.length;
      } else {
        // Keep what fits and drop everything up to the F, which still closes the record.
        const head = cut(content, room);
        if (head.length > 0) p.parts.push(head);
        p.size += head.length;
        p.truncated = true;
      }
    }
    if (line.partial) {
      p.lastSeen = now ?? Date.now();
      return undefined;
    }
    this.slots[key] = undefined;
    return toJoined(p, line.stream, false);
  }

  /** Emits every pending join as incomplete (file finished, shutdown) and forgets them. */
  flush(): JoinedLine[] {
    return this.take(Number.POSITIVE_INFINITY, -1);
  }

  /** Emits as incomplete the joins whose last chunk arrived more than idleMs before now. */
  flushIdle(now: number, idleMs: number): JoinedLine[] {
    return this.take(now, idleMs);
  }

  /**
   * Byte offset where the oldest pending join starts. A checkpoint must not move past it: after a
   * restart the join is read again from its first chunk instead of losing its head.
   */
  /** Where each stream's join in progress started (absent: nothing pending on that stream). */
  pendingStarts(): PendingStarts {
    const out = this.slots[STDOUT];
    const err = this.slots[STDERR];
    const starts: PendingStarts = {};
    if (out !== undefined) starts.stdout = out.startOffset;
    if (err !== undefined) starts.stderr = err.startOffset;
    return starts;
  }

  earliestPendingOffset(): number | undefined {
    const out = this.slots[STDOUT];
    const err = this.slots[STDERR];
    if (out === undefined) return err?.startOffset;
    if (err === undefined) return out.startOffset;
    return Math.min(out.startOffset, err.startOffset);
  }

  pendingCount(): number {
    return (this.slots[STDOUT] === undefined ? 0 : 1) + (this.slots[STDERR] === undefined ? 0 : 1);
  }

  private take(now: number, idleMs: number): JoinedLine[] {
    const result: JoinedLine[] = [];
    const out = this.slots[STDOUT];
    const err = this.slots[STDERR];
    const takeOut = out !== undefined && now - out.lastSeen > idleMs;
    const takeErr = err !== undefined && now - err.lastSeen > idleMs;
    if (takeOut) this.slots[STDOUT] = undefined;
    if (takeErr) this.slots[STDERR] = undefined;
    // Oldest first, so records leave in the order their lines started in the file.
    if (takeOut && takeErr && err.startOffset < out.startOffset) {
      result.push(toJoined(err, 'stderr', true), toJoined(out, 'stdout', true));
    } else {
      if (takeOut) result.push(toJoined(out, 'stdout', true));
      if (takeErr) result.push(toJoined(err, 'stderr', true));
    }
    return result;
  }
}

function toJoined(p: Pending, stream: 'stdout' | 'stderr', incomplete: boolean): JoinedLine {
  const content = p.parts.length === 1 ? p.parts[0]! : p.parts.join('');
  return { time: p.time, stream, content, incomplete, truncated: p.truncated };
}
