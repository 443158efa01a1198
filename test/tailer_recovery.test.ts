import { createHash } from 'node:crypto';
import {
  appendFileSync,
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CheckpointStore, type FileCheckpoint } from '../agent/sources/container_logs/checkpoint_store.ts';
import { fingerprint, tailAt } from '../agent/sources/container_logs/file_identity.ts';
import { FolderListings } from '../agent/sources/container_logs/folder_listing.ts';
import { AgentHarness, NodeTree, SOURCE, criLine, criLines, type ConfigValue, type ContainerLog, type OutRecord } from './helpers/agent_harness.ts';

/**
 * What kubelet made while the agent was down, or between two of its scans, and whose symlink was
 * gone before the agent looked (the pod deleted): a restart's `<n+1>.log`, its rotated copies, a new
 * file at a rotated file's path. Each test builds the files and the checkpoint on disk first, then
 * starts the agent (or, for the running agent, changes the files in one synchronous turn, so no scan
 * can fall in between): nothing depends on timing.
 */

/** Runs once, just before the agent next lists `dir` (the folder listing of a scan or a recovery). */
const listing = vi.hoisted(() => ({ dir: '', before: undefined as (() => void) | undefined }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const readdirSync = ((path: string, ...rest: unknown[]) => {
    if (listing.before && path === listing.dir) {
      const before = listing.before;
      listing.before = undefined;
      before();
    }
    return (fs.readdirSync as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof fs.readdirSync;
  return { ...fs, readdirSync, default: { ...fs, readdirSync } };
});

const harnesses: AgentHarness[] = [];
const trees: NodeTree[] = [];
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.stop()));
  for (const t of trees.splice(0)) t.remove();
});

function tree(): NodeTree {
  const t = new NodeTree('kta-recovery-');
  trees.push(t);
  return t;
}
function harness(t: NodeTree, source: Record<string, ConfigValue> = {}): AgentHarness {
  const h = new AgentHarness({ tree: t, source });
  harnesses.push(h);
  return h;
}

const HOUR = 3600_000;
const bodies = (records: OutRecord[]) => records.map((r) => r.body);
const ofFile = (path: string) => (r: OutRecord) => r.attributes['log.file.path'] === path;
function duplicatesOf(records: OutRecord[]): unknown[] {
  const seen = new Set<unknown>();
  const dup: unknown[] = [];
  for (const r of records) {
    if (seen.has(r.body)) dup.push(r.body);
    seen.add(r.body);
  }
  return dup;
}
/** The files the agent said it opened beside the ones the globs named. */
const recoveredPaths = (h: AgentHarness) =>
  h.logs.filter((l) => l.includes('reading it to its end from byte')).map((l) => /: (\/\S+) /.exec(l)?.[1]);

/** A file with CRI lines and, when given, an mtime (how long before now it was last written). */
function put(path: string, lines: readonly string[], age?: number): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, criLines(lines));
  if (age !== undefined) ageFile(path, age);
  return path;
}
function ageFile(path: string, age: number): void {
  const t = (Date.now() - age) / 1000;
  utimesSync(path, t, t);
}

/** The checkpoint entry the agent writes for `path` read and accepted up to `offset`. */
function entryFor(path: string, offset: number): FileCheckpoint {
  const fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    const entry: FileCheckpoint = { dev: st.dev, ino: st.ino, fingerprint: fingerprint(fd), offset, path };
    if (offset > 0) entry.tail = tailAt(fd, offset);
    return entry;
  } finally {
    closeSync(fd);
  }
}
function saveCheckpoint(t: NodeTree, entries: FileCheckpoint[], writtenAt = Date.now()): void {
  new CheckpointStore(t.dataDir, SOURCE).save(entries, true, writtenAt);
}

/** kubelet's restart: `<n>.log` beside the old one, and a new symlink with the new container id. */
function restart(t: NodeTree, c: ContainerLog, n: number, lines: readonly string[]): ContainerLog {
  const id = createHash('sha256').update(`${c.id}/restart-${n}`).digest('hex');
  const logPath = put(join(dirname(c.logPath), `${n}.log`), lines);
  const linkPath = join(t.containersDir, `${c.pod}_${c.namespace}_${c.container}-${id}.log`);
  symlinkSync(logPath, linkPath);
  return { ...c, id, logPath, linkPath };
}

