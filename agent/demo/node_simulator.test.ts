import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { basename, isAbsolute, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isParseFailure } from '../../parsers/container_line.ts';
import { parseCriLine } from '../../parsers/cri.ts';
import { NodeSimulator, formatCriTimestamp, generateCriCorpus, logfmt, symlinkName } from './node_simulator.ts';

// Every line goes through the project's parser (parsers/cri.ts) and a local check of
// log-formats.md §1.1 on the raw bytes (split on the first three spaces, stream stdout|stderr,
// first tag P|F, RFC 3339 time), which also keeps contents as bytes for exact chunk sizes.
const TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
interface CriLine {
  time: string;
  stream: 'stdout' | 'stderr';
  partial: boolean;
  content: Buffer;
}
function parseLine(line: Buffer): CriLine {
  const s1 = line.indexOf(0x20);
  const s2 = line.indexOf(0x20, s1 + 1);
  const s3 = line.indexOf(0x20, s2 + 1);
  if (s1 < 0 || s2 < 0 || s3 < 0) throw new Error(`not a CRI line: ${line.toString().slice(0, 80)}`);
  const time = line.subarray(0, s1).toString();
  const stream = line.subarray(s1 + 1, s2).toString();
  const tag = line.subarray(s2 + 1, s3).toString().split(':')[0];
  if (!TIME_RE.test(time)) throw new Error(`bad time ${time}`);
  if (stream !== 'stdout' && stream !== 'stderr') throw new Error(`bad stream ${stream}`);
  if (tag !== 'P' && tag !== 'F') throw new Error(`bad tag ${tag}`);
  const parsed = parseCriLine(line.toString('utf8'));
  if (isParseFailure(parsed)) throw new Error(`parsers/cri.ts: ${parsed.error}`);
  if (parsed.stream !== stream || parsed.partial !== (tag === 'P')) throw new Error('parsers/cri.ts disagrees');
  return { time, stream, partial: tag === 'P', content: line.subarray(s3 + 1) };
}

/** Physical lines of a file; every line must end in LF. */
function readLines(path: string): Buffer[] {
  const data = path.endsWith('.gz') ? gunzipSync(fs.readFileSync(path)) : fs.readFileSync(path);
  if (data.length === 0) return [];
  expect(data[data.length - 1]).toBe(0x0a);
  const out: Buffer[] = [];
  let start = 0;
  for (let i = data.indexOf(0x0a); i >= 0; i = data.indexOf(0x0a, start)) {
    out.push(data.subarray(start, i));
    start = i + 1;
  }
  return out;
}

/** P/F join per stream; pending partials at the end are returned as incomplete records. */
function join_(lines: Buffer[]): { records: { stream: string; body: string; time: string; incomplete?: boolean }[]; parsed: CriLine[] } {
  const pending = new Map<string, { time: string; parts: Buffer[] }>();
  const records: { stream: string; body: string; time: string; incomplete?: boolean }[] = [];
  const parsed = lines.map(parseLine);
  for (const l of parsed) {
    const p = pending.get(l.stream) ?? { time: l.time, parts: [] };
    p.parts.push(l.content);
    if (l.partial) pending.set(l.stream, p);
    else {
      pending.delete(l.stream);
      records.push({ stream: l.stream, time: p.time, body: Buffer.concat(p.parts).toString() });
    }
  }
  for (const [stream, p] of pending) records.push({ stream, time: p.time, body: Buffer.concat(p.parts).toString(), incomplete: true });
  return { records, parsed };
}

function treeHash(root: string): string {
  const h = createHash('sha256');
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(dir, e.name);
      h.update(p.slice(root.length) + '\0');
      if (e.isSymbolicLink()) h.update(fs.readlinkSync(p).slice(root.length));
      else if (e.isDirectory()) walk(p);
      else h.update(fs.readFileSync(p));
    }
  };
  walk(root);
  return h.digest('hex');
}

