import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AgentHarness,
  NodeTree,
  SOURCE,
  agentConfigYaml,
  criLine,
  criLines,
  criTime,
  readRecords,
  requireNode24,
  scrapeMetric,
  type ContainerLog,
  type OutRecord,
  type Scalar,
} from './helpers/agent_harness.ts';
import { ChildAgent, freePort, waitFor } from './helpers/child_agent.ts';

/**
 * The tailer's life cycle: many files under a descriptor cap, pick-up latency, read_from, the
 * CLI's signals and shutdown_timeout, deleted pods and restarted containers.
 */

const harnesses: AgentHarness[] = [];
const trees: NodeTree[] = [];
const children: ChildAgent[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.proc && c.proc.exitCode === null && c.proc.signalCode === null) await c.kill('SIGKILL');
  }
  await Promise.all(harnesses.splice(0).map((h) => h.stop()));
  for (const t of trees.splice(0)) t.remove();
});

function harness(source: Record<string, Scalar> = {}, opts: { tree?: NodeTree; defaults?: string[] } = {}): AgentHarness {
  const h = new AgentHarness({ source, ...opts });
  harnesses.push(h);
  return h;
}
function tree(): NodeTree {
  const t = new NodeTree();
  trees.push(t);
  return t;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const bodies = (records: { body: unknown }[]) => records.map((r) => r.body);
const ofFile = (path: string) => (r: OutRecord) => r.attributes['log.file.path'] === path;

/** How many times each body occurs. */
function counts(records: OutRecord[]): Map<unknown, number> {
  const m = new Map<unknown, number>();
  for (const r of records) m.set(r.body, (m.get(r.body) ?? 0) + 1);
  return m;
}
function duplicatesOf(records: OutRecord[]): unknown[] {
  return [...counts(records)].filter(([, n]) => n > 1).map(([b]) => b);
}

interface CheckpointFile {
  version: number;
  writtenAt: number;
  files: { dev: number; ino: number; offset: number; path: string }[];
}
const checkpointPath = (t: NodeTree) => join(t.dataDir, 'checkpoints', `${SOURCE}.json`);
function readCheckpoint(t: NodeTree): CheckpointFile | undefined {
  const path = checkpointPath(t);
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, 'utf8')) as CheckpointFile;
}
/** The checkpoint, once every listed file has an entry at exactly its size on disk. */
function checkpointAtSizes(t: NodeTree, paths: readonly string[]): CheckpointFile | undefined {
  const cp = readCheckpoint(t);
  if (!cp) return undefined;
  for (const p of paths) {
    const entry = cp.files.find((f) => f.path === p);
    if (!entry || entry.offset !== statSync(p).size) return undefined;
  }
  return cp;
}

/** Descriptors this process holds (the in-process agent's included). */
const openDescriptors = () => readdirSync('/proc/self/fd').length;
/** The paths of the files this process holds open. */
function openPaths(): Set<string> {
  const paths = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      paths.add(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // closed meanwhile (the readdir's own descriptor)
    }
  }
  return paths;
}

/** A restarted container, the kubelet way: `<n>.log` beside the old one and a new symlink with the new container id. */
function restartContainer(t: NodeTree, c: ContainerLog, restart: number, content: string): ContainerLog {
  const id = createHash('sha256').update(`${c.id}/restart-${restart}`).digest('hex');
  const logPath = join(dirname(c.logPath), `${restart}.log`);
  writeFileSync(logPath, content);
  const linkPath = join(t.containersDir, `${c.pod}_${c.namespace}_${c.container}-${id}.log`);
  symlinkSync(logPath, linkPath);
  return { ...c, id, logPath, linkPath };
}

// --- 1. many files under a descriptor cap ------------------------------------------------------

const tagOf = (i: number) => `f${String(i).padStart(4, '0')}`;