describe('container_logs after a restart: files a checkpointed file\'s folder gained while the agent was down', () => {
  it('a restart the agent never saw, then the pod deleted: 0.log resumes at its checkpoint, then 1.log is read whole from byte 0, restart_count 1, though last written an hour before the checkpoint', async () => {
    const t = tree();
    const c0 = t.container({ namespace: 'ns3', pod: 'app-7', container: 'main', content: criLines(['r0-1', 'r0-2']) });
    const entry = entryFor(c0.logPath, criLines(['r0-1']).length);
    appendFileSync(c0.logPath, criLine('r0-3'));
    // The restart the agent was behind on (its 1.log last written an hour before the checkpoint
    // that followed), then the crash, then the pod deleted while the agent was down.
    const c1 = restart(t, c0, 1, ['r1-1', 'r1-2', 'r1-3']);
    ageFile(c1.logPath, HOUR);
    saveCheckpoint(t, [entry]);
    rmSync(c0.linkPath);
    rmSync(c1.linkPath);

    const h = harness(t);
    await h.start();
    expect(recoveredPaths(h)).toEqual([c0.logPath, c1.logPath]);
    expect(h.logs.some((l) => l.includes(`${c1.logPath} is restart 1 of the container, which the checkpoint does not know;`))).toBe(true);
    const all = await h.waitForBody('r1-3');
    // In kubelet's order: what was left of 0.log, then 1.log.
    expect(bodies(all)).toEqual(['r0-2', 'r0-3', 'r1-1', 'r1-2', 'r1-3']);
    const identity = { 'k8s.namespace.name': 'ns3', 'k8s.pod.name': 'app-7', 'k8s.pod.uid': c0.uid, 'k8s.container.name': 'main' };
    for (const r of all.filter(ofFile(c0.logPath))) expect(r.resource).toMatchObject({ ...identity, 'k8s.container.restart_count': '0' });
    for (const r of all.filter(ofFile(c1.logPath))) {
      expect(r.resource).toMatchObject({ ...identity, 'k8s.container.restart_count': '1' });
      // The container id is only in the symlink's name, which is gone.
      expect(r.resource['container.id']).toBeUndefined();
    }
  });

  it('restarts that were rotated themselves, and a restart after them: 9.log\'s rest, then 10.log\'s rotated copies oldest first, 10.log, 11.log\'s, 11.log (by number: 10 after 9), every byte once', async () => {
    const t = tree();
    const dir = join(t.podsDir, 'ns1_crashy_0f1e2d3c-4b5a-4697-8877-0000000000c9', 'main');
    const nine = put(join(dir, '9.log'), ['n9-1', 'n9-2']);
    saveCheckpoint(t, [entryFor(nine, criLines(['n9-1']).length)]);
    put(join(dir, '10.log.20261121-100000'), ['n10-1'], 3 * HOUR);
    put(join(dir, '10.log.20261121-110000'), ['n10-2'], 2 * HOUR);
    put(join(dir, '10.log'), ['n10-3'], 2 * HOUR);
    put(join(dir, '11.log.20261121-120000'), ['n11-1'], HOUR);
    put(join(dir, '11.log'), ['n11-2', 'n11-3']);

    const h = harness(t);
    await h.start();
    const all = await h.waitForBody('n11-3');
    expect(bodies(all)).toEqual(['n9-2', 'n10-1', 'n10-2', 'n10-3', 'n11-1', 'n11-2', 'n11-3']);
    expect(all.map((r) => r.resource['k8s.container.restart_count'])).toEqual(['9', '10', '10', '10', '11', '11', '11']);
  });

  it('the checkpointed file rotated twice and the pod deleted: the newer rotated copy and the new 0.log are read from byte 0 though written before the checkpoint\'s time minus 5 s; an older rotated copy is history', async () => {
    const t = tree();
    const c = t.container({ pod: 'rotating', content: criLines(['a-1', 'a-2']) });
    const entry = entryFor(c.logPath, criLines(['a-1']).length);
    put(`${c.logPath}.20261121-090000`, ['old-1'], 3 * HOUR); // read and forgotten before the checkpoint
    renameSync(c.logPath, `${c.logPath}.20261121-100000`);
    appendFileSync(`${c.logPath}.20261121-100000`, criLine('a-3'));
    // The agent never saw these two, though they were written before its last checkpoint.
    put(`${c.logPath}.20261121-110000`, ['b-1', 'b-2'], 2 * HOUR);
    put(c.logPath, ['c-1'], HOUR);
    saveCheckpoint(t, [entry]);
    rmSync(c.linkPath);

    const h = harness(t);
    await h.start();
    const all = await h.waitForBody('c-1');
    expect(bodies(all)).toEqual(['a-2', 'a-3', 'b-1', 'b-2', 'c-1']);
    expect(recoveredPaths(h)).toEqual([`${c.logPath}.20261121-100000`, `${c.logPath}.20261121-110000`, c.logPath]);
    expect(h.logs.some((l) => l.includes(`${c.logPath} was made after the agent last saw 0.log;`))).toBe(true);
  });

  it('a restart the checkpoint does not know whose symlink is still there: its rotated copies, written before the checkpoint, are read from byte 0 before it', async () => {
    const t = tree();
    const c0 = t.container({ pod: 'linked', content: criLines(['l0-1']) });
    saveCheckpoint(t, [entryFor(c0.logPath, criLines(['l0-1']).length)]);
    const c1 = restart(t, c0, 1, ['l1-3']);
    put(`${c1.logPath}.20261121-100000`, ['l1-1', 'l1-2'], HOUR);

    const h = harness(t);
    await h.start();
    const all = await h.waitForBody('l1-3');
    expect(bodies(all)).toEqual(['l1-1', 'l1-2', 'l1-3']);
    // The live file has its symlink: its container id is known, and its rotated copy shares it.
    expect(all.every((r) => r.resource['container.id'] === c1.id && r.resource['k8s.container.restart_count'] === '1')).toBe(true);
  });

  it('history stays unread: a lower restart count than the checkpointed one, a rotated copy older than it, and pods the checkpoint never knew', async () => {
    const t = tree();
    const dir = join(t.podsDir, 'ns1_hist_0f1e2d3c-4b5a-4697-8877-0000000000d1', 'main');
    put(join(dir, '0.log'), ['h0-1'], 2 * HOUR);
    put(join(dir, '1.log.20261121-100000'), ['h1-old'], 2 * HOUR);
    const one = put(join(dir, '1.log'), ['h1-1']);
    saveCheckpoint(t, [entryFor(one, criLines(['h1-1']).length)]);
    appendFileSync(one, criLine('h1-2'));
    // A pod created, read and deleted long ago (or never read): no entry names its folder.
    const never = join(t.podsDir, 'ns1_gone_0f1e2d3c-4b5a-4697-8877-0000000000d2', 'main');
    put(join(never, '0.log'), ['g0-1']);
    put(join(never, '1.log'), ['g1-1']);
    const live = t.container({ pod: 'live', content: criLines(['live-1']) });

    const h = harness(t);
    await h.start();
    // Recovery runs inside start(): these are all the files it opened beside the glob's.
    expect(recoveredPaths(h)).toEqual([one]);
    const all = await h.waitFor('h1-2 and live-1', () => {
      const got = h.records();
      return got.some((r) => r.body === 'h1-2') && got.some((r) => r.body === 'live-1') ? got : undefined;
    });
    expect(bodies(all).sort()).toEqual(['h1-2', 'live-1']);
    expect(all.find(ofFile(live.logPath))).toBeDefined();
  });

  it('a rotation between the first scan\'s glob and the folder listing, the checkpointed file still linked: the new 0.log is left to the next scan, which reads it after the old one, and the old one is finished', async () => {
    const t = tree();
    const c = t.container({ pod: 'racy', content: criLines(['a-head']) });
    saveCheckpoint(t, [entryFor(c.logPath, criLines(['a-head']).length)]);
    // Several read chunks (64 KiB) left: read beside the old one, the new file would cut in.
    const rest = Array.from({ length: 3000 }, (_, i) => `a-${String(i).padStart(4, '0')} ${'x'.repeat(60)}`);
    appendFileSync(c.logPath, criLines(rest));
    Object.assign(listing, {
      dir: dirname(c.logPath),
      before: () => {
        renameSync(c.logPath, `${c.logPath}.20261121-100000`);
        put(c.logPath, ['b-1']);
      },
    });

    const h = harness(t);
    await h.start();
    expect(listing.before).toBeUndefined(); // the rotation happened where it should
    const all = await h.waitForBody('b-1');
    expect(bodies(all)).toEqual([...rest, 'b-1']);
    await h.waitFor('the old file finished (rotated, drained, idle for rotate_wait) and let go', async () => (await h.metric('telemetry_agent_files_tailed', { source: SOURCE })) === 1 || undefined);
  });

  it('kubelet\'s layout and exclude still apply: a restart file or rotated copy that is a symlink, an excluded restart, and a container folder now a symlink are not read', async () => {
    const t = tree();
    const shadow = join(t.root, 'etc', 'shadow');
    mkdirSync(dirname(shadow), { recursive: true });
    writeFileSync(shadow, criLines(['root:$6$shadowhash:19000:0:99999:7:::']));
    const c = t.container({ pod: 'guarded', container: 'main', content: criLines(['g0-1']) });
    const dir = dirname(c.logPath);
    const entries = [entryFor(c.logPath, criLines(['g0-1']).length)];
    appendFileSync(c.logPath, criLine('g0-2'));
    symlinkSync(shadow, join(dir, '1.log'));
    put(join(dir, '2.log'), ['g2-excluded']);
    symlinkSync(shadow, join(dir, '3.log.20261121-100000'));
    put(join(dir, '3.log'), ['g3-1']);
    rmSync(c.linkPath);
    // Another pod's container folder swapped for a link to a folder outside the layout.
    const m = t.container({ pod: 'moved', content: criLines(['m0-1']) });
    entries.push(entryFor(m.logPath, criLines(['m0-1']).length));
    appendFileSync(m.logPath, criLine('m0-2'));
    put(join(dirname(m.logPath), '1.log'), ['m1-1']);
    const stash = join(t.root, 'stash', 'main');
    mkdirSync(dirname(stash), { recursive: true });
    renameSync(dirname(m.logPath), stash);
    symlinkSync(stash, dirname(m.logPath));
    rmSync(m.linkPath);
    saveCheckpoint(t, entries);

    const h = harness(t, { exclude: [`${t.podsDir}/*_guarded_*/main/2.log`] });
    await h.start();
    expect(recoveredPaths(h)).toEqual([c.logPath, join(dir, '3.log')]);
    const all = await h.waitForBody('g3-1');
    expect(bodies(all)).toEqual(['g0-2', 'g3-1']);
    expect(JSON.stringify(all)).not.toContain('shadowhash');
  });
});

