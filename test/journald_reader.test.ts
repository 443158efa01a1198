import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../agent/log.ts';
import type { Emitter } from '../agent/pipeline.ts';
import type { LogRecord } from '../agent/record.ts';
import { DirectoryReader, type RestartReason } from '../agent/sources/journald/directory_reader.ts';
import { ExportParser, type ExportEntry } from '../agent/sources/journald/export_reader.ts';
import { JournalRecordMapper } from '../agent/sources/journald/record.ts';
import { waitFor } from './helpers/child_agent.ts';
import { JournalFixture, journalToolsAvailable } from './helpers/journal_fixture.ts';

const tools = journalToolsAvailable();
const root = mkdtempSync(join(tmpdir(), 'kta-journal-reader-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** An emitter that keeps every batch and acknowledges them when told to (or at once with `autoAck`). */
class FakePipeline implements Emitter {
  readonly batches: { records: LogRecord[]; bytes: number; ack: () => void; acked: boolean }[] = [];
  autoAck = true;

  emit(records: LogRecord[], bytes: number, onAccepted: () => void): Promise<void> {
    const batch = { records, bytes, acked: false, ack: () => {} };
    batch.ack = () => {
      batch.acked = true;
      onAccepted();
    };
    this.batches.push(batch);
    if (this.autoAck) batch.ack();
    return Promise.resolve();
  }

  ackAll(): void {
    for (const b of this.batches) if (!b.acked) b.ack();
  }

  ids(): string[] {
    return this.batches.flatMap((b) => b.records.map((r) => String(r.attributes['journald.TEST_ID'])));
  }
}

interface Harness {
  reader: DirectoryReader;
  pipeline: FakePipeline;
  commits: (string | undefined)[];
  restarts: RestartReason[];
  logs: string[];
}

const readers: DirectoryReader[] = [];
afterEach(async () => {
  await Promise.all(readers.splice(0).map((r) => r.stop()));
});

function reader(dir: string, opts: { cursor?: string; maxUnackedBytes?: number } = {}): Harness {
  const pipeline = new FakePipeline();
  const commits: (string | undefined)[] = [];
  const restarts: RestartReason[] = [];
  const logs: string[] = [];
  const log = createLogger('debug', (l) => logs.push(l));
  const r = new DirectoryReader({
    source: 'journal',
    directory: dir,
    cursor: opts.cursor,
    cursorFilterMatches: true,
    sinceMicros: undefined,
    units: [],
    priority: 7,
    journalctl: 'journalctl',
    maxFieldBytes: 1024 * 1024,
    maxUnackedBytes: () => opts.maxUnackedBytes ?? 1024 * 1024,
    mapper: new JournalRecordMapper({ nodeName: 'node-1', excludeFields: [] }),
    emitter: pipeline,
    log,
    problem: (_key, m) => log.error(m),
    events: {
      committed: (c) => commits.push(c),
      restarted: (reason) => restarts.push(reason),
      bytesRead: () => {},
      parseError: (m) => log.error(`parse error: ${m}`),
      truncated: () => {},
    },
  });
  readers.push(r);
  return { reader: r, pipeline, commits, restarts, logs };
}

const entries = (from: number, to: number, extra = '') =>
  Array.from({ length: to - from }, (_, i) => ({ message: `entry ${from + i}${extra}`, fields: { TEST_ID: String(from + i) } }));
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => String(from + i));

describe.skipIf(!tools)('journald: the export parser on real journalctl output', () => {
  it('parses what journalctl -o export writes, in any chunking, as journalctl -o json reads it', () => {
    const fx = new JournalFixture(join(root, 'parse'));
    fx.write([
      { message: 'plain', priority: 6, identifier: 'kubelet', fields: { TEST_ID: '0' } },
      { message: 'two\nlines', fields: { TEST_ID: '1', TAG: ['a', 'b'] } },
      { message: Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x1b, 0x5b, 0x6d]), fields: { TEST_ID: '2' } },
      { message: 'z'.repeat(10_000), fields: { TEST_ID: '3' } },
    ]);
    const out = spawnSync('journalctl', [`--directory=${fx.dir}`, '--merge', '--all', '-o', 'export', '--no-pager']).stdout;
    const json = fx.readBack();
    for (const size of [1, 7, 64, 4096, out.length]) {
      const parser = new ExportParser({ maxFieldBytes: 1 << 20 });
      const got: ExportEntry[] = [];
      for (let i = 0; i < out.length; i += size) parser.push(out.subarray(i, i + size), got);
      expect(got).toHaveLength(4);
      got.forEach((e, i) => {
        expect(e.fields.get('__CURSOR')).toBe(json[i]!.__CURSOR);
        const m = json[i]!.MESSAGE;
        expect(e.fields.get('MESSAGE')).toBe(typeof m === 'string' ? m : Buffer.from(m as number[]).toString('utf8'));
      });
      expect(got[1]!.fields.get('TAG')).toEqual(['a', 'b']);
      expect(got[2]!.fields.get('MESSAGE')).toBe('caf\ufffd\x1b[m');
    }
  });
});

