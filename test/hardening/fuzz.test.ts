import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { DiskBuffer, diskBufferDir } from '../../agent/buffers/disk_buffer.ts';
import { encodeFrames } from '../../agent/buffers/frame_codec.ts';
import { loadReadPosition } from '../../agent/buffers/read_position.ts';
import { scanSegment, segmentName } from '../../agent/buffers/segment_file.ts';
import { SelfMetrics } from '../../agent/metrics.ts';
import { CheckpointStore } from '../../agent/sources/container_logs/checkpoint_store.ts';
import { CursorStore } from '../../agent/sources/journald/cursor_store.ts';
import { ExportParser, type ExportEntry } from '../../agent/sources/journald/export_reader.ts';
import { loadCheckpoint } from '../../agent/sources/kubernetes_events/checkpoint.ts';
import { isParseFailure } from '../../parsers/container_line.ts';
import { parseCriLine } from '../../parsers/cri.ts';
import { parseDockerJsonLine } from '../../parsers/docker_json.ts';
import { parseJsonBody } from '../../parsers/json_body.ts';
import { parseLogfmt } from '../../parsers/logfmt.ts';
import { MultilineGrouper, type MultilineRecord } from '../../parsers/multiline.ts';
import { PartialMerger } from '../../parsers/partial_merger.ts';
import { memoryLog } from '../helpers/buffer_fixtures.ts';
import { FuzzRuns } from '../helpers/fuzz_runs.ts';

/**
 * Issue 11 item 10: property-based tests (fast-check) of every parser and loader that reads what a
 * container, journalctl or an earlier run of the agent wrote. For any input: no throw outside the
 * contract (a parse failure is a value), no endless loop (each property runs under the test's
 * time limit), nothing that grows without bound (outputs and held state checked against the limits).
 * FUZZ_RUNS scales every property's run count (default 1); FUZZ_SEED replays a failure.
 */
const fuzz = new FuzzRuns('fuzz: {n} generated inputs');
const check = fuzz.check.bind(fuzz);

