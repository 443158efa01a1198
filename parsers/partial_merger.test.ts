import { describe, it, expect } from 'vitest';
import type { ContainerLine } from './container_line.ts';
import { isParseFailure } from './container_line.ts';
import { parseCriLine } from './cri.ts';
import { PartialMerger } from './partial_merger.ts';
import type { JoinedLine } from './partial_merger.ts';

function cri(line: string): ContainerLine {
  const r = parseCriLine(line);
  if (isParseFailure(r)) throw new Error(r.error);
  return r;
}

function rec(time: string, stream: 'stdout' | 'stderr', content: string, extra: Partial<JoinedLine> = {}): JoinedLine {
  return { time, stream, content, incomplete: false, truncated: false, ...extra };
}

interface ReadResult {
  records: JoinedLine[];
  errors: string[];
  /** Where a checkpoint may point after the last read: past the last complete line, before any pending join. */
  checkpoint: number;
  /** Bytes of an unterminated last line, kept for the next read and never parsed. */
  tail: Buffer;
  merger: PartialMerger;
}

/**
 * Reads the way the tailer does: byte reads of any size, lines cut at LF, an unterminated tail
 * carried over as bytes (so a UTF-8 sequence cut by a read boundary is decoded whole).
 */
function readChunks(reads: Buffer[], merger = new PartialMerger()): ReadResult {
  const records: JoinedLine[] = [];
  const errors: string[] = [];
  let carry = Buffer.alloc(0);
  let base = 0; // file offset of carry[0]
  for (const read of reads) {
    const buf = carry.length === 0 ? read : Buffer.concat([carry, read]);
    let start = 0;
    for (let lf = buf.indexOf(10, start); lf >= 0; lf = buf.indexOf(10, start)) {
      const r = parseCriLine(buf.toString('utf8', start, lf));
      if (isParseFailure(r)) errors.push(r.error);
      else {
        const joined = merger.push(r, base + start, 0);
        if (joined !== undefined) records.push(joined);
      }
      start = lf + 1;
    }
    base += start;
    carry = Buffer.from(buf.subarray(start));
  }
  return { records, errors, checkpoint: merger.earliestPendingOffset() ?? base, tail: carry, merger };
}

function cutEvery(data: Buffer, size: number): Buffer[] {
  const reads: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) reads.push(data.subarray(i, i + size));
  return reads;
}

describe('PartialMerger: log-formats.md §1.3 test vectors', () => {
  const vectors = [
    '2026-11-21T10:00:00.1Z stdout P abc\n',
    '2026-11-21T10:00:00.2Z stderr F oops\n',
    '2026-11-21T10:00:00.3Z stdout F def\n',
    '2026-11-21T11:00:00.123456789+01:00 stdout F x\n',
    '2026-11-21T10:00:01Z stdout F \n',
    '2026-11-21T10:00:02Z stdout F:foo y\n',
    '2026-11-21T10:00:03Z stdout F\n',
    '2026-11-21T10:00:04Z stdout P half',
  ];

  it('gives the expected result line by line', () => {
    const m = new PartialMerger();
    const step = (line: string) => {
      const r = parseCriLine(line.endsWith('\n') ? line.slice(0, -1) : line);
      return isParseFailure(r) ? r : m.push(r, 0, 0);
    };
    expect(step(vectors[0]!)).toBeUndefined();
    expect(step(vectors[1]!)).toEqual(rec('2026-11-21T10:00:00.200000000Z', 'stderr', 'oops'));
    expect(step(vectors[2]!)).toEqual(rec('2026-11-21T10:00:00.100000000Z', 'stdout', 'abcdef'));
    expect(step(vectors[3]!)).toEqual(rec('2026-11-21T10:00:00.123456789Z', 'stdout', 'x'));
    expect(step(vectors[4]!)).toEqual(rec('2026-11-21T10:00:01.000000000Z', 'stdout', ''));
    expect(step(vectors[5]!)).toEqual(rec('2026-11-21T10:00:02.000000000Z', 'stdout', 'y'));
    expect(step(vectors[6]!)).toEqual({ error: 'cri: log tag not found' });
    expect(m.pendingCount()).toBe(0);
  });

  it('gives the same through a reader, leaving the unterminated line unparsed', () => {
    const data = Buffer.from(vectors.join(''));
    const r = readChunks([data]);
    expect(r.records).toEqual([
      rec('2026-11-21T10:00:00.200000000Z', 'stderr', 'oops'),
      rec('2026-11-21T10:00:00.100000000Z', 'stdout', 'abcdef'),
      rec('2026-11-21T10:00:00.123456789Z', 'stdout', 'x'),
      rec('2026-11-21T10:00:01.000000000Z', 'stdout', ''),
      rec('2026-11-21T10:00:02.000000000Z', 'stdout', 'y'),
    ]);
    expect(r.errors).toEqual(['cri: log tag not found']);
    expect(r.merger.pendingCount()).toBe(0);
    expect(r.tail.toString()).toBe('2026-11-21T10:00:04Z stdout P half');
    expect(r.checkpoint).toBe(data.length - r.tail.length);
  });
});

