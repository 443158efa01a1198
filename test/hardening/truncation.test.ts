import { appendFileSync, existsSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentHarness, agentConfigYaml, criLine, NodeTree, readRecords, SOURCE, type ConfigValue, type OutRecord } from '../helpers/agent_harness.ts';
import { ChildAgent, freePort, waitFor } from '../helpers/child_agent.ts';

/**
 * Issue 14: copytruncate refilled before the agent looks again. Size alone cannot tell that the
 * file was rewritten (it only grew, or kept its length); what the file holds before the read offset
 * can. Each content starts with the same 300-byte banner, so the fingerprint of the first bytes
 * matches every time and only the bytes before the offset tell the contents apart.
 */
const BANNER = criLine('banner '.padEnd(300, '='), { time: '2026-11-21T10:00:00.000000000Z' });
const ROUNDS = 20;

/** One content: the banner, then `n` lines tagged with the round. Its lines' bodies, in order. */
function content(round: number, n: number, pad = 60): { text: string; bodies: string[] } {
  const bodies = [BANNER.slice(BANNER.indexOf(' F ') + 3, -1)];
  let text = BANNER;
  for (let i = 1; i <= n; i++) {
    const body = `round=${round} line=${i} `.padEnd(pad, 'x');
    bodies.push(body);
    text += criLine(body, { time: `2026-11-21T10:00:${String(round % 60).padStart(2, '0')}.${String(i).padStart(9, '0')}Z` });
  }
  return { text, bodies };
}

/** Every expected body delivered (as often as it was written); how many came out more often. */
function tally(records: OutRecord[], expected: string[]): { missing: string[]; duplicates: number } {
  const want = new Map<string, number>();
  for (const b of expected) want.set(b, (want.get(b) ?? 0) + 1);
  const got = new Map<string, number>();
  for (const r of records) got.set(String(r.body), (got.get(String(r.body)) ?? 0) + 1);
  const missing: string[] = [];
  let duplicates = 0;
  for (const [b, n] of want) {
    const g = got.get(b) ?? 0;
    if (g < n) missing.push(b);
    else duplicates += g - n;
  }
  return { missing, duplicates };
}

const checkpointOffset = (tree: NodeTree): number | undefined => {
  const path = join(tree.dataDir, 'checkpoints', `${SOURCE}.json`);
  if (!existsSync(path)) return undefined;
  return (JSON.parse(readFileSync(path, 'utf8')) as { files: { offset: number }[] }).files[0]?.offset;
};