let root: string;
let sim: NodeSimulator | undefined;
beforeEach(() => {
  root = fs.mkdtempSync(join(tmpdir(), 'nodesim-'));
});
afterEach(() => {
  sim?.stop();
  sim = undefined;
  fs.rmSync(root, { recursive: true, force: true });
});

describe('NodeSimulator layout', () => {
  it('writes the pod directory, N.log files and kubelet symlinks with absolute targets', () => {
    sim = new NodeSimulator({ root, seed: 7 });
    const pod = sim.createPod({ namespace: 'shop', name: 'web-7d9f8c6b5d-x2k9p', containers: ['nginx', 'app'] });
    expect(pod.uid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(basename(pod.dir)).toBe(`shop_web-7d9f8c6b5d-x2k9p_${pod.uid}`);
    expect(pod.dir).toBe(join(root, 'var/log/pods', basename(pod.dir)));

    const links = fs.readdirSync(join(root, 'var/log/containers')).sort();
    expect(links).toHaveLength(2);
    for (const c of pod.containers) {
      expect(c.logPath).toBe(join(pod.dir, c.container, '0.log'));
      expect(fs.statSync(c.logPath).isFile()).toBe(true);
      expect(c.containerId).toMatch(/^[0-9a-f]{64}$/);
      const name = basename(c.symlinkPath);
      expect(name).toBe(`web-7d9f8c6b5d-x2k9p_shop_${c.container}-${c.containerId}.log`);
      expect(links).toContain(name);
      // Parse the name the way log-formats.md §2.1 says: id after the last '-', the rest on '_'.
      const stem = name.slice(0, -'.log'.length);
      const [podName, ns, container] = stem.slice(0, stem.lastIndexOf('-')).split('_');
      expect([podName, ns, container]).toEqual(['web-7d9f8c6b5d-x2k9p', 'shop', c.container]);
      const target = fs.readlinkSync(c.symlinkPath);
      expect(isAbsolute(target)).toBe(true);
      expect(target).toBe(c.logPath);
    }
  });

  it('cuts symlink names to 255 bytes including .log, like kubelet', () => {
    const long = 'a'.repeat(200);
    const name = symlinkName('ns', long, 'c', 'f'.repeat(64));
    expect(Buffer.byteLength(name)).toBe(255);
    expect(name.endsWith('.log')).toBe(true);
  });

  it('rejects names that are not Kubernetes names (they could contain _)', () => {
    sim = new NodeSimulator({ root });
    expect(() => sim!.createPod({ namespace: 'a_b', name: 'p', containers: ['c'] })).toThrow();
  });
});

describe('NodeSimulator lines', () => {
  it('writes lines that parse by the CRI grammar and join back to what was written', () => {
    sim = new NodeSimulator({ root, seed: 3 });
    const { containers } = sim.createPod({ namespace: 'default', name: 'app-1', containers: ['app'] });
    const c = containers[0]!;
    sim.writeLine(c, 'hello world');
    sim.writeLine(c, '');
    sim.writeJson(c, { level: 'info', msg: 'json line', n: 1 });
    sim.writeLogfmt(c, { level: 'warn', msg: 'two words', n: 2 }, 'stderr');
    const javaLines = sim.writeStackTrace(c, 'java');
    const pyLines = sim.writeStackTrace(c, 'python');
    sim.writeLongLine(c, 40_000);
    sim.writeFragmented(c, 'a short line written in pieces', 4);
    sim.writeLine(c, 'héllo ✓ unicode');
    sim.writeUnterminated(c, 'exiting without newli');

    const { records, parsed } = join_(readLines(c.logPath));
    for (const l of parsed) {
      // containerd style: UTC, fraction zeros trimmed.
      expect(l.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])?Z$/);
    }
    const bodies = records.map((r) => r.body);
    expect(bodies[0]).toBe('hello world');
    expect(bodies[1]).toBe('');
    expect(JSON.parse(bodies[2]!)).toEqual({ level: 'info', msg: 'json line', n: 1 });
    expect(bodies[3]).toBe('level=warn msg="two words" n=2');
    expect(records[3]!.stream).toBe('stderr');
    expect(javaLines).toBeGreaterThan(5);
    expect(bodies[4]).toMatch(/ERROR .*Checkout failed/);
    expect(bodies[5]).toMatch(/^java\.lang\.IllegalStateException/);
    expect(bodies[6]).toMatch(/^\tat com\.example/);
    expect(bodies[4 + javaLines]).toBe('Traceback (most recent call last):');
    expect(bodies[4 + javaLines + pyLines - 1]).toMatch(/^ValueError: /);
    const long = bodies[4 + javaLines + pyLines]!;
    expect(Buffer.byteLength(long)).toBe(40_000);
    expect(JSON.parse(long).msg).toBe('response dump');
    expect(bodies[5 + javaLines + pyLines]).toBe('a short line written in pieces');
    expect(bodies[6 + javaLines + pyLines]).toBe('héllo ✓ unicode');
    const last = records[records.length - 1]!;
    expect(last).toMatchObject({ body: 'exiting without newli', incomplete: true });
    expect(records).toHaveLength(sim.stats().records);
    expect(parsed).toHaveLength(sim.stats().physicalLines);
  });

  it('splits long lines into P chunks of exactly 16384 content bytes and a last F', () => {
    sim = new NodeSimulator({ root, seed: 4 });
    const c = sim.createPod({ namespace: 'default', name: 'big', containers: ['app'] }).containers[0]!;
    expect(sim.writeLongLine(c, 16384)).toBe(1); // exactly the limit: one F
    expect(sim.writeLongLine(c, 16385)).toBe(2);
    expect(sim.writeLongLine(c, 20 * 1024)).toBe(2);
    expect(sim.writeLongLine(c, 3 * 16384)).toBe(3); // 16384 + 16384 + 16384 (F)
    const parsed = readLines(c.logPath).map(parseLine);
    expect(parsed.map((l) => `${l.partial ? 'P' : 'F'}${l.content.length}`)).toEqual([
      'F16384',
      'P16384',
      'F1',
      'P16384',
      'F4096',
      'P16384',
      'P16384',
      'F16384',
    ]);
  });

  it('splits by bytes, not characters', () => {
    sim = new NodeSimulator({ root, seed: 4 });
    const c = sim.createPod({ namespace: 'default', name: 'utf8', containers: ['app'] }).containers[0]!;
    const text = 'é'.repeat(10_000); // 20000 bytes
    sim.writeLine(c, text);
    const parsed = readLines(c.logPath).map(parseLine);
    expect(parsed.map((l) => l.content.length)).toEqual([16384, 20000 - 16384]);
    expect(Buffer.concat(parsed.map((l) => l.content)).toString()).toBe(text);
  });

  it('writes CRI-O style timestamps and 8 KiB chunks for the crio runtime', () => {
    sim = new NodeSimulator({ root, seed: 5, runtime: 'crio' });
    const c = sim.createPod({ namespace: 'default', name: 'crio', containers: ['app'] }).containers[0]!;
    sim.writeLongLine(c, 20_000);
    const parsed = readLines(c.logPath).map(parseLine);
    expect(parsed.map((l) => l.content.length)).toEqual([8192, 8192, 20_000 - 16384]);
    for (const l of parsed) expect(l.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}\+00:00$/);
  });

  it('refuses LF inside a line and writes to dead containers', () => {
    sim = new NodeSimulator({ root });
    const c = sim.createPod({ namespace: 'default', name: 'x', containers: ['app'] }).containers[0]!;
    expect(() => sim!.writeLine(c, 'a\nb')).toThrow(/LF/);
    expect(sim.writeText(c, 'a\nb')).toBe(2);
    sim.restartContainer(c);
    expect(() => sim!.writeLine(c, 'late')).toThrow(/not running/);
  });
});

