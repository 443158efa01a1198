import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent.ts';
import { parseConfig } from '../agent/config/load.ts';
import { createLogger } from '../agent/log.ts';
import { BATCH_MAX_ENTRIES } from '../agent/sources/journald/directory_reader.ts';
import { DIRECTORY_CHECK_MS } from '../agent/sources/journald/source.ts';
import { criLines, NodeTree, readRecords, requireNode24, scrapeMetric, type OutRecord } from './helpers/agent_harness.ts';
import { ChildAgent, freePort, waitFor } from './helpers/child_agent.ts';
import { JournalFixture, journalToolsAvailable, type FixtureEntry } from './helpers/journal_fixture.ts';

const tools = journalToolsAvailable();
const SOURCE = 'journal';

type Value = string | number | boolean | readonly string[];

/** Config: source `journal` over `journalDir` (plus `extra` keys), optionally source `containers`, file output `out`. */
function configYaml(tree: NodeTree, journalDir: string, opts: { extra?: Record<string, Value>; containers?: boolean; listen?: string } = {}): string {
  const q = (v: Value) => JSON.stringify(v);
  const inputs = opts.containers ? [SOURCE, 'containers'] : [SOURCE];
  return [
    'node_name: test-node',
    `data_dir: ${q(tree.dataDir)}`,
    'shutdown_timeout: 10s',
    `server: { listen: ${q(opts.listen ?? '127.0.0.1:0')} }`,
    'kubernetes: { mode: disabled }',
    'sources:',
    `  ${SOURCE}:`,
    '    type: journald',
    `    directories: [${q(journalDir)}]`,
    '    checkpoint_interval: 200ms',
    ...Object.entries(opts.extra ?? {}).map(([k, v]) => `    ${k}: ${q(v)}`),
    ...(opts.containers
      ? ['  containers:', '    type: container_logs', `    include: [${q(join(tree.containersDir, '*.log'))}]`, '    glob_interval: 100ms', '    poll_interval: 100ms']
      : []),
    'outputs:',
    '  out:',
    '    type: file',
    `    inputs: ${q(inputs)}`,
    `    path: ${q(tree.outputPath)}`,
    '',
  ].join('\n');
}

/** An in-process Agent with a journald source over a JournalFixture folder. */
class JournalAgent {
  readonly tree: NodeTree;
  readonly journal: JournalFixture;
  readonly logs: string[] = [];
  agent: Agent | undefined;
  private readonly opts: Parameters<typeof configYaml>[2];

  constructor(opts: Parameters<typeof configYaml>[2] = {}, reuse?: JournalAgent) {
    this.tree = reuse?.tree ?? new NodeTree('kta-journald-');
    this.journal = reuse?.journal ?? new JournalFixture(join(this.tree.root, 'journal'));
    this.opts = opts;
  }