describe('PartialMerger joins', () => {
  it('joins interleaved stdout and stderr chunks separately, keeping the first time and offset', () => {
    const m = new PartialMerger();
    expect(m.earliestPendingOffset()).toBeUndefined();
    expect(m.push(cri('2026-11-21T10:00:00.1Z stdout P a '), 100, 0)).toBeUndefined();
    expect(m.earliestPendingOffset()).toBe(100);
    expect(m.push(cri('2026-11-21T10:00:00.2Z stderr P \tb'), 200, 0)).toBeUndefined();
    expect(m.push(cri('2026-11-21T10:00:00.3Z stdout P c'), 300, 0)).toBeUndefined();
    expect(m.earliestPendingOffset()).toBe(100);
    expect(m.pendingCount()).toBe(2);
    expect(m.push(cri('2026-11-21T10:00:00.4Z stdout F e'), 400, 0)).toEqual(
      rec('2026-11-21T10:00:00.100000000Z', 'stdout', 'a ce'),
    );
    expect(m.earliestPendingOffset()).toBe(200);
    expect(m.pendingCount()).toBe(1);
    expect(m.push(cri('2026-11-21T10:00:00.5Z stderr F d'), 500, 0)).toEqual(
      rec('2026-11-21T10:00:00.200000000Z', 'stderr', '\tbd'),
    );
    expect(m.earliestPendingOffset()).toBeUndefined();
    expect(m.pendingCount()).toBe(0);
  });

  it('returns a lone F at once with its content unchanged', () => {
    const m = new PartialMerger();
    const line = cri('2026-11-21T10:00:00.123456789Z stdout F same');
    const out = m.push(line, 0, 0);
    expect(out).toEqual(rec('2026-11-21T10:00:00.123456789Z', 'stdout', 'same'));
    expect(out?.content).toBe(line.content);
  });

  it('joins byte-exactly: spaces, tabs, unicode, replacement characters and CRs', () => {
    const m = new PartialMerger();
    const chunks = [' lead  ', '\tté日本', '😀\uFFFD\uFFFD', 'cr\r', ' mid\rx', '  '];
    chunks.forEach((c, i) => expect(m.push(cri(`2026-11-21T10:00:0${i}Z stdout P ${c}`), i, 0)).toBeUndefined());
    const out = m.push(cri('2026-11-21T10:00:09Z stdout F end \r'), 9, 0);
    expect(out).toEqual(rec('2026-11-21T10:00:00.000000000Z', 'stdout', chunks.join('') + 'end '));
  });

  it('reproduces a 20 KB line that containerd split at 16384', () => {
    const line = Array.from({ length: 4000 }, (_, i) => `w${i}\t `).join('').slice(0, 20_480);
    expect(line.length).toBe(20_480);
    const data = Buffer.from(
      `2026-11-21T10:00:00.000000001Z stdout P ${line.slice(0, 16384)}\n` +
        `2026-11-21T10:00:00.000000002Z stdout F ${line.slice(16384)}\n`,
    );
    const r = readChunks(cutEvery(data, 4096));
    expect(r.records).toEqual([rec('2026-11-21T10:00:00.000000001Z', 'stdout', line)]);
    expect(r.checkpoint).toBe(data.length);
  });

  it('reproduces a 50 KB line split into P, P, P, F', () => {
    const line = 'x y\t'.repeat(12_500);
    const lines: string[] = [];
    for (let i = 0; i < line.length; i += 16384) {
      const tag = i + 16384 < line.length ? 'P' : 'F';
      lines.push(`2026-11-21T10:00:0${lines.length}.5Z stdout ${tag} ${line.slice(i, i + 16384)}\n`);
    }
    expect(lines.map((l) => l.slice(30, 32))).toEqual(['P ', 'P ', 'P ', 'F ']);
    const r = readChunks([Buffer.from(lines.join(''))]);
    expect(r.records).toEqual([rec('2026-11-21T10:00:00.500000000Z', 'stdout', line)]);
  });
});

