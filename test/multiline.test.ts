import { appendFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent.ts';
import { parseConfig } from '../agent/config/load.ts';
import type { AgentConfig } from '../agent/config/schema.ts';
import { createLogger } from '../agent/log.ts';
import { AgentHarness, NodeTree, agentConfigYaml, criLine, criTime, requireNode24, type OutRecord, type Scalar } from './helpers/agent_harness.ts';

/**
 * Multiline grouping in the running tailer: real stack traces of four languages written the way a
 * runtime writes them (CRI with P/F chunks, docker json-file), stdout and stderr interleaved line
 * by line; and the bad cases: groups that never end, a start pattern that does not compile, a
 * group cut by a rotation. The SIGKILL case is in e2e_multiline_crash.test.ts.
 */

type Stream = 'stdout' | 'stderr';

function fixture(name: string): string[] {
  return readFileSync(new URL(`../parsers/fixtures/${name}`, import.meta.url), 'utf8').replace(/\n$/, '').split('\n');
}
const JAVA = fixture('java_spring_npe.txt');
const PYTHON = fixture('python_chained.txt');
const GO = fixture('go_panic_goroutines.txt');
const NODE = fixture('node_uncaught_typeerror.txt');

/** An AgentHarness whose source also gets a `multiline:` value (a YAML flow mapping or `~`). */
class MultilineHarness extends AgentHarness {
  private readonly multiline: string;
  private readonly extra: Record<string, Scalar>;

  constructor(multiline: string, opts: { source?: Record<string, Scalar>; tree?: NodeTree } = {}) {
    super(opts);
    this.multiline = multiline;
    this.extra = opts.source ?? {};
  }

  /** The harness's config with `multiline` set to this YAML value. */
  config(multiline = this.multiline): AgentConfig {
    const yaml = agentConfigYaml(this.tree, { source: this.extra }).replace(/^( {4}include: .*\n)/m, `$1    multiline: ${multiline}\n`);
    return parseConfig(yaml, 'multiline.yaml', {});
  }

  override async start(): Promise<this> {
    requireNode24();
    this.agent = new Agent(this.config(), createLogger('debug', (line) => this.logs.push(line)));
    await this.agent.start();
    return this;
  }
}

const harnesses: AgentHarness[] = [];
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.stop()));
});
const trees: NodeTree[] = [];
afterEach(() => {
  for (const t of trees.splice(0)) t.remove();
});
/** A harness over a tree this suite removes after the test, so the output can be read after stop(). */
function harness(multiline: string, source: Record<string, Scalar> = {}): MultilineHarness {
  const tree = new NodeTree();
  trees.push(tree);
  const h = new MultilineHarness(multiline, { source, tree });
  harnesses.push(h);
  return h;
}

/** One logical line as the container logged it; `time` is its index in the file. */
interface Logged {
  stream: Stream;
  content: string;
  time: string;
}

/**
 * What a container writes: each stream's lines in order, the two streams interleaved one line
 * each while both have lines left.
 */
function interleave(stdout: string[], stderr: string[]): Logged[] {
  const out: Logged[] = [];
  for (let i = 0; i < Math.max(stdout.length, stderr.length); i++) {
    if (i < stdout.length) out.push({ stream: 'stdout', content: stdout[i]!, time: criTime(out.length + 1) });
    if (i < stderr.length) out.push({ stream: 'stderr', content: stderr[i]!, time: criTime(out.length + 1) });
  }
  return out;
}

/**
 * containerd's framing: lines over 120 bytes are written as P chunks of 50 bytes and a closing F
 * (each chunk with a later time), as a runtime with a small line limit would.
 */
function asCri(lines: Logged[]): string {
  let text = '';
  for (const l of lines) {
    let rest = l.content;
    let time = l.time;
    if (rest.length > 120) {
      const nanos = Number(l.time.slice(20, 29));
      for (let k = 1; rest.length > 50; k++) {
        text += criLine(rest.slice(0, 50), { stream: l.stream, tag: 'P', time });
        rest = rest.slice(50);
        time = criTime(nanos + k * 1000);
      }
    }
    text += criLine(rest, { stream: l.stream, time });
  }
  return text;
}