/** 3 to 6 CRI lines; every fifth file has one line written as P, P, F chunks. */
function initialContent(i: number): { content: string; bodies: string[] } {
  const n = 3 + (i % 4);
  let content = '';
  const out: string[] = [];
  let t = 1;
  for (let j = 1; j <= n; j++) {
    const body = `${tagOf(i)}-l${j} ` + 'x'.repeat(40 + ((i * 7 + j * 13) % 120));
    if (i % 5 === 0 && j === 2) {
      content +=
        criLine(body.slice(0, 10), { tag: 'P', time: criTime(t++) }) +
        criLine(body.slice(10, 25), { tag: 'P', time: criTime(t++) }) +
        criLine(body.slice(25), { time: criTime(t++) });
    } else {
      content += criLine(body, { time: criTime(t++), stream: j % 3 === 0 ? 'stderr' : 'stdout' });
    }
    out.push(body);
  }
  return { content, bodies: out };
}

interface Sample {
  phase: string;
  value: number;
}

/**
 * Samples the open_files gauge through /metrics (every 20 ms between scrapes) and, far more often
 * since it is cheap and synchronous, this process's descriptor count (every 5 ms), until stopped.
 */
class Sampler {
  readonly gauge: Sample[] = [];
  readonly fds: Sample[] = [];
  phase = 'initial read';
  private running = true;
  private readonly done: Promise<void>;
  private readonly h: AgentHarness;
  private readonly fdTimer: NodeJS.Timeout;

  constructor(h: AgentHarness) {
    this.h = h;
    this.fdTimer = setInterval(() => this.fds.push({ phase: this.phase, value: openDescriptors() }), 5);
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const phase = this.phase;
      const v = await this.h.metric('telemetry_agent_open_files', { source: SOURCE });
      this.gauge.push({ phase, value: v ?? NaN });
      await sleep(20);
    }
  }

  of(series: Sample[], phase: string): number[] {
    return series.filter((s) => s.phase === phase).map((s) => s.value);
  }

  async stop(): Promise<void> {
    clearInterval(this.fdTimer);
    this.running = false;
    await this.done;
  }
}