const scratch = mkdtempSync(join(tmpdir(), 'kta-fuzz-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let files = 0;

// ---- inputs that look almost right, where parsers break ---------------------------------------

const time = fc.oneof(
  fc.constant('2026-11-21T10:00:00.123456789Z'),
  fc.constant('2026-11-21T10:00:00+02:00'),
  fc.string({ maxLength: 40 }),
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
);
const stream = fc.constantFrom('stdout', 'stderr', 'stdin', '', 'STDOUT');
const tag = fc.constantFrom('F', 'P', 'X', '', 'F:extra');
const text = fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 100 }), fc.string({ unit: 'binary', maxLength: 100 }));
const criLike = fc.oneof(
  fc.tuple(time, stream, tag, text).map(([t, s, g, c]) => `${t} ${s} ${g} ${c}`),
  fc.tuple(time, stream, text).map(([t, s, c]) => `${t} ${s} ${c}`),
  text,
);
const dockerLike = fc.oneof(
  fc.record({ log: fc.oneof(text, fc.integer(), fc.constant(null)), stream, time }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  text,
  fc.tuple(text, fc.nat(20)).map(([t, n]) => `{"log":"${t}`.slice(0, n + 8)),
);

describe('issue 11 item 10: property-based tests of parsers and loaders', () => {
  it('CRI parser: any line gives a parsed line (content a part of the input) or a parse failure, never a throw', () => {
    check(3000, criLike, (line) => {
      const r = parseCriLine(line);
      if (isParseFailure(r)) expect(typeof r.error).toBe('string');
      else {
        expect(['stdout', 'stderr']).toContain(r.stream);
        expect(line.includes(r.content)).toBe(true);
      }
    });
  });

  it('docker json-file parser: any line gives a parsed line or a parse failure, never a throw', () => {
    check(3000, dockerLike, (line) => {
      const r = parseDockerJsonLine(line);
      if (isParseFailure(r)) expect(typeof r.error).toBe('string');
      else {
        expect(['stdout', 'stderr']).toContain(r.stream);
        expect(typeof r.content).toBe('string');
      }
    });
  });

  it('partial merger: any sequence of P/F chunks on two streams: never more than one pending join per stream, joins cut at max_bytes, every chunk accounted for', () => {
    const chunk = fc.record({ stream: fc.constantFrom('stdout' as const, 'stderr' as const), partial: fc.boolean(), content: fc.string({ maxLength: 60 }), time: fc.constant('2026-11-21T10:00:00.000000001Z') });
    check(1000, fc.tuple(fc.array(chunk, { maxLength: 200 }), fc.integer({ min: 1, max: 300 })), ([chunks, maxBytes]) => {
      const m = new PartialMerger({ maxBytes });
      let offset = 0;
      let finals = 0;
      let outs = 0;
      for (const c of chunks) {
        const joined = m.push(c, offset, offset);
        offset += c.content.length + 40;
        if (!c.partial) finals++;
        if (joined) {
          outs++;
          expect(Buffer.byteLength(joined.content)).toBeLessThanOrEqual(maxBytes);
        }
        expect(m.pendingCount()).toBeLessThanOrEqual(2);
      }
      const rest = m.flush();
      expect(outs).toBe(finals);
      for (const j of rest) expect(j.incomplete).toBe(true);
      expect(m.pendingCount()).toBe(0);
    });
  });

  it('multiline grouper: any lines in any mode: every line ends up in exactly one record, records within max_lines and max_bytes, nothing held after flushAll', () => {
    const line = fc.oneof(
      fc.constantFrom('Exception in thread "main" java.lang.IllegalStateException: boom', '\tat com.example.Foo.bar(Foo.java:12)', 'Traceback (most recent call last):', '  File "x.py", line 3, in <module>', 'ValueError: x', 'panic: oops', 'goroutine 1 [running]:', '    at Object.<anonymous> (/app/x.js:1:1)', ''),
      fc.string({ maxLength: 80 }),
    );
    const arb = fc.tuple(
      fc.array(fc.tuple(line, fc.constantFrom('stdout' as const, 'stderr' as const)), { maxLength: 150 }),
      fc.constantFrom('auto' as const, 'indented' as const, 'start_pattern' as const),
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 16, max: 2000 }),
    );
    check(600, arb, ([lines, mode, maxLines, maxBytes]) => {
      const g = new MultilineGrouper({ mode, startPattern: mode === 'start_pattern' ? /^\S/ : undefined, maxLines, maxBytes });
      const out: MultilineRecord[] = [];
      let offset = 0;
      for (const [content, s] of lines) {
        g.push({ stream: s, time: '2026-11-21T10:00:00.000000001Z', content, offset }, out, offset);
        offset += content.length + 1;
        expect(g.heldCount()).toBeLessThanOrEqual(2 * maxLines);
      }
      out.push(...g.flushAll('end_of_file'));
      expect(out.reduce((n, r) => n + r.lines, 0)).toBe(lines.length);
      for (const r of out) {
        expect(r.lines).toBeLessThanOrEqual(maxLines);
        if (r.lines > 1) expect(Buffer.byteLength(r.content)).toBeLessThanOrEqual(maxBytes + 4 * 80);
      }
      expect(g.heldCount()).toBe(0);
    });
  });

  it('JSON body parser: any text (deep nesting, huge numbers, lone surrogates) gives an object or undefined, never a throw', () => {
    const deep = fc.integer({ min: 1, max: 5000 }).map((n) => '['.repeat(n) + ']'.repeat(n));
    const deepObj = fc.integer({ min: 1, max: 3000 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n));
    check(2000, fc.oneof(text, fc.jsonValue().map((v) => JSON.stringify(v)), deep, deepObj, fc.constant('{"__proto__":{"x":1}}')), (t) => {
      const r = parseJsonBody(t);
      if (r !== undefined) expect(typeof r.body).toBe('object');
      expect(({} as Record<string, unknown>).x).toBeUndefined();
    });
  });

  it('logfmt parser: any text gives key/values or undefined, never a throw', () => {
    const kv = fc.array(fc.tuple(fc.string({ maxLength: 12 }), fc.oneof(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 }).map((s) => `"${s}`))), { maxLength: 20 });
    check(2000, fc.oneof(text, kv.map((pairs) => pairs.map(([k, v]) => `${k}=${v}`).join(' '))), (t) => {
      const r = parseLogfmt(t);
      if (r !== undefined) for (const v of Object.values(r)) expect(v === true || typeof v === 'string').toBe(true);
    });
  });

  it('journal export reader: any bytes, cut anywhere: never a throw, field values within max_field_bytes, nothing carried beyond one line', () => {
    const field = fc.oneof(
      fc.tuple(fc.stringMatching(/^[A-Z_]{1,12}$/), fc.string({ maxLength: 100 })).map(([k, v]) => Buffer.from(`${k}=${v.replaceAll('\n', ' ')}\n`)),
      fc.tuple(fc.stringMatching(/^[A-Z_]{1,12}$/), fc.uint8Array({ maxLength: 100 }), fc.integer({ min: -3, max: 3 })).map(([k, v, skew]) => {
        const len = Buffer.alloc(8);
        len.writeUInt32LE(Math.max(0, v.length + skew), 0);
        return Buffer.concat([Buffer.from(`${k}\n`), len, Buffer.from(v), Buffer.from('\n')]);
      }),
      fc.constant(Buffer.from('\n')),
      fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)),
    );
    const arb = fc.tuple(fc.array(field, { maxLength: 60 }), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 10 }), fc.integer({ min: 1, max: 64 }));
    check(1500, arb, ([parts, cuts, maxFieldBytes]) => {
      const stream = Buffer.concat(parts);
      const p = new ExportParser({ maxFieldBytes });
      const out: ExportEntry[] = [];
      let pos = 0;
      let i = 0;
      while (pos < stream.length) {
        const n = cuts[i++ % cuts.length]!;
        p.push(stream.subarray(pos, pos + n), out);
        pos += n;
        const carried = (p as unknown as { carryBytes: number }).carryBytes;
        expect(carried).toBeLessThanOrEqual(stream.length);
      }
      for (const e of out) {
        for (const v of Object.values(e.fields)) for (const s of [v].flat()) expect(Buffer.byteLength(s as string)).toBeLessThanOrEqual(maxFieldBytes);
      }
    });
  });

  it('journal export reader: a line without a newline (4 MiB of garbage) is not kept whole', () => {
    const p = new ExportParser({ maxFieldBytes: 1024 });
    const out: ExportEntry[] = [];
    const junk = Buffer.alloc(64 * 1024, 0x41);
    for (let i = 0; i < 64; i++) p.push(junk, out);
    expect((p as unknown as { carryBytes: number }).carryBytes).toBeLessThanOrEqual(1024 * 1024);
  });

  // ---- the agent's own state --------------------------------------------------------------------

  const anyFile = fc.oneof(
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.string({ maxLength: 300 }),
    fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u).toString('latin1')),
  );
  const entry = fc.record(
    {
      dev: fc.oneof(fc.nat(), fc.integer(), fc.double(), fc.constant(null), fc.string()),
      ino: fc.oneof(fc.nat(), fc.integer(), fc.constant(null)),
      fingerprint: fc.oneof(fc.record({ length: fc.integer({ min: -5, max: 400 }), crc: fc.integer() }), fc.constant(null), fc.jsonValue()),
      offset: fc.oneof(fc.nat(), fc.integer(), fc.double(), fc.string(), fc.constant(Number.MAX_SAFE_INTEGER + 10)),
      delivered: fc.oneof(fc.nat(), fc.integer()),
      pending: fc.oneof(fc.record({ stdout: fc.integer(), stderr: fc.integer() }, { requiredKeys: [] }), fc.jsonValue()),
      path: fc.oneof(fc.constant('/var/log/pods/a_b_c/d/0.log'), fc.string()),
      tail: fc.oneof(fc.record({ length: fc.integer({ min: -5, max: 400 }), crc: fc.integer() }), fc.jsonValue()),
    },
    { requiredKeys: [] },
  );
  const containerCheckpoint = fc.oneof(
    anyFile,
    fc.tuple(fc.array(fc.oneof(entry, fc.jsonValue()), { maxLength: 20 }), fc.oneof(fc.nat(), fc.jsonValue())).map(([files, writtenAt]) => JSON.stringify({ version: 1, writtenAt, files })),
  );

  it('container_logs checkpoint loader: any file: a state whose every entry is valid (non-negative integer offsets, fingerprints within 256 bytes), or "unreadable"; never a throw', () => {
    const dir = join(scratch, 'cl');
    const store = new CheckpointStore(dir, 'src');
    mkdirSync(join(dir, 'checkpoints'), { recursive: true });
    check(1500, containerCheckpoint, (content) => {
      writeFileSync(store.path, content);
      const r = store.load();
      expect(['ok', 'unreadable']).toContain(r.status);
      if (r.status !== 'ok') return;
      for (const f of r.state.files) {
        for (const n of [f.dev, f.ino, f.offset, f.fingerprint.length, f.fingerprint.crc]) expect(Number.isSafeInteger(n) && n >= 0).toBe(true);
        expect(f.fingerprint.length).toBeLessThanOrEqual(256);
        if (f.delivered !== undefined) expect(f.delivered).toBeGreaterThanOrEqual(f.offset);
        expect(typeof f.path).toBe('string');
      }
    });
  });

  it('journald cursor loader: any file: valid cursors and since values only, or "unreadable"; never a throw', () => {
    const dir = join(scratch, 'jd');
    const store = new CursorStore(dir, 'src');
    mkdirSync(join(dir, 'checkpoints'), { recursive: true });
    const dirs = fc.dictionary(fc.string({ maxLength: 20 }), fc.oneof(fc.record({ cursor: fc.oneof(fc.string(), fc.integer()), since: fc.oneof(fc.integer(), fc.double()), filter: fc.jsonValue() }, { requiredKeys: [] }), fc.jsonValue()));
    check(1500, fc.oneof(anyFile, dirs.map((d) => JSON.stringify({ version: 1, directories: d }))), (content) => {
      writeFileSync(store.path, content);
      const r = store.load();
      for (const cp of Object.values(r.state)) {
        expect(typeof cp.filter).toBe('string');
        if (cp.cursor !== undefined) expect(cp.cursor.length).toBeGreaterThan(0);
        else expect(Number.isSafeInteger(cp.since) && cp.since! >= 0).toBe(true);
      }
    });
  });

  it('kubernetes_events checkpoint loader: any file: valid counts, tombstones and records only, or "unreadable"; never a throw', () => {
    const path = join(scratch, 'events.json');
    const rec = fc.record({ timestamp: fc.oneof(fc.string(), fc.integer()), observedTimestamp: fc.string(), body: fc.jsonValue(), attributes: fc.jsonValue(), resource: fc.jsonValue() }, { requiredKeys: [] });
    const cp = fc.record({
      version: fc.constantFrom(1, 2, '1'),
      counter: fc.record({ highWaterMs: fc.oneof(fc.nat(), fc.integer(), fc.double()), seen: fc.array(fc.jsonValue(), { maxLength: 10 }), tombstones: fc.array(fc.jsonValue(), { maxLength: 10 }) }, { requiredKeys: [] }),
      records: fc.array(fc.oneof(rec, fc.jsonValue()), { maxLength: 10 }),
    }, { requiredKeys: [] });
    check(1500, fc.oneof(anyFile, cp.map((c) => JSON.stringify(c))), (content) => {
      writeFileSync(path, content);
      const r = loadCheckpoint(path);
      expect(['ok', 'unreadable', 'missing']).toContain(r.status);
      if (r.status !== 'ok') return;
      for (const [uid, key, n] of r.checkpoint.counter.seen) {
        expect(typeof uid === 'string' && typeof key === 'string' && Number.isSafeInteger(n) && n >= 0).toBe(true);
      }
      for (const record of r.checkpoint.records) {
        expect(typeof record.timestamp).toBe('string');
        for (const v of Object.values(record.attributes)) expect(['string', 'number', 'boolean'].includes(typeof v) || Array.isArray(v)).toBe(true);
      }
    });
  });

  it('disk buffer read position loader: any file gives a position of non-negative integers, "missing" or "corrupt"; never a throw', () => {
    const path = join(scratch, 'read_position.json');
    check(1500, fc.oneof(anyFile, fc.record({ version: fc.jsonValue(), segment: fc.jsonValue(), offset: fc.jsonValue() }).map((o) => JSON.stringify(o))), (content) => {
      writeFileSync(path, content);
      const r = loadReadPosition(path);
      if (r.status === 'ok') expect(Number.isSafeInteger(r.position.seq) && r.position.offset >= 0).toBe(true);
    });
  });

  it('disk buffer segments: any damage to a segment (flipped, inserted, deleted, zeroed bytes) loses only damaged records: the rest come back in order, never a throw', async () => {
    const payloads = Array.from({ length: 60 }, (_, i) => JSON.stringify({ timestamp: 't', observedTimestamp: '2026-11-21T10:00:00.000Z', body: `record-${i}`, attributes: {}, resource: {} }));
    const clean = encodeFrames(payloads);
    const damage = fc.array(
      fc.oneof(
        fc.record({ kind: fc.constant('flip' as const), at: fc.nat(clean.length - 1), xor: fc.integer({ min: 1, max: 255 }) }),
        fc.record({ kind: fc.constant('zero' as const), at: fc.nat(clean.length - 1), len: fc.integer({ min: 1, max: 200 }) }),
        fc.record({ kind: fc.constant('cut' as const), at: fc.nat(clean.length - 1), len: fc.integer({ min: 1, max: 50 }) }),
        fc.record({ kind: fc.constant('insert' as const), at: fc.nat(clean.length - 1), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
      ),
      { minLength: 1, maxLength: 4 },
    );
    let cases = 0;
    const params = fuzz.params(300);
    await fc.assert(
      fc.asyncProperty(damage, async (ops) => {
        let bytes = Buffer.from(clean);
        for (const op of ops) {
          if (op.kind === 'flip') bytes[op.at % bytes.length]! ^= op.xor;
          else if (op.kind === 'zero') bytes.fill(0, op.at % bytes.length, Math.min(bytes.length, (op.at % bytes.length) + op.len));
          else if (op.kind === 'cut') bytes = Buffer.concat([bytes.subarray(0, op.at % bytes.length), bytes.subarray((op.at % bytes.length) + op.len)]);
          else bytes = Buffer.concat([bytes.subarray(0, op.at % bytes.length), Buffer.from(op.bytes), bytes.subarray(op.at % bytes.length)]);
        }
        const dataDir = join(scratch, `seg-${files++}`);
        const dir = diskBufferDir(dataDir, 'out');
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, segmentName(1)), bytes);
        const scan = scanSegment(join(dir, segmentName(1)), 1, 0);
        expect(scan.goodEnd).toBeLessThanOrEqual(bytes.length);
        const { log } = memoryLog();
        const b = DiskBuffer.open({ output: 'out', dataDir, maxSize: 1 << 20, whenFull: 'block', fsync: 'never', log, metrics: new SelfMetrics('t') });
        const back: string[] = [];
        while (b.stats().records > 0) {
          const c = await b.read(25, 1 << 20);
          if (!c) break;
          for (const r of c.records) back.push(String(r.body));
          b.ack(c);
        }
        await b.close();
        // In order, each at most once, and a subset of what was written.
        const ids = back.map((s) => Number(s.slice('record-'.length)));
        for (let i = 1; i < ids.length; i++) expect(ids[i]!).toBeGreaterThan(ids[i - 1]!);
        expect(back.every((s) => /^record-\d+$/.test(s))).toBe(true);
        // Damage touching k frames loses at most those (plus a frame a cut merged away).
        const touched = ops.length * 6;
        expect(back.length).toBeGreaterThanOrEqual(Math.max(0, 60 - touched - 4 * ops.length));
        rmSync(dataDir, { recursive: true, force: true });
        cases++;
      }),
      params,
    );
    expect(cases).toBe(params.numRuns);
  }, 120_000);
});