/** docker json-file: one object per line, `log` ending in LF, 16 KiB parts never reached here. */
function asDocker(lines: Logged[]): string {
  return lines.map((l) => JSON.stringify({ log: l.content + '\n', stream: l.stream, time: l.time }) + '\n').join('');
}

/** What the file output must hold for one stream: each ordinary line alone, each trace as one record. */
function expectStream(records: OutRecord[], path: string, stream: Stream, parts: (string | string[])[], logged: Logged[]): void {
  const got = records.filter((r) => r.attributes['log.file.path'] === path && r.attributes['log.iostream'] === stream);
  const mine = logged.filter((l) => l.stream === stream);
  let i = 0;
  const want = parts.map((p) => {
    const lines = typeof p === 'string' ? [p] : p;
    const first = mine[i]!;
    i += lines.length;
    return { body: lines.join('\n'), timestamp: first.time };
  });
  expect(got.map((r) => ({ body: r.body, timestamp: r.timestamp }))).toEqual(want);
  for (const r of got) expect(Object.keys(r.attributes).sort()).toEqual(['log.file.path', 'log.iostream']);
}

describe('multiline auto mode in the tailer: real traces of four languages', () => {
  it('CRI and docker json-file, stdout and stderr interleaved line by line: each trace is one record on its stream, ordinary lines stay single', async () => {
    const h = harness('{ mode: auto, timeout: 5s }');
    const cases = [
      { format: 'cri', stdout: JAVA, stderr: PYTHON },
      { format: 'docker', stdout: GO, stderr: NODE },
      { format: 'cri', stdout: NODE, stderr: GO },
      { format: 'docker', stdout: PYTHON, stderr: JAVA },
    ] as const;
    const files = cases.map((c, n) => {
      // Ordinary lines before, between and after; the last one closes the trace before it.
      const stdout = [`GET /orders/${n} 200 12ms`, ...c.stdout, `GET /health 200 1ms`, `worker ${n} idle`];
      const stderr = [`[warn] slow query on shard ${n}`, ...c.stderr, `[info] retrying job ${n}`, `[info] job ${n} done`];
      const logged = interleave(stdout, stderr);
      const file = h.tree.container({ pod: `app-${n}`, content: c.format === 'cri' ? asCri(logged) : asDocker(logged) });
      return { ...c, n, logged, path: file.logPath };
    });
    await h.start();
    // 4 files x 2 streams x (3 ordinary lines + 1 trace)
    const records = await h.waitForLines(32);
    for (const f of files) {
      expectStream(records, f.path, 'stdout', [`GET /orders/${f.n} 200 12ms`, [...f.stdout], 'GET /health 200 1ms', `worker ${f.n} idle`], f.logged);
      expectStream(records, f.path, 'stderr', [`[warn] slow query on shard ${f.n}`, [...f.stderr], `[info] retrying job ${f.n}`, `[info] job ${f.n} done`], f.logged);
    }
    // The CRI Java trace has lines long enough to come as P chunks: joined before grouping.
    expect(asCri(files[0]!.logged)).toContain(' stdout P ');
    // Nothing more comes: the last lines were singles, not groups held and flushed later.
    expect(h.records()).toHaveLength(32);
    // Every trace was closed by the next line (Node's by its own `Node.js v22` end), none by a timer.
    expect(await h.metric('telemetry_agent_multiline_groups_total', { source: 'containers', reason: 'complete' })).toBe(8);
    expect(await h.metric('telemetry_agent_multiline_groups_total', { source: 'containers', reason: 'timeout' })).toBeUndefined();
  }, 30_000);

  it('a trace at the end of a quiet file is emitted by the timeout, not held until the next line', async () => {
    const h = harness('{ mode: auto, timeout: 300ms }');
    const logged = interleave(['starting', ...JAVA], ['ready']);
    const file = h.tree.container({ content: asCri(logged) });
    await h.start();
    const records = await h.waitForLines(3);
    expectStream(records, file.logPath, 'stdout', ['starting', [...JAVA]], logged);
    expect(await h.waitForMetric('telemetry_agent_multiline_groups_total', { source: 'containers', reason: 'timeout' }, 1)).toBe(1);
  }, 30_000);

  it('with multiline off (the default) every line of a trace is its own record', async () => {
    const h = harness('~');
    const logged = interleave(PYTHON, []);
    h.tree.container({ content: asDocker(logged) });
    await h.start();
    const records = await h.waitForLines(PYTHON.length);
    expect(records.map((r) => r.body)).toEqual(PYTHON);
  }, 30_000);
});