describe('tailer life cycle', () => {
  it('1,000 files with max_open_files 100: every line exactly once, the cap held, closed files reopened by path, rotated while closed', async () => {
    const CAP = 100;
    const POLL_MS = 100; // the harness's poll_interval
    // Descriptors the cap does not count: the /metrics listening socket, the test's keep-alive
    // connection to it and the server's end of it (a second pair while one closes), the inotify
    // descriptor behind every fs.watch, the file output's handle, and during a checkpoint save the
    // temp file plus the data folder opened for fsync. 7 at once at most; 16 leaves room for timing.
    const FD_MARGIN = 16;
    const h = harness({ max_open_files: CAP });
    const files: { c: ContainerLog; tag: string; expected: string[] }[] = [];
    for (let i = 0; i < 1000; i++) {
      const { content, bodies: b } = initialContent(i);
      files.push({ c: h.tree.container({ pod: `pod-${tagOf(i)}`, content }), tag: tagOf(i), expected: b });
    }
    const total = () => files.reduce((n, f) => n + f.expected.length, 0);
    const baseline = openDescriptors();

    await h.start();
    // What the descriptor count is before the first poll (the initial scan opens files before any cap is applied).
    const fdsBeforeFirstPoll = openDescriptors() - baseline;
    // The poll timer was armed inside start() with this same duration: Node fires equal-duration
    // timers in the order they were armed, so this resolves after the first poll ran.
    await sleep(POLL_MS);
    const sampler = new Sampler(h);
    try {
      const first = await h.waitForLines(total(), 60_000);
      expect(first).toHaveLength(total());
      // Everything acknowledged; and at least several samples taken while the agent worked.
      await h.waitFor('every file checkpointed at its size', () => checkpointAtSizes(h.tree, files.map((f) => f.c.logPath)), 30_000);
      await h.waitFor('5 samples', () => sampler.of(sampler.gauge, 'initial read').length >= 5, 10_000);

      // Files closed for the cap (live files are closed for no other reason): append to 50 of them.
      sampler.phase = 'append to closed';
      const open1 = openPaths();
      const closed1 = files.filter((f) => !open1.has(f.c.logPath));
      expect(closed1.length).toBeGreaterThanOrEqual(1000 - CAP);
      const appended = closed1.filter((_, k) => k % Math.floor(closed1.length / 50) === 0).slice(0, 50);
      expect(appended).toHaveLength(50);
      for (const f of appended) {
        const body = `${f.tag}-closed-append`;
        appendFileSync(f.c.logPath, criLine(body, { time: criTime(100) }));
        f.expected.push(body);
      }
      await h.waitFor('the 50 appended lines', () => {
        const seen = new Set(bodies(h.records()));
        return appended.every((f) => seen.has(`${f.tag}-closed-append`)) || undefined;
      }, 30_000);
      await h.waitFor('5 samples', () => sampler.of(sampler.gauge, 'append to closed').length >= 5, 10_000);

      // Rotate 20 files that are closed now: append to the old file, rename it away, write a new one.
      sampler.phase = 'rotate closed';
      const open2 = openPaths();
      const closed2 = files.filter((f) => !open2.has(f.c.logPath) && !appended.includes(f));
      expect(closed2.length).toBeGreaterThanOrEqual(20);
      const rotated = closed2.filter((_, k) => k % Math.floor(closed2.length / 20) === 0).slice(0, 20);
      expect(rotated).toHaveLength(20);
      for (const f of rotated) {
        const pre = `${f.tag}-before-rename`;
        appendFileSync(f.c.logPath, criLine(pre, { time: criTime(200) }));
        renameSync(f.c.logPath, `${f.c.logPath}.20261121-100000`);
        writeFileSync(f.c.logPath, criLines([`${f.tag}-new-1`]));
        appendFileSync(f.c.logPath, criLine(`${f.tag}-new-2`, { time: criTime(300) }));
        f.expected.push(pre, `${f.tag}-new-1`, `${f.tag}-new-2`);
      }
      const all = await h.waitForLines(total(), 30_000);
      await h.waitFor('5 samples', () => sampler.of(sampler.gauge, 'rotate closed').length >= 5, 10_000);
      await sleep(500); // a few more samples once the rotated files are finished (rotate_wait 500ms)

      // Exactly once, in order per file.
      expect(duplicatesOf(all)).toEqual([]);
      expect(all).toHaveLength(total());
      const byTag = new Map<string, OutRecord[]>();
      for (const r of all) {
        const tag = String(r.body).slice(0, 5);
        byTag.set(tag, [...(byTag.get(tag) ?? []), r]);
      }
      for (const f of files) {
        const got = byTag.get(f.tag) ?? [];
        expect(bodies(got), f.c.logPath).toEqual(f.expected);
        for (const r of got) {
          expect(r.resource['k8s.pod.name']).toBe(f.c.pod);
          expect(r.resource['container.id']).toBe(f.c.id);
          expect(String(r.attributes['log.file.path']).startsWith(dirname(f.c.logPath) + '/')).toBe(true);
        }
      }
    } finally {
      await sampler.stop();
    }

    const phases = ['initial read', 'append to closed', 'rotate closed'];
    const report = phases.map((phase) => {
      const g = sampler.of(sampler.gauge, phase);
      const f = sampler.of(sampler.fds, phase);
      return `${phase}: open_files max ${Math.max(...g)} (${g.length} scrapes), descriptors max baseline+${Math.max(...f) - baseline} (${f.length} samples)`;
    });
    console.log(`1,000 files, max_open_files ${CAP}: descriptors right after start() baseline+${fdsBeforeFirstPoll}; ${report.join('; ')}`);
    for (const phase of phases) {
      const g = sampler.of(sampler.gauge, phase);
      const f = sampler.of(sampler.fds, phase);
      expect(g.length, phase).toBeGreaterThanOrEqual(5);
      expect(g.every((v) => !Number.isNaN(v)), `open_files present in every scrape during "${phase}"`).toBe(true);
      expect.soft(Math.max(...g), `telemetry_agent_open_files during "${phase}"`).toBeLessThanOrEqual(CAP);
      expect.soft(Math.max(...f) - baseline, `descriptors over baseline during "${phase}"`).toBeLessThanOrEqual(CAP + FD_MARGIN);
    }
  }, 180_000);

  // --- 2. pick-up latency -------------------------------------------------------------------------

  it('a new container (new pod folder and symlink) is read within 1 second with the default glob_interval and poll_interval', async () => {
    const h = harness({}, { defaults: ['glob_interval', 'poll_interval'] });
    h.tree.container({ pod: 'existing', content: criLines(['existing-1']) });
    await h.start();
    await h.waitForBody('existing-1');

    const latencies: number[] = [];
    // Spread over the 1 s scan period, so the pick-up is not lucky with the glob timer.
    for (const [k, pause] of [173, 411, 667, 929].entries()) {
      await sleep(pause);
      const body = `new-pod-${k}-line-1`;
      const t = h.tree;
      // kubelet: the pod folder and the container's log file first, then the symlink.
      const uid = `0f1e2d3c-4b5a-4697-8877-aa000000000${k}`;
      const dir = join(t.podsDir, `default_fresh-${k}_${uid}`, 'app');
      const logPath = join(dir, '0.log');
      mkdirSync(dir, { recursive: true });
      writeFileSync(logPath, criLines([body]));
      const id = createHash('sha256').update(`fresh-${k}`).digest('hex');
      symlinkSync(logPath, join(t.containersDir, `fresh-${k}_default_app-${id}.log`));
      const created = performance.now();
      await waitFor(`record ${body}`, () => h.records().some((r) => r.body === body), 10_000, 2);
      const latency = performance.now() - created;
      latencies.push(Math.round(latency));
      const rec = h.records().find((r) => r.body === body)!;
      expect(rec.resource['k8s.pod.name']).toBe(`fresh-${k}`);
      expect(rec.resource['container.id']).toBe(id);
    }
    console.log(`new-file pick-up latency (symlink created -> record in the output), default intervals: ${latencies.join(', ')} ms`);
    for (const l of latencies) expect(l).toBeLessThan(1000);
  });

  // --- 3. read_from: end ------------------------------------------------------------------------

  it('read_from end: files present at the first start are read from their end, a file appearing later from 0, and a restart resumes at the checkpoint', async () => {
    const t = tree();
    const a = t.container({ pod: 'old-a', content: criLines(['a-old-1', 'a-old-2']) });
    const b = t.container({ pod: 'old-b', content: criLines(['b-old-1']) });
    const h1 = harness({ read_from: 'end' }, { tree: t });
    await h1.start(); // the first scan happens inside start(): positions are taken by now

    appendFileSync(a.logPath, criLine('a-new-1'));
    appendFileSync(b.logPath, criLine('b-new-1'));
    await h1.waitFor('a-new-1 and b-new-1', () => {
      const got = bodies(h1.records());
      return (got.includes('a-new-1') && got.includes('b-new-1')) || undefined;
    });
    // A container appearing while the agent runs is read from its start.
    const late = t.container({ pod: 'late', content: criLines(['late-1', 'late-2']) });
    await h1.waitForBody('late-2');
    expect(bodies(h1.records()).sort()).toEqual(['a-new-1', 'b-new-1', 'late-1', 'late-2']);
    await h1.waitFor('the checkpoint at every file end', () => checkpointAtSizes(t, [a.logPath, b.logPath, late.logPath]));
    await h1.stop();

    // Written while the agent is stopped.
    appendFileSync(a.logPath, criLines(['a-down-1', 'a-down-2']));
    appendFileSync(late.logPath, criLine('late-down-1'));
    appendFileSync(b.logPath, criLine('b-down-1'));

    const h2 = harness({ read_from: 'end' }, { tree: t });
    await h2.start();
    await h2.waitFor('the lines written while stopped', () => {
      const got = bodies(h2.records());
      return ['a-down-2', 'late-down-1', 'b-down-1'].every((x) => got.includes(x)) || undefined;
    });
    appendFileSync(a.logPath, criLine('a-after-restart'));
    const all = await h2.waitForBody('a-after-restart');
    expect(duplicatesOf(all)).toEqual([]);
    expect(bodies(all.filter(ofFile(a.logPath)))).toEqual(['a-new-1', 'a-down-1', 'a-down-2', 'a-after-restart']);
    expect(bodies(all.filter(ofFile(b.logPath)))).toEqual(['b-new-1', 'b-down-1']);
    expect(bodies(all.filter(ofFile(late.logPath)))).toEqual(['late-1', 'late-2', 'late-down-1']);
  });

  it('read_from end: a container created while the agent was stopped is read from its start after a restart with a checkpoint', async () => {
    const t = tree();
    const a = t.container({ pod: 'old-a', content: criLines(['a-old-1']) });
    const h1 = harness({ read_from: 'end' }, { tree: t });
    await h1.start();
    appendFileSync(a.logPath, criLine('a-new-1'));
    await h1.waitForBody('a-new-1');
    await h1.waitFor('the checkpoint at the file end', () => checkpointAtSizes(t, [a.logPath]));
    await h1.stop();

    // A pod scheduled during the agent's restart (a DaemonSet rollout, say) writes its first lines.
    const down = t.container({ pod: 'born-while-down', content: criLines(['down-1', 'down-2']) });
    appendFileSync(a.logPath, criLine('a-down-1'));

    const h2 = harness({ read_from: 'end' }, { tree: t });
    await h2.start();
    await h2.waitForBody('a-down-1');
    appendFileSync(down.logPath, criLine('down-3'));
    const all = await h2.waitForBody('down-3');
    expect(bodies(all.filter(ofFile(a.logPath)))).toEqual(['a-new-1', 'a-down-1']);
    // config.ts: read_from applies to "files seen the first time while the agent runs from a
    // checkpoint-less state"; with a checkpoint, nothing written while the agent was away is skipped.
    expect(bodies(all.filter(ofFile(down.logPath)))).toEqual(['down-1', 'down-2', 'down-3']);
  });

  // --- 5. a deleted pod ---------------------------------------------------------------------------

  it('a deleted symlink: lines appended within rotate_wait arrive, then the file is closed and its checkpoint entry removed', async () => {
    const h = harness({ rotate_wait: '3s' });
    const doomed = h.tree.container({ pod: 'doomed', content: criLines(['d-1', 'd-2', 'd-3']) });
    const stays = h.tree.container({ pod: 'stays', content: criLines(['s-1']) });
    await h.start();
    await h.waitForLines(4);
    await h.waitFor('open_files 2', async () => (await h.metric('telemetry_agent_open_files', { source: SOURCE })) === 2 || undefined);
    const before = await h.waitFor('both files checkpointed at their size', () => checkpointAtSizes(h.tree, [doomed.logPath, stays.logPath]));
    expect(before.files.map((f) => f.path).sort()).toEqual([doomed.logPath, stays.logPath].sort());

    // The pod is deleted: the symlink goes first; the container still flushes its last lines.
    rmSync(doomed.linkPath);
    appendFileSync(doomed.logPath, criLine('d-after-unlink-1'));
    await h.waitForBody('d-after-unlink-1');
    await sleep(300); // three scans: the agent has seen the symlink gone by now
    appendFileSync(doomed.logPath, criLines(['d-after-unlink-2', 'd-after-unlink-3']));
    await h.waitForBody('d-after-unlink-3');
    // Just read, so well inside rotate_wait: still open.
    expect(await h.metric('telemetry_agent_open_files', { source: SOURCE })).toBe(2);

    // After rotate_wait without growth the file is finished: closed and dropped from the checkpoint.
    await h.waitFor('open_files 1', async () => (await h.metric('telemetry_agent_open_files', { source: SOURCE })) === 1 || undefined, 20_000);
    expect(openPaths().has(doomed.logPath)).toBe(false);
    expect(openPaths().has(stays.logPath)).toBe(true);
    expect(await h.metric('telemetry_agent_files_tailed', { source: SOURCE })).toBe(1);
    const after = await h.waitFor('the checkpoint without the deleted pod’s file', () => {
      const cp = readCheckpoint(h.tree);
      return cp && !cp.files.some((f) => f.path === doomed.logPath) ? cp : undefined;
    });
    expect(after.files.map((f) => f.path)).toEqual([stays.logPath]);
    expect(after.files[0]!.offset).toBe(statSync(stays.logPath).size);

    const all = h.records();
    expect(duplicatesOf(all)).toEqual([]);
    expect(bodies(all.filter(ofFile(doomed.logPath)))).toEqual(['d-1', 'd-2', 'd-3', 'd-after-unlink-1', 'd-after-unlink-2', 'd-after-unlink-3']);
    expect(all.filter(ofFile(doomed.logPath)).every((r) => r.resource['k8s.pod.name'] === 'doomed' && r.resource['container.id'] === doomed.id)).toBe(true);
    // The other pod is still tailed.
    appendFileSync(stays.logPath, criLine('s-2'));
    expect(bodies((await h.waitForBody('s-2')).filter(ofFile(stays.logPath)))).toEqual(['s-1', 's-2']);
  });

  // --- 6. a restarted container ----------------------------------------------------------------

  it('a restarted container: 1.log with a new symlink beside the kept 0.log; both read, restart_count and container.id per file', async () => {
    const h = harness();
    const c0 = h.tree.container({ pod: 'web-0', container: 'app', content: criLines(['r0-1', 'r0-2']) });
    const other = h.tree.container({ pod: 'web-0', container: 'sidecar', content: criLines(['side-1']) });
    await h.start();
    await h.waitForLines(3);

    appendFileSync(c0.logPath, criLine('r0-last-words', { stream: 'stderr' }));
    const c1 = restartContainer(h.tree, c0, 1, criLines(['r1-1', 'r1-2']));
    expect(existsSync(c0.linkPath)).toBe(true); // the dead container's log and symlink are kept
    await h.waitFor('r0-last-words and r1-2', () => {
      const got = bodies(h.records());
      return (got.includes('r0-last-words') && got.includes('r1-2')) || undefined;
    });
    appendFileSync(c1.logPath, criLine('r1-3'));
    const all = await h.waitForBody('r1-3');
    expect(duplicatesOf(all)).toEqual([]);
    expect(all).toHaveLength(7);

    const r0 = all.filter(ofFile(c0.logPath));
    const r1 = all.filter(ofFile(c1.logPath));
    expect(bodies(r0)).toEqual(['r0-1', 'r0-2', 'r0-last-words']);
    expect(bodies(r1)).toEqual(['r1-1', 'r1-2', 'r1-3']);
    expect(c1.id).not.toBe(c0.id);
    for (const r of r0) {
      expect(r.resource).toMatchObject({
        'k8s.pod.name': 'web-0',
        'k8s.namespace.name': 'default',
        'k8s.pod.uid': c0.uid,
        'k8s.container.name': 'app',
        'k8s.container.restart_count': '0',
        'container.id': c0.id,
      });
    }
    for (const r of r1) {
      expect(r.resource).toMatchObject({
        'k8s.pod.name': 'web-0',
        'k8s.namespace.name': 'default',
        'k8s.pod.uid': c0.uid,
        'k8s.container.name': 'app',
        'k8s.container.restart_count': '1',
        'container.id': c1.id,
      });
    }
    expect(all.find(ofFile(other.logPath))!.resource['container.id']).toBe(other.id);
  });
});

