import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DiskBuffer, diskBufferDir } from '../../agent/buffers/disk_buffer.ts';
import { SelfMetrics } from '../../agent/metrics.ts';
import type { LogRecord } from '../../agent/record.ts';
import { CursorStore } from '../../agent/sources/journald/cursor_store.ts';
import { loadCheckpoint } from '../../agent/sources/kubernetes_events/checkpoint.ts';
import { NdjsonReceiver } from '../fakes/ndjson_receiver.ts';
import { AgentHarness, criLines, NodeTree, scrapeMetric, SOURCE, type ConfigValue } from '../helpers/agent_harness.ts';
import { id, memoryLog, metricValue, readFrames, recs, segmentFiles } from '../helpers/buffer_fixtures.ts';
import { ChildAgent, freePort, suiteScratch, waitFor } from '../helpers/child_agent.ts';

/**
 * Issue 11, the agent's own state as untrusted input (item 3) and a full disk (item 5): one test
 * per row of the table, titled after it, plus the tmpfs end to end.
 */
const checkpointPath = (tree: NodeTree) => join(tree.dataDir, 'checkpoints', `${SOURCE}.json`);
const bodies = (h: AgentHarness) => h.records().map((r) => r.body);

describe('issue 11: untrusted checkpoints', () => {
  const harnesses: AgentHarness[] = [];
  afterEach(async () => {
    for (const h of harnesses.splice(0)) await h.stop();
  });
  const harness = (source: Record<string, ConfigValue> = {}) => {
    const h = new AgentHarness({ source });
    harnesses.push(h);
    return h;
  };

  it('a checkpoint of the wrong shape ({"files":[null]}, fingerprint: null): no crash loop; the bad entries are dropped, logged and counted, their files read whole', async () => {
    for (const files of [[null], [{ dev: 1, ino: 2, fingerprint: null, offset: 10, path: '/x' }], [7, 'x', [], { offset: 1 }]]) {
      const h = harness();
      const c = h.tree.container({ content: criLines(['a-1', 'a-2']) });
      mkdirSync(join(h.tree.dataDir, 'checkpoints'), { recursive: true });
      writeFileSync(checkpointPath(h.tree), JSON.stringify({ version: 1, writtenAt: Date.now(), files }));
      await h.start();
      await h.waitForBody('a-2');
      appendFileSync(c.logPath, criLines(['a-3']));
      await h.waitForBody('a-3');
      expect(bodies(h)).toEqual(['a-1', 'a-2', 'a-3']);
      expect(await h.metric('telemetry_agent_checkpoint_invalid_total', { source: SOURCE, reason: 'bad_entry' })).toBe(files.length);
      expect(h.logs.join('')).toMatch(new RegExp(`dropped ${files.length} invalid entries \\(entry 0: `));
      await h.stop();
    }
    // And the layout itself: not an object, no files array.
    for (const text of ['{"files":[null]}', 'null', '[]', '{"version":1,"writtenAt":"x","files":{}}']) {
      const h = harness();
      h.tree.container({ content: criLines(['b-1']) });
      mkdirSync(join(h.tree.dataDir, 'checkpoints'), { recursive: true });
      writeFileSync(checkpointPath(h.tree), text);
      await h.start();
      await h.waitForBody('b-1');
      expect(await h.metric('telemetry_agent_checkpoint_invalid_total', { source: SOURCE, reason: 'unreadable' })).toBe(1);
      await h.stop();
    }
  });

  it('a negative offset in a checkpoint: the entry is dropped and the file is read (whole, then as it grows), not ignored forever', async () => {
    const h = harness();
    const c = h.tree.container({ content: criLines(['n-1', 'n-2']) });
    mkdirSync(join(h.tree.dataDir, 'checkpoints'), { recursive: true });
    const { statSync } = await import('node:fs');
    const st = statSync(c.logPath);
    for (const offset of [-5, 1.5, Number.MAX_SAFE_INTEGER + 2, '10']) {
      writeFileSync(
        checkpointPath(h.tree),
        JSON.stringify({ version: 1, writtenAt: Date.now(), files: [{ dev: st.dev, ino: st.ino, fingerprint: { length: 0, crc: 0 }, offset, path: c.logPath }] }),
      );
      const { CheckpointStore } = await import('../../agent/sources/container_logs/checkpoint_store.ts');
      const loaded = new CheckpointStore(h.tree.dataDir, SOURCE).load();
      expect(loaded.status === 'ok' && loaded.dropped.length).toBe(1);
    }
    writeFileSync(
      checkpointPath(h.tree),
      JSON.stringify({ version: 1, writtenAt: Date.now(), files: [{ dev: st.dev, ino: st.ino, fingerprint: { length: 0, crc: 0 }, offset: -5, path: c.logPath }] }),
    );
    await h.start();
    await h.waitForBody('n-2');
    appendFileSync(c.logPath, criLines(['n-3']));
    await h.waitForBody('n-3');
    expect(bodies(h)).toEqual(['n-1', 'n-2', 'n-3']);
    expect(h.logs.join('')).toMatch(/entry 0: offset: /);
  });

  it('a corrupt checkpoint with read_from: end: not a first start; the lines written while the agent was down are read, what may repeat is counted', async () => {
    const h = harness({ read_from: 'end' });
    const c = h.tree.container({ content: criLines(['down-1', 'down-2']) });
    mkdirSync(join(h.tree.dataDir, 'checkpoints'), { recursive: true });
    writeFileSync(checkpointPath(h.tree), '{"version":1,"writtenAt":17000'); // torn
    await h.start();
    await h.waitForBody('down-2');
    appendFileSync(c.logPath, criLines(['up-1']));
    await h.waitForBody('up-1');
    expect(bodies(h)).toEqual(['down-1', 'down-2', 'up-1']);
    expect(await h.metric('telemetry_agent_checkpoint_invalid_total', { source: SOURCE, reason: 'unreadable' })).toBe(1);
    expect(await h.metric('telemetry_agent_source_reread_bytes_total', { source: SOURCE, reason: 'checkpoint_unreadable' })).toBe(criLines(['down-1', 'down-2']).length);
    expect(h.logs.join('')).toMatch(/not a first start: every file is read from its start \(records may repeat\)/);
  });

  it('journald and kubernetes_events checkpoints: bad entries dropped and named, the rest kept, never a throw', () => {
    const { root } = scratch;
    const dataDir = join(root, 'journal-cp');
    const store = new CursorStore(dataDir, 'journal');
    mkdirSync(join(dataDir, 'checkpoints'), { recursive: true });
    const write = (v: unknown) => writeFileSync(store.path, typeof v === 'string' ? v : JSON.stringify(v));
    write({ version: 1, directories: { '/var/log/journal': { cursor: 's=1;i=2', filter: 'f' }, '/run/log/journal': { since: -1 }, '/x': null, '/y': { cursor: 7 } } });
    const loaded = store.load();
    expect(loaded.state).toEqual({ '/var/log/journal': { cursor: 's=1;i=2', filter: 'f' } });
    expect(loaded.dropped.map((d) => d.split(':')[0])).toEqual(['/run/log/journal', '/x', '/y']);
    for (const bad of ['', '{', 'null', '{"version":1,"directories":[]}', '{"version":2,"directories":{}}']) {
      write(bad);
      expect(store.load()).toMatchObject({ state: {}, unreadable: true });
    }

    const events = join(root, 'events.json');
    const record: LogRecord = { timestamp: 't', observedTimestamp: 'o', body: 'b', attributes: { a: 1 }, resource: {} };
    writeFileSync(
      events,
      JSON.stringify({
        version: 1,
        counter: { highWaterMs: 5, seen: [['uid', 'ns/n', 3], null, ['uid2', 'ns/m', -1]], tombstones: [['ns/n', 1, 2], 'x'] },
        records: [record, { ...record, attributes: { nested: { deep: 1 } } }, null],
      }),
    );
    const ev = loadCheckpoint(events);
    expect(ev.status).toBe('ok');
    if (ev.status !== 'ok') return;
    expect(ev.checkpoint.counter.seen).toEqual([['uid', 'ns/n', 3]]);
    expect(ev.checkpoint.counter.tombstones).toEqual([['ns/n', 1, 2]]);
    expect(ev.checkpoint.records).toEqual([record]);
    expect(ev.dropped).toHaveLength(5);
    for (const bad of ['', '{"version":1}', '{"version":1,"counter":{"highWaterMs":-1,"seen":[],"tombstones":[]}}', '[1]']) {
      writeFileSync(events, bad);
      expect(loadCheckpoint(events).status).toBe('unreadable');
    }
  });

  const scratch = suiteScratch('kta-state-', 'KTA_KEEP_STATE_TESTS');
});