  async start(): Promise<this> {
    requireNode24();
    const config = parseConfig(configYaml(this.tree, this.journal.dir, this.opts), 'journald.yaml', {});
    this.agent = new Agent(config, createLogger('debug', (l) => this.logs.push(l)));
    await this.agent.start();
    return this;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.agent!.address!.port}`;
  }

  records(): OutRecord[] {
    return readRecords(this.tree.outputPath);
  }

  journalRecords(): OutRecord[] {
    return this.records().filter((r) => r.attributes['journald.TEST_ID'] !== undefined);
  }

  ids(): string[] {
    return this.journalRecords().map((r) => String(r.attributes['journald.TEST_ID']));
  }

  metric(name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
    return scrapeMetric(this.baseUrl, name, labels);
  }

  async waitForIds(n: number, timeoutMs = 20_000): Promise<string[]> {
    try {
      return await waitFor(`${n} journal records`, () => (this.ids().length >= n ? this.ids() : undefined), timeoutMs, 50);
    } catch (err) {
      throw new Error(`${(err as Error).message}; got ${this.ids().length}\nagent log:\n${this.logs.slice(-30).join('')}`, { cause: err });
    }
  }

  /** Stops the agent; the tree stays for a successor (remove() removes it). */
  async stop(): Promise<void> {
    const a = this.agent;
    this.agent = undefined;
    await a?.stop();
  }

  remove(): void {
    this.tree.remove();
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => String(from + i));
const numbered = (from: number, to: number, e: Omit<FixtureEntry, 'fields'> = {}): FixtureEntry[] =>
  Array.from({ length: to - from }, (_, i) => ({ message: `entry ${from + i}`, identifier: 'app', ...e, fields: { TEST_ID: String(from + i) } }));

/** Each id exactly once. */
function expectExactlyOnce(ids: string[], want: string[]): void {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  const doubled = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  const missing = want.filter((id) => !counts.has(id));
  expect({ doubled, missing, extra: ids.length - want.length }).toEqual({ doubled: [], missing: [], extra: 0 });
}

const settle = () => new Promise((r) => setTimeout(r, 400));

describe.skipIf(!tools)('source journald, end to end through the agent', () => {
  const agents: JournalAgent[] = [];
  const make = (opts?: ConstructorParameters<typeof JournalAgent>[0], reuse?: JournalAgent) => {
    const a = new JournalAgent(opts, reuse);
    agents.push(a);
    return a;
  };
  afterEach(async () => {
    for (const a of agents.splice(0).reverse()) await a.stop();
  });
  const trees: JournalAgent[] = [];
  afterAll(() => trees.forEach((a) => a.remove()));

  it('delivers every entry exactly once with its body, time, severity, attributes and resource', async () => {
    const a = make();
    trees.push(a);
    const special: FixtureEntry[] = [
      { message: 'I1121 10:00:00.123456    1234 kubelet.go:123] started', identifier: 'kubelet', unit: 'kubelet.service', priority: 6, fields: { TEST_ID: 's0' } },
      { message: 'containerd is slow', identifier: 'containerd', unit: 'containerd.service', priority: 4, fields: { TEST_ID: 's1' } },
      { message: 'only a unit', unit: 'sshd.service', priority: 5, fields: { TEST_ID: 's2' } },
      { message: 'line one\nline two', priority: 3, fields: { TEST_ID: 's3' } },
      { message: Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0xff]), priority: 0, fields: { TEST_ID: 's4' } },
      { message: 'big '.repeat(2500), priority: 7, fields: { TEST_ID: 's5' } },
      { message: 'tagged', hostname: 'node-b', fields: { TEST_ID: 's6', TAG: ['a', 'b', Buffer.from('c\nd')] } },
      { message: 'client time', sourceRealtime: 1_795_305_924_000_001, fields: { TEST_ID: 's7' } },
    ];
    a.journal.write([...special, ...numbered(0, 200)], 'system.journal');
    await a.start();
    await a.waitForIds(208);
    // More while it runs, in a new file.
    a.journal.write(numbered(200, 300));
    const ids = await a.waitForIds(308);
    await settle();
    expectExactlyOnce(a.ids(), [...special.map((e) => String(e.fields!.TEST_ID)), ...range(0, 300)]);
    expect(ids.slice(0, 8)).toEqual(special.map((e) => e.fields!.TEST_ID));

    const byId = new Map(a.journalRecords().map((r) => [String(r.attributes['journald.TEST_ID']), r]));
    const r0 = byId.get('s0')!;
    expect(r0.body).toBe(special[0]!.message);
    expect(r0.severity_text).toBe('INFO');
    expect((r0 as unknown as { severity_number: number }).severity_number).toBe(9);
    expect(r0.resource).toEqual({ 'k8s.node.name': 'test-node', 'host.name': 'node-a', 'service.name': 'kubelet' });
    expect(r0.attributes).toMatchObject({
      'journald.PRIORITY': '6',
      'journald.SYSLOG_IDENTIFIER': 'kubelet',
      'journald._SYSTEMD_UNIT': 'kubelet.service',
      'journald._HOSTNAME': 'node-a',
      'journald._TRANSPORT': 'stdout',
    });
    for (const key of Object.keys(r0.attributes)) expect(key).toMatch(/^journald\.[A-Z_][A-Z0-9_]*$/);
    expect(Object.keys(r0.attributes).some((k) => k.startsWith('journald.__') || k === 'journald.MESSAGE')).toBe(false);
    expect(r0.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}000Z$/);

    expect(byId.get('s1')).toMatchObject({ severity_text: 'WARN', resource: { 'service.name': 'containerd' } });
    expect(byId.get('s2')).toMatchObject({ severity_text: 'INFO2', resource: { 'service.name': 'sshd' } });
    expect(byId.get('s3')).toMatchObject({ body: 'line one\nline two', severity_text: 'ERROR' });
    expect(byId.get('s4')).toMatchObject({ body: 'caf\ufffd \ufffd', severity_text: 'FATAL' });
    expect(byId.get('s5')).toMatchObject({ body: 'big '.repeat(2500), severity_text: 'DEBUG' });
    expect(byId.get('s6')!.attributes['journald.TAG']).toEqual(['a', 'b', 'c\nd']);
    expect(byId.get('s6')!.resource).toEqual({ 'k8s.node.name': 'test-node', 'host.name': 'node-b' });
    expect(byId.get('s7')!.timestamp).toBe('2026-11-22T00:05:24.000001000Z');
    expect(byId.get('s7')!.severity_text).toBeUndefined();

    expect(await a.metric('telemetry_agent_source_records_total', { source: SOURCE })).toBe(308);
    expect(await a.metric('telemetry_agent_source_restarts_total', { source: SOURCE })).toBe(0);
    expect((await fetch(`${a.baseUrl}/readyz`)).status).toBe(200);
    // The checkpoint holds the last entry once every output accepted it.
    const last = a.journal.cursors().at(-1);
    await waitFor('the checkpoint at the last entry', () => {
      const path = join(a.tree.dataDir, 'checkpoints', `${SOURCE}.json`);
      return existsSync(path) && (JSON.parse(readFileSync(path, 'utf8')) as { directories: Record<string, { cursor: string }> }).directories[a.journal.dir]?.cursor === last;
    }, 5000);
  });

  it('reads only the units and priorities asked for', async () => {
    const a = make({ extra: { units: ['kubelet', 'containerd.service'], priority: 'warning' } });
    trees.push(a);
    const entries: FixtureEntry[] = [];
    let n = 0;
    for (const unit of ['kubelet.service', 'containerd.service', 'cron.service']) {
      for (const priority of [2, 4, 6]) entries.push({ message: `${unit} ${priority}`, unit, priority, fields: { TEST_ID: String(n++) } });
    }
    a.journal.write(entries);
    await a.start();
    await a.waitForIds(4);
    await settle();
    const got = a.journalRecords().map((r) => r.body);
    expect(got).toEqual(['kubelet.service 2', 'kubelet.service 4', 'containerd.service 2', 'containerd.service 4']);
  });

  it('resumes after its checkpoint on restart: only new entries, none lost or doubled', async () => {
    const first = make();
    trees.push(first);
    first.journal.write(numbered(0, 100), 'system.journal');
    await first.start();
    await first.waitForIds(100);
    await first.stop();
    // Written while the agent is down, to the active file and to a new one.
    first.journal.write(numbered(100, 150), 'system.journal');
    first.journal.write(numbered(150, 200));
    const second = make({}, first);
    await second.start();
    await second.waitForIds(200);
    await settle();
    expectExactlyOnce(second.ids(), range(0, 200));
    expect(second.logs.join('')).toMatch(/reading .* with journalctl \(pid \d+\) after its checkpoint/);
    expect(await second.metric('telemetry_agent_source_restarts_total', { source: SOURCE })).toBe(0);
  });

  it('with read_from: end, skips what was there at the first start, even across a restart before any new entry', async () => {
    const first = make({ extra: { read_from: 'end' } });
    trees.push(first);
    first.journal.write(numbered(0, 10), 'system.journal');
    await first.start();
    await settle();
    expect(first.ids()).toEqual([]);
    await first.stop();
    first.journal.write(numbered(10, 20), 'system.journal');
    const second = make({ extra: { read_from: 'end' } }, first);
    await second.start();
    await second.waitForIds(10);
    second.journal.write(numbered(20, 30));
    await second.waitForIds(20);
    await settle();
    expectExactlyOnce(second.ids(), range(10, 30));
  });

  it('a corrupt checkpoint with read_from: end (issue 11): not a first start, the entries written while the agent was down are read, the checkpoint counted as unreadable', async () => {
    const first = make({ extra: { read_from: 'end' } });
    trees.push(first);
    first.journal.write(numbered(0, 10), 'system.journal');
    await first.start();
    first.journal.write(numbered(10, 20), 'system.journal');
    await first.waitForIds(10);
    await first.stop();
    // Written while the agent was down, then its checkpoint torn.
    first.journal.write(numbered(20, 30), 'system.journal');
    writeFileSync(join(first.tree.dataDir, 'checkpoints', `${SOURCE}.json`), '{"version":1,"directories":{"');
    const second = make({ extra: { read_from: 'end' } }, first);
    await second.start();
    await second.waitForIds(30);
    await settle();
    // From the oldest entry: 0-9 (never sent) and 10-19 (sent before) come again; 20-29 are not lost.
    for (const id of range(0, 30)) expect(second.ids()).toContain(id);
    expect(await second.metric('telemetry_agent_checkpoint_invalid_total', { source: SOURCE, reason: 'unreadable' })).toBe(1);
    expect(second.logs.join('')).toMatch(/not a first start: every journal folder is read from its oldest entry/);
  });

  it('keeps reading through a rotation and a vacuum of the rotated files', async () => {
    const a = make();
    trees.push(a);
    a.journal.write(numbered(0, 50), 'system.journal');
    await a.start();
    await a.waitForIds(50);
    a.journal.rotate('system.journal');
    a.journal.write(numbered(50, 100), 'system.journal');
    await a.waitForIds(100);
    a.journal.vacuum();
    expect(a.journal.fileNames()).toEqual(['system.journal']);
    a.journal.write(numbered(100, 150), 'system.journal');
    a.journal.rotate('system.journal');
    a.journal.write(numbered(150, 200), 'system.journal');
    await a.waitForIds(200);
    await settle();
    expectExactlyOnce(a.ids(), range(0, 200));
    expect(await a.metric('telemetry_agent_source_restarts_total', { source: SOURCE })).toBe(0);
  });

  it('starts from the oldest entry left when the checkpointed entry was vacuumed, and counts it', async () => {
    const first = make();
    trees.push(first);
    first.journal.write(numbered(0, 10), 'a.journal');
    first.journal.write(numbered(10, 20), 'b.journal');
    await first.start();
    await first.waitForIds(20);
    await first.stop();
    first.journal.vacuum([join(first.journal.dir, 'a.journal'), join(first.journal.dir, 'b.journal')]);
    first.journal.write(numbered(20, 30), 'c.journal');
    const second = make({}, first);
    await second.start();
    await second.waitForIds(30);
    await settle();
    expectExactlyOnce(second.ids(), range(0, 30));
    expect(await second.metric('telemetry_agent_source_restarts_total', { source: SOURCE, reason: 'cursor_gone' })).toBe(1);
    expect(second.logs.join('')).toMatch(/WARN .*the entry of the checkpoint in .* is no longer in the journal/);
  });

  it('reads everything again when the checkpoint cursor is malformed', async () => {
    const a = make();
    trees.push(a);
    a.journal.write(numbered(0, 20));
    mkdirSync(join(a.tree.dataDir, 'checkpoints'), { recursive: true });
    writeFileSync(
      join(a.tree.dataDir, 'checkpoints', `${SOURCE}.json`),
      JSON.stringify({ version: 1, writtenAt: 0, directories: { [a.journal.dir]: { cursor: 'no-such-cursor', filter: '' } } }),
      { flag: 'w' },
    );
    await a.start();
    await a.waitForIds(20);
    await settle();
    expectExactlyOnce(a.ids(), range(0, 20));
    expect(await a.metric('telemetry_agent_source_restarts_total', { source: SOURCE, reason: 'cursor_invalid' })).toBe(1);
    expect(a.logs.join('')).toMatch(/ERROR .*rejected the checkpoint cursor/);
  });

  it('without journalctl: logs a clear error, is not ready, and container logs keep flowing', async () => {
    const a = make({ containers: true, extra: { journalctl: '/nonexistent/bin/journalctl' } });
    trees.push(a);
    a.journal.write(numbered(0, 5));
    const c = a.tree.container({ content: criLines(['from a container 1', 'from a container 2']) });
    await a.start();
    await waitFor('container records', () => a.records().filter((r) => r.resource['k8s.pod.name'] === c.pod).length >= 2, 10_000, 50);
    await waitFor('a not_found restart', async () => ((await a.metric('telemetry_agent_source_restarts_total', { source: SOURCE, reason: 'not_found' })) ?? 0) >= 1, 10_000, 50);
    expect(a.logs.join('')).toMatch(/ERROR source journal: journalctl not found \("\/nonexistent\/bin\/journalctl" is not installed or not in PATH\)/);
    expect((await fetch(`${a.baseUrl}/readyz`)).status).toBe(503);
    expect((await fetch(`${a.baseUrl}/healthz`)).status).toBe(200);
    expect(a.journalRecords()).toEqual([]);
    // The container source goes on reading.
    writeFileSync(c.logPath, criLines(['from a container 1', 'from a container 2', 'from a container 3']));
    await waitFor('more container records', () => a.records().some((r) => r.body === 'from a container 3'), 10_000, 50);
  });

  it('skips a folder that does not exist, with one log line, stays ready, and reads it once it appears', async () => {
    const a = make({ extra: { read_from: 'end' } });
    trees.push(a);
    rmSync(a.journal.dir, { recursive: true });
    await a.start();
    expect(a.logs.join('')).toMatch(/journal folder .* does not exist; skipped/);
    expect((await fetch(`${a.baseUrl}/readyz`)).status).toBe(200);
    // Made later (journald started, persistence switched on): read from its start, as a new file is.
    const journal = new JournalFixture(a.journal.dir);
    journal.write(numbered(0, 10));
    await a.waitForIds(10, DIRECTORY_CHECK_MS + 10_000);
    expect(a.logs.join('')).toMatch(/journal folder .* appeared; reading it/);
    expectExactlyOnce(a.ids(), range(0, 10));
  });
});

/** pids of the journalctl children of `pid` (they outlive a SIGKILLed agent until their next write). */
function journalctlChildren(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .filter((p) => {
        try {
          return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'journalctl';
        } catch {
          return false;
        }
      });
  } catch {
    return [];
  }
}

describe.skipIf(!tools)('source journald: SIGKILL between acknowledgement and checkpoint', () => {
  const root = mkdtempSync(join(tmpdir(), 'kta-journald-crash-'));
  const cleanup: (() => void)[] = [];
  afterAll(() => {
    cleanup.forEach((f) => f());
    rmSync(root, { recursive: true, force: true });
  });

  it('repeats at most one batch per crash and loses nothing', async () => {
    const journal = new JournalFixture(join(root, 'journal'));
    const total = 40_000;
    for (let f = 0; f < 4; f++) journal.write(numbered(f * 10_000, (f + 1) * 10_000, { message: undefined }).map((e, i) => ({ ...e, message: `crash test entry ${f * 10_000 + i} ${'x'.repeat(150)}` })), 'system.journal');
    const out = join(root, 'out.ndjson');
    const port = await freePort();
    const configPath = join(root, 'agent.yaml');
    writeFileSync(
      configPath,
      `node_name: crash-node
data_dir: ${join(root, 'data')}
shutdown_timeout: 20s
server: { listen: "127.0.0.1:${port}" }
kubernetes: { mode: disabled }
sources:
  ${SOURCE}:
    type: journald
    directories: [${journal.dir}]
outputs:
  out:
    type: file
    inputs: [${SOURCE}]
    path: ${out}
`,
    );
    const ids = () => {
      const got: string[] = [];
      if (!existsSync(out)) return got;
      for (const line of readFileSync(out, 'utf8').split('\n')) {
        if (!line) continue;
        try {
          got.push(String((JSON.parse(line) as OutRecord).attributes['journald.TEST_ID']));
        } catch {
          // a line cut by SIGKILL: its records come again from the checkpoint
        }
      }
      return got;
    };

    const crashes: number[] = [];
    for (const after of [5_000, 20_000]) {
      const child = new ChildAgent(configPath);
      child.start();
      cleanup.push(() => child.proc?.exitCode === null && child.proc.kill('SIGKILL'));
      await child.ready(port);
      await waitFor(`${after} records`, () => ids().length >= after, 30_000, 5);
      const orphans = journalctlChildren(child.proc!.pid!);
      expect(await child.kill('SIGKILL')).toBe('SIGKILL');
      for (const p of orphans) {
        try {
          process.kill(p, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      crashes.push(ids().length);
    }
    const child = new ChildAgent(configPath);
    child.start();
    cleanup.push(() => child.proc?.exitCode === null && child.proc.kill('SIGKILL'));
    await child.ready(port);
    const unique = () => new Set(ids()).size;
    await waitFor('every entry', () => unique() >= total, 60_000, 50);
    expect(await child.kill('SIGTERM')).toBe(0);

    const got = ids();
    const want = range(0, total);
    expect(new Set(got)).toEqual(new Set(want));
    const duplicates = got.length - total;
    for (const at of crashes) expect(at, 'the crash came before the end').toBeLessThan(total);
    // Per crash at most the batch written but not yet checkpointed (the output takes one batch at a time).
    expect(duplicates, `records at the crashes: ${crashes.join(', ')}`).toBeLessThanOrEqual(crashes.length * BATCH_MAX_ENTRIES);
    // In journal order within each run: the only steps back are the restarts from a checkpoint.
    expect(got.filter((id, i) => i > 0 && Number(id) < Number(got[i - 1])).length).toBeLessThanOrEqual(crashes.length);
  });
});