describe('formatting helpers', () => {
  it('formats containerd timestamps with trimmed fractions', () => {
    const base = BigInt(Date.parse('2026-11-21T10:00:00Z')) * 1_000_000n;
    expect(formatCriTimestamp(base)).toBe('2026-11-21T10:00:00Z');
    expect(formatCriTimestamp(base + 100_000_000n)).toBe('2026-11-21T10:00:00.1Z');
    expect(formatCriTimestamp(base + 123_456_789n)).toBe('2026-11-21T10:00:00.123456789Z');
    expect(formatCriTimestamp(base + 1_000n, 'crio')).toBe('2026-11-21T10:00:00.000001000+00:00');
  });
  it('quotes logfmt values with spaces', () => {
    expect(logfmt({ a: 1, b: 'x y', c: '', d: true })).toBe('a=1 b="x y" c="" d=true');
  });
});

describe('rotation, restart, deletion', () => {
  it('rotates kubelet-style and keeps at most maxFiles rotated files', () => {
    sim = new NodeSimulator({ root, seed: 9, maxFiles: 2 });
    const c = sim.createPod({ namespace: 'default', name: 'busy', containers: ['app'] }).containers[0]!;
    const dir = join(sim.pod('default', 'busy')!.dir, 'app');
    const rotated: string[] = [];
    for (let i = 0; i < 4; i++) {
      sim.writeLine(c, `before rotation ${i}`);
      const ino = fs.statSync(c.logPath).ino;
      const target = sim.rotate(c, { writeBeforeReopen: [`late ${i}`] });
      expect(basename(target)).toMatch(/^0\.log\.\d{8}-\d{6}$/);
      expect(fs.statSync(target).ino).toBe(ino); // renamed, not copied
      expect(fs.statSync(c.logPath).size).toBe(0); // new empty live file
      expect(join_(readLines(target)).records.map((r) => r.body)).toEqual([`before rotation ${i}`, `late ${i}`]);
      rotated.push(basename(target));
    }
    const files = fs.readdirSync(dir).sort();
    expect(files).toEqual(['0.log', ...rotated.slice(-2)].sort());
    expect(new Set(rotated).size).toBe(4); // names never collide
    sim.writeLine(c, 'after');
    expect(join_(readLines(c.logPath)).records.map((r) => r.body)).toEqual(['after']);
  });

  it('gzips older rotated files when compress is on, keeping the newest plain', () => {
    sim = new NodeSimulator({ root, seed: 9, maxFiles: 3, compress: true });
    const c = sim.createPod({ namespace: 'default', name: 'gz', containers: ['app'] }).containers[0]!;
    for (let i = 0; i < 3; i++) {
      sim.writeLine(c, `line ${i}`);
      sim.rotate(c);
    }
    const files = fs.readdirSync(join(sim.pod('default', 'gz')!.dir, 'app')).sort();
    expect(files.filter((f) => f.endsWith('.gz'))).toHaveLength(2);
    expect(files.filter((f) => /^0\.log\.\d{8}-\d{6}$/.test(f))).toHaveLength(1);
    const gz = files.find((f) => f.endsWith('.gz'))!;
    expect(join_(readLines(join(sim.pod('default', 'gz')!.dir, 'app', gz))).records[0]!.body).toBe('line 0');
  });

  it('restarts a container into <n+1>.log with a new id and symlink, keeping the previous one', () => {
    sim = new NodeSimulator({ root, seed: 11 });
    const c0 = sim.createPod({ namespace: 'shop', name: 'worker-0', containers: ['worker'] }).containers[0]!;
    sim.writeLine(c0, 'first life');
    const c1 = sim.restartContainer(c0, { exitPartial: 'cut sho' });
    expect(c1.restartCount).toBe(1);
    expect(basename(c1.logPath)).toBe('1.log');
    expect(c1.containerId).not.toBe(c0.containerId);
    expect(c0.running).toBe(false);
    expect(sim.container('shop', 'worker-0', 'worker')).toBe(c1);
    expect(fs.readlinkSync(c1.symlinkPath)).toBe(c1.logPath);
    expect(fs.existsSync(c0.symlinkPath)).toBe(true); // kubelet keeps the previous dead container
    const old = join_(readLines(c0.logPath)).records;
    expect(old.map((r) => [r.body, r.incomplete ?? false])).toEqual([
      ['first life', false],
      ['cut sho', true],
    ]);

    const c2 = sim.restartContainer(c1);
    expect(basename(c2.logPath)).toBe('2.log');
    // Container GC: only the most recent dead instance stays.
    expect(fs.existsSync(c0.symlinkPath)).toBe(false);
    expect(fs.existsSync(c0.logPath)).toBe(false);
    expect(fs.existsSync(c1.symlinkPath)).toBe(true);
    expect(fs.readdirSync(join(root, 'var/log/containers'))).toHaveLength(2);
    expect(sim.stats().restarts).toBe(2);
  });

  it('deletes a pod: symlinks go, the directory only when asked', () => {
    sim = new NodeSimulator({ root, seed: 12 });
    const a = sim.createPod({ namespace: 'batch', name: 'job-a', containers: ['main', 'side'] });
    const b = sim.createPod({ namespace: 'batch', name: 'job-b', containers: ['main'] });
    sim.restartContainer(a.containers[0]!);
    sim.deletePod('batch', 'job-a');
    expect(fs.readdirSync(join(root, 'var/log/containers'))).toEqual([basename(b.containers[0]!.symlinkPath)]);
    expect(fs.existsSync(a.dir)).toBe(true);
    sim.deletePod('batch', 'job-b', { removeDir: true });
    expect(fs.existsSync(b.dir)).toBe(false);
    expect(fs.readdirSync(join(root, 'var/log/containers'))).toEqual([]);
    expect(sim.pod('batch', 'job-a')).toBeUndefined();
  });
});