describe('PartialMerger: chunks split across read boundaries', () => {
  // CRI-O and containerd styles mixed, P chunks on both streams, multi-byte UTF-8, invalid bytes,
  // CRs, an empty record, a malformed line, and an unterminated last line.
  const data = Buffer.concat([
    Buffer.from('2026-11-21T10:00:00.1Z stdout P héllo \n'),
    Buffer.from('2026-11-21T10:00:00.123456789+00:00 stderr P 日本'),
    Buffer.from([0xff, 0xc3]),
    Buffer.from('\n'),
    Buffer.from('2026-11-21T10:00:00.2Z stdout P wörld\t😀\n'),
    Buffer.from('2026-11-21T10:00:00.3Z stdout F !\r\n'),
    Buffer.from('2026-11-21T11:00:00.4+01:00 stderr F 語\r\n'),
    Buffer.from('2026-11-21T10:00:01Z stdout F \n'),
    Buffer.from('garbage line\n'),
    Buffer.from('2026-11-21T10:00:02.5Z stderr F a\rb c\n'),
    Buffer.from('2026-11-21T10:00:03Z stdout P pend'),
    Buffer.from('\n'),
    Buffer.from('2026-11-21T10:00:04Z stdout F tail-not-terminated'),
  ]);
  const pendingAt = data.indexOf('2026-11-21T10:00:03Z');
  const tailAt = data.indexOf('2026-11-21T10:00:04Z');

  const expected = [
    rec('2026-11-21T10:00:00.100000000Z', 'stdout', 'héllo wörld\t😀!'),
    rec('2026-11-21T10:00:00.123456789Z', 'stderr', '日本\uFFFD\uFFFD語'),
    rec('2026-11-21T10:00:01.000000000Z', 'stdout', ''),
    rec('2026-11-21T10:00:02.500000000Z', 'stderr', 'a\rb c'),
  ];

  function check(r: ReadResult): void {
    expect(r.records).toEqual(expected);
    expect(r.errors).toEqual(['cri: invalid timestamp "garbage"']);
    expect(r.checkpoint).toBe(pendingAt);
    expect(r.tail.equals(data.subarray(tailAt))).toBe(true);
    expect(r.merger.flush()).toEqual([
      rec('2026-11-21T10:00:03.000000000Z', 'stdout', 'pend', { incomplete: true }),
    ]);
  }

  it('joins as expected in one read', () => {
    check(readChunks([data]));
  });

  it('gives identical output for every cut position of two reads', () => {
    for (let cut = 1; cut < data.length; cut++) {
      check(readChunks([data.subarray(0, cut), data.subarray(cut)]));
    }
  });

  it('gives identical output for every read size', () => {
    for (let size = 1; size <= data.length; size++) check(readChunks(cutEvery(data, size)));
  });
});