// --- 4. the CLI's life cycle -------------------------------------------------------------------

/** A tree with a config for a child agent on a free port. */
async function childSetup(opts: { source?: Record<string, Scalar>; shutdownTimeout?: string } = {}) {
  requireNode24();
  const t = tree();
  const port = await freePort();
  const configPath = join(t.root, 'agent.yaml');
  writeFileSync(configPath, agentConfigYaml(t, { listen: `127.0.0.1:${port}`, source: opts.source, shutdownTimeout: opts.shutdownTimeout }));
  const start = async () => {
    const agent = new ChildAgent(configPath);
    children.push(agent);
    agent.start();
    await agent.ready(port);
    return agent;
  };
  return { t, port, start, base: `http://127.0.0.1:${port}` };
}

function explainChild(agent: ChildAgent, outputPath: string) {
  return (err: Error): never => {
    const got = bodies(readRecords(outputPath));
    throw new Error(`${err.message}\n${got.length} records, last: ${JSON.stringify(got.slice(-10))}\nagent stderr:\n${agent.stderr.slice(-3000)}`, { cause: err });
  };
}

/** `n` CRI lines `<prefix>-<k>`, line 3 of each ten written as a P and an F chunk. */
function numberedLines(prefix: string, from: number, n: number, pad = 0): { content: string; bodies: string[] } {
  let content = '';
  const out: string[] = [];
  for (let k = from; k < from + n; k++) {
    const body = `${prefix}-${String(k).padStart(5, '0')}` + (pad ? ' ' + 'p'.repeat(pad) : '');
    if (k % 10 === 3) content += criLine(body.slice(0, 6), { tag: 'P', time: criTime(k) }) + criLine(body.slice(6), { time: criTime(k) });
    else content += criLine(body, { time: criTime(k) });
    out.push(body);
  }
  return { content, bodies: out };
}