describe('demo loop', () => {
  it('is deterministic for a seed and mixes everything', () => {
    const run = (dir: string) => {
      const s = new NodeSimulator({ root: dir, seed: 42, maxFiles: 10 });
      for (let i = 0; i < 400; i++) s.demoTick();
      const stats = s.stats();
      s.stop();
      return stats;
    };
    const rootB = fs.mkdtempSync(join(tmpdir(), 'nodesim-'));
    try {
      const a = run(root);
      const b = run(rootB);
      expect(a).toEqual(b);
      // Identical trees, modulo the root prefix.
      expect(treeHash(root)).toBe(treeHash(rootB));
      expect(a.rotations).toBeGreaterThanOrEqual(10); // 2 containers every 75 ticks
      expect(a.restarts).toBe(1); // at tick 300
      expect(a.podsDeleted).toBeGreaterThanOrEqual(1);

      // Every file (live, rotated, dead instances) parses, and records add up.
      let records = 0;
      let partials = 0;
      const walk = (dir: string) => {
        for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
          const p = join(dir, e.name);
          if (e.isDirectory()) walk(p);
          else if (e.isFile()) {
            const j = join_(readLines(p));
            records += j.records.length;
            partials += j.parsed.filter((l) => l.partial).length;
          }
        }
      };
      walk(join(root, 'var/log/pods'));
      expect(partials).toBeGreaterThan(0);
      // Job pods were removed with their files, so the tree holds at most what was written.
      expect(records).toBeLessThanOrEqual(a.records);
      expect(records).toBeGreaterThan(a.records * 0.95);
      const names = fs.readdirSync(join(root, 'var/log/pods'));
      expect(names.some((n) => n.startsWith('kube-system_coredns-'))).toBe(true);
      expect(fs.readdirSync(join(root, 'var/log/pods', names.find((n) => n.startsWith('shop_worker-0_'))!, 'worker')).sort()).toEqual([
        '0.log',
        '1.log',
      ]);
    } finally {
      fs.rmSync(rootB, { recursive: true, force: true });
    }
  });

  it('runs on a timer and stops', async () => {
    sim = new NodeSimulator({ root, seed: 1, clock: 'wall' });
    sim.startDemo({ intervalMs: 10 });
    await new Promise((r) => setTimeout(r, 120));
    sim.stop();
    const n = sim.stats().records;
    expect(n).toBeGreaterThan(20);
    await new Promise((r) => setTimeout(r, 50));
    expect(sim.stats().records).toBe(n);
  });
});