describe('container_logs while running: files made and unlinked between two scans', () => {
  it('a restart, and a rotation of another container, made between two scans of a pod then deleted: 1.log and the new 0.log are read after the files the agent tracked', async () => {
    const t = tree();
    const uid = '0f1e2d3c-4b5a-4697-8877-0000000000e1';
    const main = t.container({ pod: 'busy', uid, container: 'main', content: criLines(['m0-1']) });
    const side = t.container({ pod: 'busy', uid, container: 'side', content: criLines(['s0-1']) });
    const h = harness(t);
    await h.start();
    await h.waitForLines(2);

    // One synchronous turn: the agent (in this process) runs no scan in between.
    appendFileSync(main.logPath, criLine('m0-2'));
    const main1 = restart(t, main, 1, ['m1-1', 'm1-2']);
    const rotated = `${side.logPath}.20261121-100000`;
    renameSync(side.logPath, rotated);
    appendFileSync(rotated, criLine('s0-2'));
    put(side.logPath, ['s1-1']);
    for (const link of [main.linkPath, main1.linkPath, side.linkPath]) rmSync(link);

    const all = await h.waitFor('every line', () => {
      const got = bodies(h.records());
      return ['m0-2', 'm1-2', 's0-2', 's1-1'].every((b) => got.includes(b)) ? h.records() : undefined;
    });
    expect(duplicatesOf(all)).toEqual([]);
    expect(bodies(all.filter((r) => r.resource['k8s.container.name'] === 'main'))).toEqual(['m0-1', 'm0-2', 'm1-1', 'm1-2']);
    expect(bodies(all.filter((r) => r.resource['k8s.container.name'] === 'side'))).toEqual(['s0-1', 's0-2', 's1-1']);
    expect(all.filter(ofFile(main1.logPath)).every((r) => r.resource['k8s.container.restart_count'] === '1')).toBe(true);
  });

  it('a file found that way whose symlink kubelet makes just after is tailed as live: not finished when idle, so nothing is read twice', async () => {
    const t = tree();
    const c0 = t.container({ pod: 'gc', content: criLines(['g0-1']) });
    const h = harness(t);
    await h.start();
    await h.waitForBody('g0-1');

    // Instance 0's symlink removed (container GC) while 1.log is made, its symlink not yet.
    const one = put(join(dirname(c0.logPath), '1.log'), ['g1-1']);
    rmSync(c0.linkPath);
    await h.waitForBody('g1-1');
    const link = join(t.containersDir, `gc_${c0.namespace}_${c0.container}-${createHash('sha256').update('gc-1').digest('hex')}.log`);
    symlinkSync(one, link);
    await h.waitFor('the file tailed as live', () => h.logs.some((l) => l.includes(`${one} has a symlink now`)) || undefined);
    // What must not happen takes rotate_wait (500ms) of idleness, then a scan: give it three times that.
    await new Promise((r) => setTimeout(r, 1500));
    appendFileSync(one, criLine('g1-2'));
    const all = await h.waitForBody('g1-2');
    expect(bodies(all)).toEqual(['g0-1', 'g1-1', 'g1-2']);
  });
});

