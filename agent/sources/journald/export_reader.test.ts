import { describe, expect, it } from 'vitest';
import { ExportParser, utf8Prefix, type ExportEntry } from './export_reader.ts';

/** `NAME\n` + 8-byte little-endian length + bytes + `\n`, as journalctl writes a binary field. */
function binary(name: string, value: Buffer | string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value) : value;
  const len = Buffer.alloc(8);
  len.writeUInt32LE(bytes.length % 0x1_0000_0000, 0);
  len.writeUInt32LE(Math.floor(bytes.length / 0x1_0000_0000), 4);
  return Buffer.concat([Buffer.from(name + '\n'), len, bytes, Buffer.from('\n')]);
}

const text = (name: string, value: string) => Buffer.from(`${name}=${value}\n`);
const END = Buffer.from('\n');

const long = 'x'.repeat(10_000) + 'é';
const sample = Buffer.concat([
  text('__CURSOR', 's=1;i=1'),
  text('__REALTIME_TIMESTAMP', '1700000000000001'),
  text('MESSAGE', 'plain text with = signs = inside'),
  text('PRIORITY', '6'),
  END,
  text('__CURSOR', 's=1;i=2'),
  binary('MESSAGE', 'first line\nsecond line'),
  text('TAG', 'a'),
  text('TAG', 'b'),
  binary('TAG', 'c\nc'),
  END,
  text('__CURSOR', 's=1;i=3'),
  binary('MESSAGE', Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a, 0xff, 0xfe])),
  // Length 10: its first header byte is 0x0a, which is not a line end.
  binary('TEN', 'abcdefghij'),
  binary('EMPTY', ''),
  text('UNICODE', 'grüße ✓'),
  END,
  text('__CURSOR', 's=1;i=4'),
  binary('MESSAGE', long),
  END,
]);

const expected = [
  { cursor: 's=1;i=1', message: 'plain text with = signs = inside', extra: { PRIORITY: '6', __REALTIME_TIMESTAMP: '1700000000000001' } },
  { cursor: 's=1;i=2', message: 'first line\nsecond line', extra: { TAG: ['a', 'b', 'c\nc'] } },
  { cursor: 's=1;i=3', message: 'caf\ufffd\n\ufffd\ufffd', extra: { TEN: 'abcdefghij', EMPTY: '', UNICODE: 'grüße ✓' } },
  { cursor: 's=1;i=4', message: long, extra: {} },
];

function parse(chunks: Buffer[], maxFieldBytes = 1 << 20, errors: string[] = []): ExportEntry[] {
  const parser = new ExportParser({ maxFieldBytes, onError: (m) => errors.push(m) });
  const out: ExportEntry[] = [];
  // Copies, and the source buffer scribbled over afterwards: the parser must not keep views of a chunk.
  for (const c of chunks) {
    const copy = Buffer.from(c);
    parser.push(copy, out);
    copy.fill(0x21);
  }
  return out;
}

function plain(entries: ExportEntry[]) {
  return entries.map((e) => Object.fromEntries(e.fields));
}

function check(entries: ExportEntry[]): void {
  expect(entries).toHaveLength(expected.length);
  entries.forEach((e, i) => {
    const want = expected[i]!;
    expect(e.fields.get('__CURSOR')).toBe(want.cursor);
    expect(e.fields.get('MESSAGE')).toBe(want.message);
    for (const [k, v] of Object.entries(want.extra)) expect(e.fields.get(k), k).toEqual(v);
    expect(e.truncated).toBe(false);
  });
  expect(entries.reduce((n, e) => n + e.bytes, 0)).toBe(sample.length);
}