describe('generateCriCorpus', () => {
  it('writes the layout and an exact logical line count', () => {
    const result = generateCriCorpus({ dir: root, files: 6, totalBytes: 3 * 1024 * 1024, seed: 5, longLineEvery: 50 });
    expect(result.files).toBe(6);
    expect(result.paths).toHaveLength(6);
    const links = fs.readdirSync(result.containersDir);
    expect(links).toHaveLength(6);
    for (const l of links) {
      expect(l).toMatch(/^[a-z0-9-]+_[a-z0-9-]+_(app|sidecar)-[0-9a-f]{64}\.log$/);
      expect(result.paths).toContain(fs.readlinkSync(join(result.containersDir, l)));
    }

    let lines = 0;
    let physical = 0;
    let bytes = 0;
    let longLines = 0;
    let interleaved = 0;
    for (const p of result.paths) {
      expect(p).toMatch(/\/var\/log\/pods\/[a-z-]+_[a-z0-9-]+_[0-9a-f-]{36}\/(app|sidecar)\/0\.log$/);
      bytes += fs.statSync(p).size;
      const raw = readLines(p);
      physical += raw.length;
      const { records, parsed } = join_(raw);
      expect(records.every((r) => !r.incomplete)).toBe(true);
      lines += records.length;
      parsed.forEach((l, i) => {
        if (l.partial) {
          expect(l.content.length).toBe(16384);
          if (parsed[i + 1]!.stream === 'stderr') interleaved++;
        }
      });
      for (const r of records) {
        const size = Buffer.byteLength(r.body);
        if (size > 16384) {
          expect(size).toBe(20 * 1024);
          expect(JSON.parse(r.body).msg).toBe('response dump');
          longLines++;
        } else {
          expect(size).toBeGreaterThanOrEqual(150);
          expect(size).toBeLessThanOrEqual(400);
          if (r.body.startsWith('{')) JSON.parse(r.body);
        }
      }
    }
    expect(lines).toBe(result.lines);
    expect(physical).toBe(result.physicalLines);
    expect(bytes).toBe(result.bytes);
    expect(bytes).toBeGreaterThanOrEqual(3 * 1024 * 1024);
    expect(longLines).toBeGreaterThan(0);
    expect(longLines).toBe(physical - lines);
    expect(interleaved).toBeGreaterThan(0);
  });

  it('is deterministic for a seed', () => {
    const a = join(root, 'a');
    const b = join(root, 'b');
    const c = join(root, 'c');
    const ra = generateCriCorpus({ dir: a, files: 3, totalBytes: 512 * 1024, seed: 8 });
    const rb = generateCriCorpus({ dir: b, files: 3, totalBytes: 512 * 1024, seed: 8 });
    const rc = generateCriCorpus({ dir: c, files: 3, totalBytes: 512 * 1024, seed: 9 });
    expect({ ...ra, paths: [], containersDir: '' }).toEqual({ ...rb, paths: [], containersDir: '' });
    expect(treeHash(a)).toBe(treeHash(b));
    expect(treeHash(a)).not.toBe(treeHash(c));
    expect(rc.lines).not.toBe(ra.lines);
  });
});
