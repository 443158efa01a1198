import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AgentHarness,
  NodeTree,
  SOURCE,
  agentConfigYaml,
  criHeader,
  criLine,
  criLines,
  criTime,
  readRecords,
  requireNode24,
  scrapeMetric,
} from './helpers/agent_harness.ts';
import { ChildAgent, freePort, waitFor } from './helpers/child_agent.ts';

/**
 * Bad input on the node: the agent keeps running, counts what it could not take as it came, and
 * loses nothing else.
 */
const harnesses: AgentHarness[] = [];
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.stop()));
});
function harness(source: Record<string, string | number | boolean> = {}): AgentHarness {
  const h = new AgentHarness({ source });
  harnesses.push(h);
  return h;
}

const bodies = (records: { body: unknown }[]) => records.map((r) => r.body);
const ofFile = (path: string) => (r: { attributes: Record<string, unknown> }) => r.attributes['log.file.path'] === path;

describe('bad input', () => {
  it('malformed CRI lines become raw records marked kta.parse.error, counted; good lines around them arrive in order', async () => {
    const h = harness();
    const malformed = [
      `${criTime(3)} stdout F`, // no space after the tag
      'not-a-timestamp stdout F x',
      `${criTime(4)} stdlog F x`, // bad stream
      `${criTime(5)} stdout X x`, // bad tag
      'a stray line a tool wrote into the file',
    ];
    const c = h.tree.container({
      content:
        criLine('good-1', { time: criTime(1) }) +
        criLine('good-2', { time: criTime(2) }) +
        `${malformed[0]}\n${malformed[1]}\n` +
        criLine('good-3', { time: criTime(6) }) +
        `${malformed[2]}\n${malformed[3]}\n${malformed[4]}\n` +
        criLine('good-4', { time: criTime(7), stream: 'stderr' }),
    });
    await h.start();
    const records = await h.waitForLines(9);
    expect(records).toHaveLength(9);
    expect(bodies(records)).toEqual(['good-1', 'good-2', malformed[0], malformed[1], 'good-3', malformed[2], malformed[3], malformed[4], 'good-4']);

    const bad = records.filter((r) => r.attributes['kta.parse.error'] !== undefined);
    expect(bodies(bad)).toEqual(malformed);
    for (const r of bad) {
      expect(r.attributes['kta.parse.error']).toMatch(/^cri: /);
      expect(r.attributes['log.file.path']).toBe(c.logPath);
      expect(r.resource['k8s.pod.name']).toBe(c.pod);
    }
    const good = records.filter((r) => r.attributes['kta.parse.error'] === undefined);
    expect(good.map((r) => r.timestamp)).toEqual([criTime(1), criTime(2), criTime(6), criTime(7)]);
    expect(good.map((r) => r.attributes['log.iostream'])).toEqual(['stdout', 'stdout', 'stdout', 'stderr']);

    expect(await h.metric('telemetry_agent_parse_errors_total', { source: SOURCE, parser: 'cri' })).toBe(malformed.length);
    expect(await h.metric('telemetry_agent_source_records_total', { source: SOURCE })).toBe(9);

    // Still running: a line written now arrives too.
    appendFileSync(c.logPath, criLine('good-5'));
    await h.waitForBody('good-5');
    expect((await fetch(`${h.baseUrl}/healthz`)).status).toBe(200);
  });

  it('a malformed line before the format is known (format: auto) is counted as a parse error too', async () => {
    const h = harness();
    const c = h.tree.container({ content: 'garbage before any CRI line\n' + criLines(['good-1', 'good-2']) });
    await h.start();
    const records = await h.waitForLines(3);
    expect(bodies(records)).toEqual(['garbage before any CRI line', 'good-1', 'good-2']);
    expect(records[0]!.attributes).toMatchObject({ 'log.file.path': c.logPath, 'kta.parse.error': expect.any(String) });
    // Every raw record marked kta.parse.error is one parse error, whichever parser label it gets.
    expect(await h.metric('telemetry_agent_parse_errors_total', { source: SOURCE })).toBe(1);
  });

  // `auto` is the default: the format is learnt from the first line, inside the first read chunk.
  it.each(['auto', 'cri'])('invalid UTF-8 in content becomes U+FFFD; neighbouring lines are intact (format: %s)', async (format) => {
    const h = harness({ format });
    const c = h.tree.container({
      content: Buffer.concat([
        Buffer.from(criLine('before ünïcødé ✓', { time: criTime(1) })),
        Buffer.from(criHeader({ time: criTime(2) }) + 'bad '),
        Buffer.from([0xff, 0xfe]),
        Buffer.from(' end\n'),
        Buffer.from(criHeader({ time: criTime(3) }) + 'cut '),
        Buffer.from([0xe2, 0x82]), // the first two of the three bytes of €
        Buffer.from('x\n'),
        Buffer.from(criLine('after 😀', { time: criTime(4) })),
      ]),
    });
    await h.start();
    const records = await h.waitForLines(4);
    expect(bodies(records)).toEqual(['before ünïcødé ✓', 'bad \uFFFD\uFFFD end', 'cut \uFFFDx', 'after 😀']);
    expect(records.map((r) => r.timestamp)).toEqual([criTime(1), criTime(2), criTime(3), criTime(4)]);
    for (const r of records) expect(r.attributes['kta.parse.error']).toBeUndefined();
    expect(records.every(ofFile(c.logPath))).toBe(true);
    // Later chunks too.
    appendFileSync(c.logPath, Buffer.concat([Buffer.from(criHeader({ time: criTime(5) }) + 'later ✓ '), Buffer.from([0xc0]), Buffer.from('\n')]));
    expect((await h.waitForLines(5))[4]!.body).toBe('later ✓ \uFFFD');
  });

  it.each(['auto', 'cri'])('a character split between a P chunk and its F is joined whole (format: %s)', async (format) => {
    const h = harness({ format });
    const euro = Buffer.from('€'); // e2 82 ac
    h.tree.container({
      content: Buffer.concat([
        Buffer.from(criLine('first ✓', { time: criTime(1) })),
        Buffer.from(criHeader({ time: criTime(2), tag: 'P' }) + 'price: '),
        euro.subarray(0, 2),
        Buffer.from('\n' + criHeader({ time: criTime(3) })),
        euro.subarray(2),
        Buffer.from(' 5\n'),
      ]),
    });
    await h.start();
    const records = await h.waitForLines(2);
    expect(bodies(records)).toEqual(['first ✓', 'price: € 5']);
    expect(records[1]!.timestamp).toBe(criTime(2));
  });

  it('CRLF: a full line loses its CR, a partial chunk keeps it, a CR inside stays', async () => {
    const h = harness();
    h.tree.container({
      content:
        criLine('crlf-1\r', { time: criTime(1) }) +
        criLine('mid\rdle\r', { time: criTime(2) }) +
        criLine('part\r', { time: criTime(3), tag: 'P' }) +
        criLine('-end\r', { time: criTime(4) }) +
        criLine('plain', { time: criTime(5) }),
    });
    const docker = h.tree.container({
      content:
        JSON.stringify({ log: 'dock-crlf\r\n', stream: 'stdout', time: '2026-11-21T10:00:01.000000001Z' }) +
        '\n' +
        JSON.stringify({ log: 'dock-lf\n', stream: 'stderr', time: '2026-11-21T10:00:01.000000002Z' }) +
        '\n',
    });
    await h.start();
    const records = await h.waitForLines(6);
    const cri = records.filter((r) => !ofFile(docker.logPath)(r));
    expect(bodies(cri)).toEqual(['crlf-1', 'mid\rdle', 'part\r-end', 'plain']);
    expect(cri[2]!.timestamp).toBe(criTime(3)); // a join keeps its first chunk's time
    expect(bodies(records.filter(ofFile(docker.logPath)))).toEqual(['dock-crlf', 'dock-lf']);
  });

  it('empty physical lines are skipped and counted; an empty CRI record is kept', async () => {
    const h = harness();
    h.tree.container({
      content: criLine('good-1', { time: criTime(1) }) + '\n\n' + criLine('good-2', { time: criTime(2) }) + '\n' + criLine('', { time: criTime(3) }) + criLine('good-3', { time: criTime(4) }),
    });
    await h.start();
    const records = await h.waitForLines(4);
    expect(bodies(records)).toEqual(['good-1', 'good-2', '', 'good-3']);
    expect(records[2]!.attributes['kta.parse.error']).toBeUndefined();
    expect(await h.metric('telemetry_agent_dropped_records_total', { component: SOURCE, reason: 'empty_line' })).toBe(3);
    expect(await h.metric('telemetry_agent_parse_errors_total')).toBeUndefined();
  });

  it('a 10 MiB line with max_line_bytes 1MiB: one record of the first 1 MiB of the line (CRI header included), marked truncated; the next lines intact', async () => {
    const MiB = 1024 * 1024;
    const h = harness({ max_line_bytes: '1MiB' });
    const header = criHeader({ time: criTime(2) });
    const huge = Array.from({ length: (10 * MiB) / 16 }, (_, i) => (i % 0x10000).toString(16).padStart(15, '-') + '|').join('');
    expect(huge.length).toBe(10 * MiB);
    const c = h.tree.container({
      content: criLine('before', { time: criTime(1) }) + header + huge + '\n' + criLine('after-1', { time: criTime(3) }) + criLine('after-2', { time: criTime(4) }),
    });
    await h.start();
    const records = await h.waitForLines(4, 30_000);
    expect(records).toHaveLength(4);
    expect(bodies([records[0]!, records[2]!, records[3]!])).toEqual(['before', 'after-1', 'after-2']);
    const big = records[1]!;
    // tailed_file.ts cuts the physical line at max_line_bytes, then parses it: the body is the
    // cap minus the CRI header.
    expect(big.body).toBe(huge.slice(0, MiB - header.length));
    expect(big.timestamp).toBe(criTime(2));
    expect(big.attributes).toEqual({ 'log.iostream': 'stdout', 'log.file.path': c.logPath, 'kta.log.truncated': true });
    for (const r of [records[0]!, records[2]!, records[3]!]) expect(r.attributes['kta.log.truncated']).toBeUndefined();
    expect(await h.metric('telemetry_agent_truncated_records_total', { source: SOURCE })).toBe(1);
    expect(await h.metric('telemetry_agent_source_records_total', { source: SOURCE })).toBe(4);
  });

  it('an over-long line inside one read chunk is cut by the same rule', async () => {
    const h = harness({ max_line_bytes: '64KiB', read_chunk: '1MiB' });
    const header = criHeader({ time: criTime(2) });
    const long = 'abcdefghij'.repeat(20_000); // 200,000 bytes: over the cap, within one chunk
    h.tree.container({ content: criLine('before', { time: criTime(1) }) + header + long + '\n' + criLine('after', { time: criTime(3) }) });
    await h.start();
    const records = await h.waitForLines(3);
    expect(bodies(records)).toEqual(['before', long.slice(0, 64 * 1024 - header.length), 'after']);
    expect(records[1]!.attributes['kta.log.truncated']).toBe(true);
    expect(await h.metric('telemetry_agent_truncated_records_total', { source: SOURCE })).toBe(1);
  });

  it('max_line_bytes cuts a non-ASCII line inside one read chunk by bytes too, as it does a line longer than a chunk', async () => {
    // format: cri, so the format is known before the first chunk (see the U+FFFD tests for auto).
    const h = harness({ max_line_bytes: '64KiB', read_chunk: '1MiB', format: 'cri' });
    const header = criHeader({ time: criTime(1) });
    // 90,000 bytes of 3-byte characters: over the 64 KiB cap, well within one 1 MiB chunk.
    h.tree.container({ content: header + '€'.repeat(30_000) + '\n' + criLine('after', { time: criTime(2) }) });
    await h.start();
    const records = await h.waitForLines(2);
    expect(records[1]!.body).toBe('after');
    // The rule of tailed_file.ts for a line longer than a chunk: the first max_line_bytes bytes of
    // the physical line, header included; (65536 - 40) / 3 = 21832 whole characters.
    expect(records[0]!.attributes['kta.log.truncated']).toBe(true);
    expect(Buffer.byteLength(header) + Buffer.byteLength(records[0]!.body as string)).toBeLessThanOrEqual(64 * 1024);
    expect(records[0]!.body).toBe('€'.repeat(21_832));
  });

  it('an over-long docker json-file line is cut and marked truncated, not reported as unparseable JSON', async () => {
    const h = harness({ max_line_bytes: '16KiB', read_chunk: '1MiB' });
    const message = 'z'.repeat(20_000);
    const c = h.tree.container({
      content:
        JSON.stringify({ log: 'before\n', stream: 'stdout', time: '2026-11-21T10:00:00.000000001Z' }) + '\n' +
        JSON.stringify({ log: message + '\n', stream: 'stdout', time: '2026-11-21T10:00:00.000000002Z' }) + '\n' +
        JSON.stringify({ log: 'after\n', stream: 'stdout', time: '2026-11-21T10:00:00.000000003Z' }) + '\n',
    });
    await h.start();
    const records = await h.waitForLines(3);
    expect(bodies([records[0]!, records[2]!])).toEqual(['before', 'after']);
    const big = records[1]!;
    expect(big.attributes['kta.parse.error']).toBeUndefined();
    expect(big.attributes).toMatchObject({ 'log.iostream': 'stdout', 'log.file.path': c.logPath, 'kta.log.truncated': true });
    expect(big.timestamp).toBe('2026-11-21T10:00:00.000000002Z');
    expect(typeof big.body).toBe('string');
    expect(message.startsWith(big.body as string)).toBe(true);
    expect((big.body as string).length).toBeGreaterThan(0);
    expect((big.body as string).length).toBeLessThanOrEqual(16 * 1024);
    expect(await h.metric('telemetry_agent_truncated_records_total', { source: SOURCE })).toBe(1);
    expect(await h.metric('telemetry_agent_parse_errors_total', { source: SOURCE })).toBeUndefined();
  });

  it('telemetry_agent_source_bytes_total counts every byte read, the skipped tail of an over-long line and empty lines included', async () => {
    const MiB = 1024 * 1024;
    const h = harness({ max_line_bytes: '1MiB', read_chunk: '1MiB' });
    const c = h.tree.container({
      content: criLine('before', { time: criTime(1) }) + criHeader({ time: criTime(2) }) + 'y'.repeat(3 * MiB) + '\n' + '\n'.repeat(10) + criLine('after', { time: criTime(3) }),
    });
    await h.start();
    expect(bodies(await h.waitForLines(3)).map((b) => (b as string).length)).toEqual([6, MiB - 40, 5]);
    await h.waitForMetric('telemetry_agent_dropped_records_total', { reason: 'empty_line' }, 10);
    expect(await h.metric('telemetry_agent_source_bytes_total', { source: SOURCE })).toBe(statSync(c.logPath).size);
  });

  it('copytruncate: after the file is truncated to zero, new lines arrive and old ones are not repeated', async () => {
    const h = harness();
    const old = Array.from({ length: 5 }, (_, i) => `old-${i + 1} `.padEnd(100, 'o'));
    const c = h.tree.container({ content: criLines(old) });
    await h.start();
    await h.waitForLines(5);
    // Let the acknowledgement of the old lines reach the checkpoint's state, then truncate.
    await h.waitFor('a checkpoint at the end of the old lines', () => {
      const path = join(h.tree.dataDir, 'checkpoints', `${SOURCE}.json`);
      if (!existsSync(path)) return undefined;
      const cp = JSON.parse(readFileSync(path, 'utf8')) as { files: { offset: number }[] };
      return cp.files[0]?.offset === statSync(c.logPath).size || undefined;
    });
    truncateSync(c.logPath, 0);
    appendFileSync(c.logPath, criLines(['new-1', 'new-2', 'new-3', 'new-end']));
    const records = await h.waitForBody('new-end');
    expect(bodies(records)).toEqual([...old, 'new-1', 'new-2', 'new-3', 'new-end']);
    appendFileSync(c.logPath, criLine('newer'));
    expect(bodies(await h.waitForBody('newer')).slice(-2)).toEqual(['new-end', 'newer']);
  });

  it('a symlink to a missing file is counted as missing_target, others are read, and the target is read from offset 0 once it appears', async () => {
    // read_from: end would skip the late file's lines if it were not read from its start.
    const h = harness({ read_from: 'end' });
    const ok = h.tree.container({ pod: 'ok' });
    const dangling = h.tree.container({ pod: 'late', createFile: false });
    await h.start();
    appendFileSync(ok.logPath, criLines(['ok-1', 'ok-2']));
    await h.waitForBody('ok-2');
    await h.waitForMetric('telemetry_agent_file_errors_total', { source: SOURCE, reason: 'missing_target' }, 1);

    // The target appears whole (written beside it, then renamed into place).
    const staging = join(h.tree.root, 'staging.log');
    writeFileSync(staging, criLines(['late-1', 'late-2', 'late-3']));
    renameSync(staging, dangling.logPath);
    const records = await h.waitForBody('late-3');
    expect(bodies(records.filter(ofFile(dangling.logPath)))).toEqual(['late-1', 'late-2', 'late-3']);
    expect(records.find(ofFile(dangling.logPath))!.resource['k8s.pod.name']).toBe('late');
    appendFileSync(ok.logPath, criLine('ok-3'));
    const after = await h.waitForBody('ok-3');
    expect(bodies(after.filter(ofFile(ok.logPath)))).toEqual(['ok-1', 'ok-2', 'ok-3']);
  });

  it('an unreadable file is counted as permission_denied, the others are read, and its lines arrive once it is readable', async () => {
    requireNode24();
    const tree = new NodeTree();
    let agent: ChildAgent | undefined;
    try {
      // root reads a mode-000 file anyway: run the agent as nobody then.
      const asRoot = process.getuid?.() === 0;
      const user = asRoot ? { uid: 65534, gid: 65534 } : {};
      const locked = tree.container({ pod: 'locked', content: criLines(['secret-1', 'secret-2']) });
      const open1 = tree.container({ pod: 'open-1', content: criLines(['open-1a', 'open-1b']) });
      const open2 = tree.container({ pod: 'open-2', content: criLines(['open-2a']) });
      chmodSync(locked.logPath, 0o000);
      chmodSync(tree.root, 0o755);
      chmodSync(tree.dataDir, 0o777);
      chmodSync(join(tree.root, 'out'), 0o777);
      const port = await freePort();
      const configPath = join(tree.root, 'agent.yaml');
      writeFileSync(configPath, agentConfigYaml(tree, { listen: `127.0.0.1:${port}` }));
      agent = new ChildAgent(configPath, user);
      agent.start();
      const base = `http://127.0.0.1:${port}`;
      const explain = (err: Error) => {
        throw new Error(`${err.message}\nrecords: ${JSON.stringify(bodies(readRecords(tree.outputPath)))}\nagent stderr:\n${agent!.stderr.slice(-3000)}`, { cause: err });
      };

      const firstRecords = await waitFor(
        'the readable files',
        () => {
          const r = readRecords(tree.outputPath);
          return r.length >= 3 ? r : undefined;
        },
        30_000,
      ).catch(explain);
      expect(bodies(firstRecords.filter(ofFile(open1.logPath)))).toEqual(['open-1a', 'open-1b']);
      expect(bodies(firstRecords.filter(ofFile(open2.logPath)))).toEqual(['open-2a']);
      expect(firstRecords.filter(ofFile(locked.logPath))).toEqual([]);
      await waitFor(
        'permission_denied counted',
        async () => ((await scrapeMetric(base, 'telemetry_agent_file_errors_total', { source: SOURCE, reason: 'permission_denied' }).catch(() => 0)) ?? 0) > 0,
        30_000,
      ).catch(explain);

      chmodSync(locked.logPath, 0o644);
      const all = await waitFor(
        'the unlocked file’s lines',
        () => {
          const r = readRecords(tree.outputPath);
          return r.some((x) => x.body === 'secret-2') ? r : undefined;
        },
        30_000,
      ).catch(explain);
      expect(bodies(all.filter(ofFile(locked.logPath)))).toEqual(['secret-1', 'secret-2']);
      expect(all).toHaveLength(5);
      expect(await agent.kill('SIGTERM')).toBe(0);
    } finally {
      if (agent?.proc && agent.proc.exitCode === null && agent.proc.signalCode === null) await agent.kill('SIGKILL');
      tree.remove();
    }
  });

  it('checkpoints on a full disk: records still flow, errors are counted, and the checkpoint appears once there is room', async () => {
    const h = harness();
    const checkpoints = join(h.tree.dataDir, 'checkpoints');
    mkdirSync(checkpoints, { recursive: true });
    const tmp = join(checkpoints, `${SOURCE}.json.tmp`);
    const final = join(checkpoints, `${SOURCE}.json`);
    symlinkSync('/dev/full', tmp); // every write through it fails with ENOSPC
    const c = h.tree.container({ content: criLines(['one', 'two', 'three']) });
    await h.start();
    expect(bodies(await h.waitForLines(3))).toEqual(['one', 'two', 'three']);
    await h.waitForMetric('telemetry_agent_checkpoint_errors_total', { source: SOURCE }, 1);
    expect(existsSync(final)).toBe(false);
    appendFileSync(c.logPath, criLine('four'));
    expect(bodies(await h.waitForBody('four'))).toEqual(['one', 'two', 'three', 'four']);
    expect(h.logs.join('')).toMatch(/cannot write checkpoint .*ENOSPC/);

    rmSync(tmp);
    const saved = await h.waitFor(
      'the checkpoint file with every line acknowledged',
      () => {
        if (!existsSync(final)) return undefined;
        const cp = JSON.parse(readFileSync(final, 'utf8')) as { files: { path: string; offset: number }[] };
        const entry = cp.files.find((f) => f.path === c.logPath);
        return entry && entry.offset === statSync(c.logPath).size ? cp : undefined;
      },
      10_000,
    );
    expect(saved.files).toHaveLength(1);
    expect(await h.metric('telemetry_agent_checkpoint_writes_total', { source: SOURCE })).toBeGreaterThan(0);
  });
});