describe('FolderListings: a container folder in kubelet\'s order', () => {
  it('instances by restart count (10 after 9), each instance\'s rotated copies oldest first then its live file; links (12.log is one), .gz and 007.log left out; docker\'s .1 is its newest copy', () => {
    const t = tree();
    const dir = join(t.podsDir, 'ns_p_0f1e2d3c-4b5a-4697-8877-0000000000f1', 'c');
    for (const name of ['8.log', '9.log', '10.log.20261121-110000', '10.log.20261121-100000', '10.log', '10.log.20261121-090000.gz', '11.log.20261121-100000', '007.log']) put(join(dir, name), ['x']);
    symlinkSync('/etc/hostname', join(dir, '12.log'));
    symlinkSync('/etc/hostname', join(dir, '9.log.20261121-100000'));
    const listings = new FolderListings();
    const found = listings.instancesFrom(dir, 9).map((i) => [i.restart, i.files.map((f) => f.path.slice(dir.length + 1))]);
    expect(found).toEqual([
      [9, ['9.log']],
      [10, ['10.log.20261121-100000', '10.log.20261121-110000', '10.log']],
      [11, ['11.log.20261121-100000']],
    ]);
    expect(listings.listings).toBe(1);

    const id = 'a'.repeat(64);
    const docker = join(t.root, 'docker', id);
    for (const name of [`${id}-json.log`, `${id}-json.log.1`, `${id}-json.log.2`, `${id}-json.log.10`]) put(join(docker, name), ['x']);
    expect(listings.instance(docker, `${id}-json.log`).map((f) => f.path.slice(docker.length + 1))).toEqual([
      `${id}-json.log.10`,
      `${id}-json.log.2`,
      `${id}-json.log.1`,
      `${id}-json.log`,
    ]);
  });
});