describe('multiline bad input', () => {
  it('a group that never ends is cut at max_lines and at max_bytes, whole lines in order, each cut counted', async () => {
    const h = harness("{ start_pattern: '^BEGIN ', max_lines: 10, max_bytes: 2KiB, timeout: 300ms }");
    // One group of 26 short lines; one of 41 lines of 300 bytes: 6 fit in 2 KiB (6*300+5 <= 2048, 7 do not).
    const short = ['BEGIN short', ...Array.from({ length: 25 }, (_, i) => `  continued ${i}`)];
    const long = ['BEGIN long', ...Array.from({ length: 40 }, (_, i) => `${String(i).padStart(3, '0')} ${'x'.repeat(296)}`)];
    const a = h.tree.container({ pod: 'short', content: asCri(interleave(short, [])) });
    const b = h.tree.container({ pod: 'long', content: asDocker(interleave(long, [])) });
    await h.start();
    // 3 records of the short group, 7 of the long one; the last of each only after the timeout.
    const records = await h.waitForLines(10);
    const of = (path: string) => records.filter((r) => r.attributes['log.file.path'] === path).map((r) => r.body as string);
    // Short: 10 + 10 + 6 (the rest, by the timeout); every line once, in order.
    expect(of(a.logPath).map((body) => body.split('\n').length)).toEqual([10, 10, 6]);
    expect(of(a.logPath).join('\n')).toBe(short.join('\n'));
    // Long: cut by bytes, whole lines (the short BEGIN line and 6 of 300 bytes, then 6 of 300 each), never more than 2 KiB.
    const longRecords = of(b.logPath);
    expect(longRecords.map((body) => body.split('\n').length)).toEqual([7, 6, 6, 6, 6, 6, 4]);
    for (const body of longRecords) expect(body.length).toBeLessThanOrEqual(2048);
    expect(longRecords.join('\n')).toBe(long.join('\n'));
    expect(await h.metric('telemetry_agent_multiline_groups_total', { source: 'containers', reason: 'max_lines' })).toBe(2);
    expect(await h.metric('telemetry_agent_multiline_groups_total', { source: 'containers', reason: 'max_bytes' })).toBe(6);
    expect(await h.metric('telemetry_agent_multiline_groups_total', { source: 'containers', reason: 'timeout' })).toBe(2);
  }, 30_000);

  it('a single line longer than max_bytes is cut, marked truncated and counted; the next group is whole', async () => {
    const h = harness("{ start_pattern: '^BEGIN', max_bytes: 1KiB, timeout: 300ms }");
    const lines = ['BEGIN ' + 'y'.repeat(3000), 'BEGIN two', '  more'];
    const file = h.tree.container({ content: asDocker(interleave(lines, [])) });
    await h.start();
    const records = await h.waitForLines(2);
    expect(records.map((r) => (r.body as string).length)).toEqual([1024, 'BEGIN two\n  more'.length]);
    expect(records[0]!.attributes).toEqual({ 'log.iostream': 'stdout', 'log.file.path': file.logPath, 'kta.log.truncated': true });
    expect(records[1]!.attributes['kta.log.truncated']).toBeUndefined();
    expect(await h.metric('telemetry_agent_multiline_groups_total', { source: 'containers', reason: 'max_bytes' })).toBe(1);
  }, 30_000);

  it('a start pattern that does not compile is a config error naming the key path; nothing else is reported', () => {
    const tree = new NodeTree();
    try {
      const yaml = agentConfigYaml(tree).replace(/^( {4}include: .*\n)/m, "$1    multiline: { start_pattern: '^(\\d+' }\n");
      expect(() => parseConfig(yaml, 'bad.yaml', {})).toThrow(/^bad\.yaml: invalid config\n {2}sources\.containers\.multiline\.start_pattern: invalid regex: Unterminated group$/);
      const neither = agentConfigYaml(tree).replace(/^( {4}include: .*\n)/m, '$1    multiline: { timeout: 2s }\n');
      expect(() => parseConfig(neither, 'bad.yaml', {})).toThrow('sources.containers.multiline: give mode: auto, mode: indented, or a start_pattern');
    } finally {
      tree.remove();
    }
  });

  it('a group interrupted by a rotation: the part in the old file ends with it, the rest is read from the new file; every line exactly once', async () => {
    // A long timeout: only the end of the rotated file can close the first part.
    const h = harness('{ mode: auto, timeout: 1h }');
    const before = ['request 1 ok', ...JAVA.slice(0, 20)];
    const after = [...JAVA.slice(20), 'request 2 ok'];
    const all = interleave([...before, ...after], []);
    const file = h.tree.container({ content: asCri(all.slice(0, before.length)) });
    await h.start();
    await h.waitForLines(1);
    // kubelet's rotation: rename the live file, the runtime opens a fresh one.
    renameSync(file.logPath, `${file.logPath}.20261121-100000`);
    writeFileSync(file.logPath, asCri(all.slice(before.length)));
    await h.waitForBody('request 2 ok');
    const bodies = h.records().map((r) => r.body as string);
    // The old file's part is one record, out before anything of the new file.
    expect(bodies[0]).toBe('request 1 ok');
    expect(bodies[1]).toBe(JAVA.slice(0, 20).join('\n'));
    // In the new file frames open no group (auto mode starts one only at an exception line), so
    // each comes alone until `Caused by: …Exception:` opens one that takes its frames.
    const causedBy = after.findIndex((l) => l.startsWith('Caused by:'));
    expect(bodies.slice(2)).toEqual([...after.slice(0, causedBy), after.slice(causedBy, -1).join('\n'), 'request 2 ok']);
    // Every line exactly once, in order.
    expect(bodies.join('\n')).toBe([...before, ...after].join('\n'));
    expect(await h.metric('telemetry_agent_multiline_groups_total', { source: 'containers', reason: 'end_of_file' })).toBe(1);
  }, 30_000);

  it('a reload that changes the source delivers its held group once; the new source resumes after it', async () => {
    const h = harness('{ mode: auto, timeout: 1h }');
    const file = h.tree.container({ content: asCri(interleave(['booting', ...GO], [])) });
    await h.start();
    await h.waitForLines(1);
    await h.agent!.reload(h.config('{ mode: auto, timeout: 2h }'));
    appendFileSync(file.logPath, criLine('after reload', { time: criTime(999) }));
    await h.waitForBody('after reload');
    await h.stop();
    expect(h.records().map((r) => r.body)).toEqual(['booting', GO.join('\n'), 'after reload']);
  }, 30_000);

  it('a clean stop delivers a held group (the source flushes it) and the checkpoint moves past it', async () => {
    const h = harness('{ mode: auto, timeout: 1h }');
    const logged = interleave(['booting', ...GO], []);
    const file = h.tree.container({ content: asCri(logged) });
    await h.start();
    await h.waitForLines(1);
    await h.stop();
    const records = h.records();
    expect(records.map((r) => r.body)).toEqual(['booting', GO.join('\n')]);
    const cp = JSON.parse(readFileSync(join(h.tree.dataDir, 'checkpoints', 'containers.json'), 'utf8')) as { files: { path: string; offset: number }[] };
    expect(cp.files.find((f) => f.path === file.logPath)?.offset).toBe(Buffer.byteLength(asCri(logged)));
  }, 30_000);
});