describe('life cycle through the CLI (child process)', () => {
  it('SIGTERM and SIGINT exit 0 with every file checkpointed at its size; a restart after SIGTERM emits no duplicates', async () => {
    // Only the shutdown writes checkpoints here (the interval never comes, and far less than a read
    // chunk is acknowledged), so what the checkpoint holds after a signal is the shutdown's work.
    const { t, start } = await childSetup({ source: { checkpoint_interval: '1h' } });
    const containers = ['alpha', 'beta', 'gamma'].map((pod) => {
      const { content, bodies: b } = numberedLines(pod, 1, 50);
      return { c: t.container({ pod, content }), expected: b };
    });
    const paths = containers.map((x) => x.c.logPath);
    const expectedCount = () => containers.reduce((n, x) => n + x.expected.length, 0);

    let agent = await start();
    await waitFor('150 records', () => readRecords(t.outputPath).length >= expectedCount() || undefined, 30_000).catch(explainChild(agent, t.outputPath));
    const termAt = Date.now();
    expect(await agent.kill('SIGTERM')).toBe(0);
    const cp1 = checkpointAtSizes(t, paths);
    expect(cp1, `checkpoint after SIGTERM: ${JSON.stringify(readCheckpoint(t))}`).toBeDefined();
    expect(cp1!.files).toHaveLength(3);
    expect(cp1!.writtenAt).toBeGreaterThanOrEqual(termAt);

    // Written while stopped; the restart must emit these and nothing again.
    for (const x of containers) {
      const { content, bodies: b } = numberedLines(x.c.pod, 51, 10);
      appendFileSync(x.c.logPath, content);
      x.expected.push(...b);
    }
    agent = await start();
    await waitFor('the lines written while stopped', () => readRecords(t.outputPath).length >= expectedCount() || undefined, 30_000).catch(
      explainChild(agent, t.outputPath),
    );
    // SIGINT, with lines that arrived just before it.
    for (const x of containers) {
      const { content, bodies: b } = numberedLines(x.c.pod, 61, 5);
      appendFileSync(x.c.logPath, content);
      x.expected.push(...b);
    }
    await waitFor('the last lines', () => readRecords(t.outputPath).length >= expectedCount() || undefined, 30_000).catch(explainChild(agent, t.outputPath));
    const intAt = Date.now();
    expect(await agent.kill('SIGINT')).toBe(0);
    const cp2 = checkpointAtSizes(t, paths);
    expect(cp2, `checkpoint after SIGINT: ${JSON.stringify(readCheckpoint(t))}`).toBeDefined();
    expect(cp2!.files).toHaveLength(3);
    expect(cp2!.writtenAt).toBeGreaterThanOrEqual(intAt);

    // The agent is gone: the output is final.
    const all = readRecords(t.outputPath);
    expect(duplicatesOf(all)).toEqual([]);
    expect(all).toHaveLength(expectedCount());
    for (const x of containers) expect(bodies(all.filter(ofFile(x.c.logPath)))).toEqual(x.expected);
  }, 90_000);

  it('shutdown_timeout bounds the exit when the output cannot accept (a FIFO nobody reads); the checkpoint stays behind what was not written', async () => {
    const SHUTDOWN_MS = 2000;
    const { t, start, base } = await childSetup({ shutdownTimeout: `${SHUTDOWN_MS}ms` });
    const made = spawnSync('mkfifo', [t.outputPath]);
    expect(made.status, made.stderr?.toString()).toBe(0);
    // This test holds a read end, so that the bytes the agent did write stay in the pipe to be
    // checked after it exits; it reads nothing until then, so the pipe (64 KiB) fills and writes block.
    const reader = openSync(t.outputPath, constants.O_RDONLY | constants.O_NONBLOCK);
    let readerOpen = true;
    try {
      const containers = ['fifo-a', 'fifo-b'].map((pod) => {
        const first = numberedLines(pod, 1, 20);
        const c = t.container({ pod, content: first.content });
        return { c, expected: first.bodies };
      });
      const paths = containers.map((x) => x.c.logPath);
      let agent = await start();
      // While the pipe has room the output accepts: the checkpoint follows.
      await waitFor('the first lines acknowledged', () => checkpointAtSizes(t, paths), 30_000).catch(explainChild(agent, t.outputPath));

      // Far more than the pipe holds.
      for (const x of containers) {
        const more = numberedLines(x.c.pod, 21, 1500, 200);
        appendFileSync(x.c.logPath, more.content);
        x.expected.push(...more.bodies);
      }
      await waitFor(
        'reading paused on unacknowledged bytes',
        async () => ((await scrapeMetric(base, 'telemetry_agent_source_unacked_bytes', { source: SOURCE })) ?? 0) >= 128 * 1024 || undefined,
        30_000,
      ).catch(explainChild(agent, t.outputPath));

      const termAt = performance.now();
      agent.proc!.kill('SIGTERM');
      const code = await Promise.race([agent.exited(), sleep(SHUTDOWN_MS + 15_000).then(() => 'still running' as const)]);
      const elapsed = Math.round(performance.now() - termAt);
      console.log(`SIGTERM with a blocked output (shutdown_timeout ${SHUTDOWN_MS} ms): ${code} after ${elapsed} ms`);
      if (code === 'still running') await agent.kill('SIGKILL');
      expect.soft(code, `exit after SIGTERM; agent stderr:\n${agent.stderr.slice(-2000)}`).toBe(0);
      expect.soft(elapsed).toBeLessThan(SHUTDOWN_MS + 5000);

      // What reached the pipe, i.e. what the output did write.
      const chunks: Buffer[] = [];
      const buf = Buffer.alloc(64 * 1024);
      for (;;) {
        let n: number;
        try {
          n = readSync(reader, buf, 0, buf.length, null);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
          throw err;
        }
        if (n === 0) break;
        chunks.push(Buffer.from(buf.subarray(0, n)));
      }
      closeSync(reader);
      readerOpen = false;
      const piped = Buffer.concat(chunks).toString('utf8').split('\n');
      piped.pop(); // a batch cut off by the full pipe
      const written = new Set(piped.map((l) => (JSON.parse(l) as OutRecord).body));
      expect(written.size).toBeGreaterThan(0);
      expect(written.size).toBeLessThan(containers.reduce((n, x) => n + x.expected.length, 0));

      // Every line before a file's checkpoint was written; the offset is a line boundary.
      const cp = readCheckpoint(t);
      expect(cp).toBeDefined();
      for (const x of containers) {
        const entry = cp!.files.find((f) => f.path === x.c.logPath);
        expect(entry, x.c.logPath).toBeDefined();
        const text = readFileSync(x.c.logPath, 'latin1');
        expect(entry!.offset === 0 || text[entry!.offset - 1] === '\n').toBe(true);
        const before = text.slice(0, entry!.offset);
        // Logical lines whose F line lies before the offset (a P chunk alone is not a record).
        const done = before.split('\n').filter((l) => l.split(' ')[2] === 'F').length;
        const notWritten = x.expected.slice(0, done).filter((b) => !written.has(b));
        expect(notWritten, `${x.c.pod}: checkpoint at ${entry!.offset} of ${text.length} bytes`).toEqual([]);
        expect(entry!.offset).toBeLessThan(text.length);
      }

      // Restart with an output that accepts: every line arrives (what the pipe lost with the
      // process was never acknowledged, so it is read again).
      rmSync(t.outputPath);
      agent = await start();
      const total = containers.reduce((n, x) => n + x.expected.length, 0);
      const missing = () => {
        const got = new Set([...written, ...bodies(readRecords(t.outputPath))]);
        return containers.flatMap((x) => x.expected.filter((b) => !got.has(b)));
      };
      await waitFor('every line, from the pipe or after the restart', () => missing().length === 0 || undefined, 60_000).catch((err: Error) =>
        explainChild(agent, t.outputPath)(new Error(`${err.message}: ${missing().length} of ${total} missing, e.g. ${missing().slice(0, 3).join(' | ')}`)),
      );
      expect(await agent.kill('SIGTERM')).toBe(0);
      const after = readRecords(t.outputPath);
      expect(duplicatesOf(after)).toEqual([]);
      for (const x of containers) {
        const got = bodies(after.filter(ofFile(x.c.logPath)));
        // The restart resumes at the checkpoint and goes on in order to the end.
        expect(got).toEqual(x.expected.slice(x.expected.length - got.length));
      }
    } finally {
      if (readerOpen) closeSync(reader);
    }
  }, 120_000);
});