describe('issue 11: disk-buffer segments', () => {
  const { root } = suiteScratch('kta-seg-', 'KTA_KEEP_STATE_TESTS');

  it('a disk-buffer segment with 3 flipped bytes in the middle: only the damaged record is lost (1,999 of 2,000 come back), skipped to the next good frame by length and CRC, counted', async () => {
    const dataDir = join(root, 'flip');
    const metrics = new SelfMetrics('test');
    const { log, lines } = memoryLog();
    const opts = { output: 'out', dataDir, maxSize: 64 << 20, segmentBytes: 16 << 20, whenFull: 'block' as const, fsync: 'never' as const, log, metrics };
    let b = DiskBuffer.open(opts);
    const records = recs(0, 2000, 40);
    for (let i = 0; i < records.length; i += 100) await b.push(records.slice(i, i + 100), 0, () => {});
    await b.close();
    const [segment] = segmentFiles(diskBufferDir(dataDir, 'out'));
    const { frames } = readFrames(segment!);
    expect(frames).toHaveLength(2000);
    const victim = frames[1000]!;
    const bytes = readFileSync(segment!);
    for (const k of [9, 20, 31]) bytes[victim.offset + k]! ^= 0x24;
    writeFileSync(segment!, bytes);

    b = DiskBuffer.open(opts);
    const back: LogRecord[] = [];
    while (b.stats().records > 0) {
      const c = (await b.read(300, 1 << 20))!;
      back.push(...c.records);
      b.ack(c);
    }
    expect(back.map(id)).toEqual(records.map(id).filter((i) => i !== 1000));
    expect(await metricValue(metrics, 'telemetry_agent_buffer_corrupt_bytes_total', { output: 'out' })).toBe(frames[1001]!.offset - victim.offset);
    expect(lines.join('')).toMatch(/damaged from byte \d+ \(CRC mismatch\); skipped \d+ bytes to the next good frames/);
    await b.close();
  });

  it('a fully acknowledged segment is deleted at once and at start: an idle buffer takes no space', async () => {
    const dataDir = join(root, 'acked');
    const metrics = new SelfMetrics('test');
    const { log } = memoryLog();
    const opts = { output: 'out', dataDir, maxSize: 64 << 20, whenFull: 'block' as const, fsync: 'never' as const, log, metrics };
    let b = DiskBuffer.open(opts);
    await b.push(recs(0, 50), 0, () => {});
    const c = (await b.read(1000, 1 << 20))!;
    b.ack(c);
    await b.close(); // before the idle delay: the segment is still there
    const dir = diskBufferDir(dataDir, 'out');
    expect(segmentFiles(dir)).toHaveLength(1);
    b = DiskBuffer.open(opts); // at start: nothing in it is unread
    expect(segmentFiles(dir)).toHaveLength(0);
    await b.push(recs(50, 10), 0, () => {});
    b.ack((await b.read(1000, 1 << 20))!);
    await waitFor('the acknowledged segment deleted', () => segmentFiles(dir).length === 0, 5000, 20);
    await b.close();
  });
});