describe.skipIf(!tools)('journald: DirectoryReader with the real journalctl', () => {
  it('pauses journalctl while too much is unacknowledged, and reads on once acknowledged', async () => {
    const fx = new JournalFixture(join(root, 'backpressure'));
    // ~20k entries of ~600 export bytes: about 12 MiB, far above the 256 KiB bound.
    for (let f = 0; f < 4; f++) fx.write(entries(f * 5000, (f + 1) * 5000, ' ' + 'p'.repeat(300)), 'system.journal');
    const h = reader(fx.dir, { maxUnackedBytes: 256 * 1024 });
    h.pipeline.autoAck = false;
    await h.reader.start();
    await waitFor('a first batch', () => h.pipeline.batches.length > 0, 10_000);
    await new Promise((r) => setTimeout(r, 500));
    const held = h.pipeline.batches.reduce((n, b) => n + b.bytes, 0);
    // The bound plus at most one batch and one pipe read beyond it.
    expect(held).toBeLessThanOrEqual(256 * 1024 + 256 * 1024 + 64 * 1024);
    expect(h.reader.unackedBytes).toBe(held);
    expect(h.pipeline.ids().length).toBeLessThan(20_000);
    h.pipeline.autoAck = true;
    h.pipeline.ackAll();
    await waitFor('every entry', () => h.pipeline.ids().length >= 20_000, 30_000);
    expect(h.pipeline.ids()).toEqual(range(0, 20_000));
    expect(h.commits.at(-1)).toBe(fx.cursors().at(-1));
  });

  it('restarts a killed journalctl after the last entry handed over: nothing lost, nothing doubled', async () => {
    const fx = new JournalFixture(join(root, 'killed'));
    fx.write(entries(0, 3000), 'system.journal');
    const h = reader(fx.dir);
    await h.reader.start();
    await waitFor('the first entries', () => h.pipeline.ids().length >= 3000, 10_000);
    const first = h.reader.pid!;
    process.kill(first, 'SIGKILL');
    await waitFor('a restart', () => h.reader.running && h.reader.pid !== first, 10_000);
    fx.write(entries(3000, 6000));
    await waitFor('the entries written after the restart', () => h.pipeline.ids().length >= 6000, 10_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(h.pipeline.ids()).toEqual(range(0, 6000));
    expect(h.restarts).toEqual(['exited']);
    expect(h.logs.join('')).toMatch(/journalctl for .* was killed by SIGKILL .* restarting in 1 s after the last entry read/);
  });

  it('kills journalctl mid-stream many times without losing or doubling an entry', async () => {
    const fx = new JournalFixture(join(root, 'kill-loop'));
    for (let f = 0; f < 5; f++) fx.write(entries(f * 4000, (f + 1) * 4000, ' ' + 'k'.repeat(200)), 'system.journal');
    const h = reader(fx.dir);
    await h.reader.start();
    let killed: number | undefined;
    for (let kills = 0; kills < 3; kills++) {
      await waitFor('journalctl (re)started', () => h.reader.running && h.reader.pid !== killed, 10_000);
      await new Promise((r) => setTimeout(r, 30));
      if (h.pipeline.ids().length >= 20_000) break;
      killed = h.reader.pid!;
      process.kill(killed, 'SIGKILL');
    }
    await waitFor('every entry', () => h.pipeline.ids().length >= 20_000, 30_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(h.pipeline.ids()).toEqual(range(0, 20_000));
    expect(h.restarts.length).toBeGreaterThanOrEqual(2);
    expect(h.restarts.every((r) => r === 'exited')).toBe(true);
  });

  it('resumes at a cursor whose entry was vacuumed with the nearest later entry, and says so', async () => {
    const fx = new JournalFixture(join(root, 'vacuumed'));
    fx.write(entries(0, 5), 'a.journal');
    fx.write(entries(5, 10), 'b.journal');
    const cursor = fx.cursors()[9]!; // entry 9, in b.journal
    fx.vacuum([join(fx.dir, 'b.journal')]);
    fx.write(entries(10, 15), 'c.journal');
    const h = reader(fx.dir, { cursor });
    await h.reader.start();
    await waitFor('the entries after the cursor', () => h.pipeline.ids().length >= 5, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    // journalctl --after-cursor would skip entry 10 here (systemd 252); --cursor does not.
    expect(h.pipeline.ids()).toEqual(range(10, 15));
    expect(h.restarts).toEqual(['cursor_gone']);
    expect(h.logs.join('')).toMatch(/no longer in the journal/);
  });

  it('does not re-send the checkpointed entry when it still exists', async () => {
    const fx = new JournalFixture(join(root, 'present'));
    fx.write(entries(0, 10));
    const h = reader(fx.dir, { cursor: fx.cursors()[4] });
    await h.reader.start();
    await waitFor('the entries after the cursor', () => h.pipeline.ids().length >= 5, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(h.pipeline.ids()).toEqual(range(5, 10));
    expect(h.restarts).toEqual([]);
  });

  it('drops a malformed cursor and reads from the oldest entry', async () => {
    const fx = new JournalFixture(join(root, 'malformed'));
    fx.write(entries(0, 10));
    const h = reader(fx.dir, { cursor: 'not-a-cursor' });
    await h.reader.start();
    await waitFor('every entry', () => h.pipeline.ids().length >= 10, 10_000);
    expect(h.pipeline.ids()).toEqual(range(0, 10));
    expect(h.restarts).toEqual(['cursor_invalid']);
    expect(h.commits[0]).toBeUndefined();
    expect(h.logs.join('')).toMatch(/rejected the checkpoint cursor .*Failed to seek to cursor/);
  });

  it('restarts journalctl for a subfolder made after it started (journald persistence switched on)', async () => {
    const dir = join(root, 'subfolder');
    mkdirSync(dir);
    const h = reader(dir);
    await h.reader.start();
    expect(h.reader.running).toBe(true);
    const fx = new JournalFixture(join(dir, '0123456789abcdef0123456789abcdef'));
    fx.write(entries(0, 3));
    h.reader.check();
    await waitFor('the entries in the subfolder', () => h.pipeline.ids().length >= 3, 10_000);
    expect(h.pipeline.ids()).toEqual(range(0, 3));
    expect(h.restarts).toEqual(['new_subdirectory']);
  });
});