describe('issue 14: copytruncate refilled past the old offset', () => {
  const harnesses: AgentHarness[] = [];
  const trees: NodeTree[] = [];
  const children: ChildAgent[] = [];
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.proc?.exitCode === null && c.proc.signalCode === null) await c.kill('SIGKILL');
    for (const h of harnesses.splice(0)) await h.stop();
    for (const t of trees.splice(0)) t.remove();
  });
  const harness = (source: Record<string, ConfigValue>, tree?: NodeTree) => {
    const h = new AgentHarness({ source, tree });
    harnesses.push(h);
    return h;
  };

  /**
   * Round r: the file holds content r-1, all delivered; then, in one synchronous step (the same
   * millisecond), it is truncated and refilled with content r, 150 lines longer, so past the old
   * offset. The agent must deliver all of content r.
   */
  async function refillRounds(h: AgentHarness, logPath: string): Promise<{ expected: string[]; records: OutRecord[] }> {
    const expected: string[] = [];
    let c = content(0, 500);
    writeFileSync(logPath, c.text);
    expected.push(...c.bodies);
    await h.start();
    for (let round = 1; round <= ROUNDS; round++) {
      await h.waitForBody(c.bodies.at(-1)!);
      const before = statSync(logPath).size;
      c = content(round, 500 + 150 * round);
      truncateSync(logPath, 0);
      appendFileSync(logPath, c.text);
      expect(statSync(logPath).size).toBeGreaterThan(before);
      expected.push(...c.bodies);
    }
    const records = await h.waitForBody(c.bodies.at(-1)!, 30_000);
    return { expected, records };
  }

  for (const path of ['read loop (inotify off, poll)', 'inotify path (poll and scan off)'] as const) {
    it(`truncate and refill past the old offset in the same millisecond, ${ROUNDS} rounds, under the ${path}: every line delivered, duplicates counted`, async () => {
      const source: Record<string, ConfigValue> =
        path.startsWith('read loop') ? { inotify: false, poll_interval: '50ms' } : { poll_interval: '1h', glob_interval: '1h' };
      const h = harness(source);
      const c = h.tree.container();
      const { expected, records } = await refillRounds(h, c.logPath);
      const { missing, duplicates } = tally(records, expected);
      console.log(`${path}: ${records.length} records for ${expected.length} lines written over ${ROUNDS} rounds, ${duplicates} duplicates`);
      expect(missing, `lines never delivered (first ones)`).toEqual([]);
      expect(duplicates).toBe(0);
      expect(await h.metric('telemetry_agent_file_truncations_total', { source: SOURCE })).toBe(ROUNDS);
      expect(h.logs.filter((l) => l.includes('(copytruncate); reading it again from byte 0')).length).toBe(ROUNDS);
      expect(h.logs.find((l) => l.includes('(copytruncate)'))).toMatch(/now \d+ bytes\) after \d+ bytes were read|shrank to \d+ bytes after \d+ bytes were read/);
    }, 120_000);
  }

  it('a file truncated to exactly its old length with different content is delivered whole (first bytes equal too)', async () => {
    for (const source of [{ poll_interval: '1h', glob_interval: '1h' }, { inotify: false, poll_interval: '50ms' }] as Record<string, ConfigValue>[]) {
      const h = harness(source);
      const c = h.tree.container();
      const a = content(1, 200);
      writeFileSync(c.logPath, a.text);
      await h.start();
      await h.waitForBody(a.bodies.at(-1)!);
      // Same banner, same line lengths, other digits: size and fingerprint unchanged.
      const b = content(2, 200);
      expect(b.text.length).toBe(a.text.length);
      writeFileSync(c.logPath, b.text);
      expect(statSync(c.logPath).size).toBe(a.text.length);
      const records = await h.waitForBody(b.bodies.at(-1)!);
      expect(tally(records, [...a.bodies, ...b.bodies])).toEqual({ missing: [], duplicates: 0 });
      expect(records.map((r) => r.body)).toEqual([...a.bodies, ...b.bodies]);
      expect(await h.metric('telemetry_agent_file_truncations_total', { source: SOURCE, reason: 'rewritten' })).toBe(1);
      await h.stop();
    }
  });

  it(`the same with the agent stopped during the truncation: ${ROUNDS} restarts, every line delivered, the checkpoint's tail catches what the fingerprint cannot`, async () => {
    const tree = new NodeTree();
    trees.push(tree);
    const c = tree.container();
    const expected: string[] = [];
    let cur = content(0, 300);
    writeFileSync(c.logPath, cur.text);
    expected.push(...cur.bodies);
    for (let round = 1; round <= ROUNDS; round++) {
      const h = harness({}, tree);
      await h.start();
      await h.waitFor('the content read and checkpointed', () => {
        const recs = readRecords(tree.outputPath);
        return recs.some((r) => r.body === cur.bodies.at(-1)) && checkpointOffset(tree) === statSync(c.logPath).size;
      });
      await h.stop();
      // While the agent is down: truncated and refilled past the checkpoint's offset.
      cur = content(round, 900);
      truncateSync(c.logPath, 0);
      appendFileSync(c.logPath, cur.text);
      expected.push(...cur.bodies);
    }
    const h = harness({}, tree);
    await h.start();
    const records = await h.waitForBody(cur.bodies.at(-1)!);
    const { missing, duplicates } = tally(records, expected);
    console.log(`stopped during truncation: ${records.length} records for ${expected.length} lines, ${duplicates} duplicates`);
    expect(missing).toEqual([]);
    expect(duplicates).toBe(0);
    expect(await h.metric('telemetry_agent_file_truncations_total', { source: SOURCE, reason: 'checkpoint_mismatch' })).toBe(1);
  }, 120_000);

  it(`the same with kill -9 during the truncation: ${ROUNDS} kills, every line delivered, duplicates counted and bounded`, async () => {
    const tree = new NodeTree();
    trees.push(tree);
    const c = tree.container();
    const port = await freePort();
    const configPath = join(tree.root, 'agent.yaml');
    writeFileSync(configPath, agentConfigYaml(tree, { listen: `127.0.0.1:${port}` }));
    const expected: string[] = [];
    let cur = content(0, 300);
    writeFileSync(c.logPath, cur.text);
    expected.push(...cur.bodies);
    for (let round = 1; round <= ROUNDS; round++) {
      const agent = new ChildAgent(configPath);
      children.push(agent);
      agent.start();
      await agent.ready(port);
      await waitFor('the content delivered', () => readRecords(tree.outputPath).some((r) => r.body === cur.bodies.at(-1)), 20_000, 20);
      // Truncated, killed while (maybe) looking at the empty file, refilled past the old offset.
      const next = content(round, 900);
      truncateSync(c.logPath, 0);
      if (round % 2 === 0) appendFileSync(c.logPath, next.text.slice(0, BANNER.length));
      await agent.kill('SIGKILL');
      appendFileSync(c.logPath, round % 2 === 0 ? next.text.slice(BANNER.length) : next.text);
      cur = next;
      expected.push(...cur.bodies);
      children.pop();
    }
    const agent = new ChildAgent(configPath);
    children.push(agent);
    agent.start();
    await agent.ready(port);
    await waitFor('the last content delivered', () => readRecords(tree.outputPath).some((r) => r.body === cur.bodies.at(-1)), 30_000, 50);
    const records = readRecords(tree.outputPath);
    const { missing, duplicates } = tally(records, expected);
    console.log(`kill -9 during truncation: ${records.length} records for ${expected.length} lines, ${duplicates} duplicates`);
    expect(missing).toEqual([]);
    // At most what one kill repeats per round: the content read since the last checkpoint.
    expect(duplicates).toBeLessThanOrEqual(ROUNDS * 901);
  }, 240_000);
});