/** Mounts a tmpfs of `size` at `dir`; a reason when it cannot. */
function mountTmpfs(dir: string, size: string): string | undefined {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'kta-test-tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs here (${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}): needs root or CAP_SYS_ADMIN`;
  }
}

const usedBytes = (dir: string) => {
  const s = statfsSync(dir);
  return (s.blocks - s.bfree) * s.bsize;
};

describe('issue 11: a full disk is survivable (a real small tmpfs as data_dir)', () => {
  const { root, onCleanup } = suiteScratch('kta-tmpfs-', 'KTA_KEEP_STATE_TESTS');

  for (const whenFull of ['block', 'drop_newest'] as const) {
    it(`data_dir on a small volume, disk buffer (when_full: ${whenFull}), output down until the volume is full, then back: ${whenFull === 'block' ? 'every line delivered' : 'new lines delivered again'}, the volume back to its idle usage, no restart`, async (ctx) => {
      const dataDir = join(root, `data-${whenFull}`);
      const why = mountTmpfs(dataDir, '2m');
      if (why) {
        console.log(`skipped: ${why}`);
        ctx.skip();
        return;
      }
      onCleanup(() => {
        try {
          execFileSync('umount', ['-l', dataDir], { stdio: 'ignore' });
        } catch {
          // not mounted
        }
      });
      const tree = new NodeTree();
      onCleanup(() => tree.remove());
      const receiver = await NdjsonReceiver.start();
      onCleanup(() => void receiver.close());
      await receiver.server.down();
      const port = await freePort();
      const base = `http://127.0.0.1:${port}`;
      const configPath = join(tree.root, 'agent.yaml');
      writeFileSync(
        configPath,
        `node_name: tmpfs-node
data_dir: ${dataDir}
shutdown_timeout: 5s
server: { listen: "127.0.0.1:${port}" }
kubernetes: { mode: disabled }
sources:
  containers:
    type: container_logs
    include: [${tree.containersDir}/*.log]
    glob_interval: 200ms
    poll_interval: 200ms
    checkpoint_interval: 500ms
outputs:
  receiver:
    type: http
    inputs: [containers]
    endpoint: ${receiver.url}/ingest
    buffer: { type: disk, max_size: 64MiB, when_full: ${whenFull} }
    batch: { max_events: 500, timeout: 100ms }
    retry: { initial: 100ms, max: 500ms }
`,
      );
      const agent = new ChildAgent(configPath);
      agent.start();
      onCleanup(() => void agent.kill('SIGKILL'));
      await agent.ready(port);
      const idle = usedBytes(dataDir);
      const pid = agent.proc!.pid;

      // About 3x the volume in log lines, while the output is down.
      const containers = [0, 1, 2].map((p) => tree.container({ pod: `fill-${p}` }));
      const written: string[] = [];
      const line = (p: number, i: number) => `pod=${p} seq=${i} `.padEnd(200, 'x');
      for (let i = 0; i < 10_000; i++) {
        for (let p = 0; p < containers.length; p++) written.push(line(p, i));
      }
      for (let p = 0; p < containers.length; p++) {
        appendFileSync(containers[p]!.logPath, criLines(Array.from({ length: 10_000 }, (_, i) => line(p, i))));
      }
      await waitFor('the volume full (ENOSPC counted)', async () => ((await scrapeMetric(base, 'telemetry_agent_buffer_write_errors_total', { code: 'ENOSPC' })) ?? 0) >= 1, 60_000);
      const full = usedBytes(dataDir);
      expect(full).toBeGreaterThan(1.5 * 1024 * 1024);
      expect(await scrapeMetric(base, 'telemetry_agent_data_dir_bytes', { kind: 'buffers' })).toBeGreaterThan(1024 * 1024);

      await receiver.server.up();
      const wanted = new Set(written);
      const delivered = () => new Set(receiver.records.map((r) => String(r.body)));
      if (whenFull === 'block') {
        await waitFor('every line delivered', () => {
          const got = delivered();
          return [...wanted].every((w) => got.has(w));
        }, 120_000, 250);
      } else {
        // drop_newest dropped what did not fit (counted); what comes after the volume frees is delivered.
        await waitFor('the buffer drained', async () => (await scrapeMetric(base, 'telemetry_agent_buffer_records', { output: 'receiver' })) === 0, 60_000);
        const after = Array.from({ length: 200 }, (_, i) => `after-full seq=${i}`);
        appendFileSync(containers[0]!.logPath, criLines(after));
        await waitFor('the lines written after the volume freed up', () => {
          const got = delivered();
          return after.every((a) => got.has(a));
        }, 60_000, 100).catch(async (err: Error) => {
          const text = await (await fetch(`${base}/metrics`)).text();
          throw new Error(`${err.message}\n${text.split('\n').filter((l) => /telemetry_agent_(buffer|output|source|tail|dropped|data_dir)/.test(l) && !l.startsWith('#')).join('\n')}\n${agent.stderr.slice(-3000)}`);
        });
        expect(await scrapeMetric(base, 'telemetry_agent_dropped_records_total', { component: 'receiver', reason: 'volume_full' })).toBeGreaterThan(0);
      }
      await waitFor('the volume back to its idle usage', () => usedBytes(dataDir) <= idle + 64 * 1024 || undefined, 30_000, 100);
      // Only the read position file is left of the buffer.
      expect(await scrapeMetric(base, 'telemetry_agent_data_dir_bytes', { kind: 'buffers' })).toBeLessThan(100);
      expect(agent.proc!.pid).toBe(pid);
      expect(agent.proc!.exitCode).toBeNull();
      console.log(
        `tmpfs 2 MiB, when_full ${whenFull}: idle ${idle} B, full ${full} B, after ${usedBytes(dataDir)} B; ` +
          `${receiver.records.length} records received for ${written.length} written`,
      );
      expect(await agent.kill('SIGTERM')).toBe(0);
      execFileSync('umount', [dataDir]);
      rmSync(dataDir, { recursive: true, force: true });
    }, 240_000);
  }
});