describe('PartialMerger cap', () => {
  it('keeps what fits, discards until the F, then emits truncated with the first time', () => {
    const m = new PartialMerger({ maxBytes: 10 });
    expect(m.push(cri('2026-11-21T10:00:00.1Z stdout P 12345678'), 0, 0)).toBeUndefined();
    expect(m.push(cri('2026-11-21T10:00:00.2Z stdout P abcd'), 50, 0)).toBeUndefined();
    expect(m.push(cri('2026-11-21T10:00:00.3Z stdout P zzz'), 100, 0)).toBeUndefined();
    expect(m.earliestPendingOffset()).toBe(0);
    expect(m.push(cri('2026-11-21T10:00:00.4Z stdout F tail'), 150, 0)).toEqual(
      rec('2026-11-21T10:00:00.100000000Z', 'stdout', '12345678ab', { truncated: true }),
    );
    // The next line starts fresh.
    expect(m.push(cri('2026-11-21T10:00:00.5Z stdout F next'), 200, 0)).toEqual(
      rec('2026-11-21T10:00:00.500000000Z', 'stdout', 'next'),
    );
  });

  it('does not mark a join that exactly fills the cap', () => {
    const m = new PartialMerger({ maxBytes: 6 });
    m.push(cri('2026-11-21T10:00:00Z stdout P abc'), 0, 0);
    m.push(cri('2026-11-21T10:00:00Z stdout P def'), 1, 0);
    expect(m.push(cri('2026-11-21T10:00:00Z stdout F '), 2, 0)).toEqual(
      rec('2026-11-21T10:00:00.000000000Z', 'stdout', 'abcdef'),
    );
  });

  it('cuts a single oversized F or first P, never between surrogates', () => {
    const m = new PartialMerger({ maxBytes: 5 });
    expect(m.push(cri('2026-11-21T10:00:00Z stderr F abcdefgh'), 0, 0)).toEqual(
      rec('2026-11-21T10:00:00.000000000Z', 'stderr', 'abcde', { truncated: true }),
    );
    expect(m.push(cri('2026-11-21T10:00:00Z stderr F abcd😀'), 0, 0)).toEqual(
      rec('2026-11-21T10:00:00.000000000Z', 'stderr', 'abcd', { truncated: true }),
    );
    m.push(cri('2026-11-21T10:00:00Z stdout P abcdefgh'), 0, 0);
    expect(m.flush()).toEqual([
      rec('2026-11-21T10:00:00.000000000Z', 'stdout', 'abcde', { truncated: true, incomplete: true }),
    ]);
  });

  it('rejects a cap below 1', () => {
    expect(() => new PartialMerger({ maxBytes: 0 })).toThrow(RangeError);
    expect(() => new PartialMerger({ maxBytes: Number.NaN })).toThrow(RangeError);
  });
});

describe('PartialMerger flush', () => {
  it('flush emits every pending join as incomplete, oldest first, and clears state', () => {
    const m = new PartialMerger();
    m.push(cri('2026-11-21T10:00:00.1Z stderr P e1'), 10, 0);
    m.push(cri('2026-11-21T10:00:00.2Z stdout P o1'), 20, 0);
    m.push(cri('2026-11-21T10:00:00.3Z stderr P e2'), 30, 0);
    expect(m.flush()).toEqual([
      rec('2026-11-21T10:00:00.100000000Z', 'stderr', 'e1e2', { incomplete: true }),
      rec('2026-11-21T10:00:00.200000000Z', 'stdout', 'o1', { incomplete: true }),
    ]);
    expect(m.pendingCount()).toBe(0);
    expect(m.earliestPendingOffset()).toBeUndefined();
    expect(m.flush()).toEqual([]);
    // An F after a flush is a line of its own.
    expect(m.push(cri('2026-11-21T10:00:00.4Z stderr F e3'), 40, 0)).toEqual(
      rec('2026-11-21T10:00:00.400000000Z', 'stderr', 'e3'),
    );
  });

  it('flushIdle emits only joins idle for more than idleMs', () => {
    const m = new PartialMerger();
    m.push(cri('2026-11-21T10:00:00.1Z stdout P o1'), 0, 1000);
    m.push(cri('2026-11-21T10:00:00.2Z stderr P e1'), 10, 4000);
    m.push(cri('2026-11-21T10:00:00.3Z stdout P o2'), 20, 2000);
    expect(m.flushIdle(7000, 5000)).toEqual([]);
    expect(m.flushIdle(7001, 5000)).toEqual([
      rec('2026-11-21T10:00:00.100000000Z', 'stdout', 'o1o2', { incomplete: true }),
    ]);
    expect(m.pendingCount()).toBe(1);
    expect(m.earliestPendingOffset()).toBe(10);
    expect(m.push(cri('2026-11-21T10:00:00.4Z stderr F e2'), 30, 8000)).toEqual(
      rec('2026-11-21T10:00:00.200000000Z', 'stderr', 'e1e2'),
    );
    expect(m.flushIdle(100_000, 5000)).toEqual([]);
  });

  it('uses Date.now() when push is not given a time', () => {
    const m = new PartialMerger();
    const before = Date.now();
    m.push(cri('2026-11-21T10:00:00Z stdout P x'), 0);
    expect(m.flushIdle(before - 1, 0)).toEqual([]);
    expect(m.flushIdle(Date.now() + 60_001, 60_000)).toEqual([
      rec('2026-11-21T10:00:00.000000000Z', 'stdout', 'x', { incomplete: true }),
    ]);
  });
});