describe('ExportParser', () => {
  it('parses text, binary, non-UTF-8, empty, long and repeated fields', () => {
    const entries = parse([sample]);
    check(entries);
    expect(entries[0]!.fields.size).toBe(4);
  });

  it('gives the same entries for the stream split at every byte boundary', () => {
    const whole = plain(parse([sample]));
    for (let at = 0; at <= sample.length; at++) {
      const got = parse([sample.subarray(0, at), sample.subarray(at)]);
      expect(plain(got), `split at ${at}`).toEqual(whole);
      expect(got.reduce((n, e) => n + e.bytes, 0)).toBe(sample.length);
    }
  });

  it('gives the same entries for one byte at a time and for random chunk sizes', () => {
    const whole = plain(parse([sample]));
    check(parse([...sample].map((b) => Buffer.from([b]))));
    let seed = 7;
    for (let round = 0; round < 50; round++) {
      const chunks: Buffer[] = [];
      for (let pos = 0; pos < sample.length; ) {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        const n = 1 + (seed % 40);
        chunks.push(sample.subarray(pos, pos + n));
        pos += n;
      }
      expect(plain(parse(chunks))).toEqual(whole);
    }
  });

  it('emits nothing for an entry not yet ended, and forgets it on reset', () => {
    const parser = new ExportParser({ maxFieldBytes: 1024 });
    const out: ExportEntry[] = [];
    parser.push(Buffer.concat([text('__CURSOR', 'a'), END, text('__CURSOR', 'b'), binary('MESSAGE', 'torn').subarray(0, 12)]), out);
    expect(out.map((e) => e.fields.get('__CURSOR'))).toEqual(['a']);
    expect(parser.midEntry).toBe(true);
    parser.reset();
    expect(parser.midEntry).toBe(false);
    parser.push(Buffer.concat([text('__CURSOR', 'c'), END]), out);
    expect(out.map((e) => e.fields.get('__CURSOR'))).toEqual(['a', 'c']);
  });

  it('ignores extra empty lines between entries', () => {
    const out = parse([Buffer.concat([END, text('A', '1'), END, END, END, text('A', '2'), END])]);
    expect(plain(out)).toEqual([{ A: '1' }, { A: '2' }]);
  });

  it('cuts fields longer than maxFieldBytes at a character boundary and marks the entry', () => {
    const big = 'é'.repeat(100); // 200 bytes
    const stream = Buffer.concat([
      text('A', big),
      END,
      binary('MESSAGE', big),
      END,
      text('SHORT', 'ok'),
      END,
    ]);
    for (const chunks of [[stream], [...stream].map((b) => Buffer.from([b]))]) {
      const out = parse(chunks, 51);
      expect(out).toHaveLength(3);
      expect(out[0]!.fields.get('A')).toBe('é'.repeat(25));
      expect(out[0]!.truncated).toBe(true);
      expect(out[1]!.fields.get('MESSAGE')).toBe('é'.repeat(25));
      expect(out[1]!.truncated).toBe(true);
      expect(out[2]!.truncated).toBe(false);
      expect(out.reduce((n, e) => n + e.bytes, 0)).toBe(stream.length);
    }
  });

  it('cuts a text line that goes on far past the cap while it streams in', () => {
    const stream = Buffer.concat([text('A', 'y'.repeat(5000)), text('B', 'after'), END]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; i += 100) chunks.push(stream.subarray(i, i + 100));
    const out = parse(chunks, 64);
    expect(out).toHaveLength(1);
    expect(out[0]!.fields.get('A')).toBe('y'.repeat(64));
    expect(out[0]!.fields.get('B')).toBe('after');
    expect(out[0]!.truncated).toBe(true);
  });

  it('reports a binary field without its closing newline and goes on', () => {
    const broken = binary('MESSAGE', 'abc');
    broken[broken.length - 1] = 0x41; // 'A' where '\n' belongs
    const errors: string[] = [];
    const out = parse([Buffer.concat([broken, Buffer.from('=1\n'), END, text('NEXT', 'ok'), END])], 1024, errors);
    expect(errors).toHaveLength(1);
    expect(out[0]!.fields.get('MESSAGE')).toBe('abc');
    expect(out[1]!.fields.get('NEXT')).toBe('ok');
  });
});

describe('utf8Prefix', () => {
  it('never splits a character', () => {
    const buf = Buffer.from('aé✓😀');
    const lengths = [0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10];
    for (let max = 0; max <= buf.length; max++) expect(utf8Prefix(buf, max).length, `max ${max}`).toBe(lengths[max]);
  });
});
