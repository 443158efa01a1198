import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NodeTree, agentConfigYaml, criLine, criTime, readRecords, requireNode24, type OutRecord } from './helpers/agent_harness.ts';
import { ChildAgent, freePort, waitFor } from './helpers/child_agent.ts';

/**
 * A SIGKILL while a multiline group is held: the checkpoint stays at the group's first line (with
 * the other stream's lines already delivered past it), so the restarted agent reads the trace
 * again from its start and emits it whole, and repeats nothing it had delivered.
 */

const PYTHON = readFileSync(new URL('../parsers/fixtures/python_chained.txt', import.meta.url), 'utf8').replace(/\n$/, '').split('\n');

const children: ChildAgent[] = [];
const trees: NodeTree[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.proc && c.proc.exitCode === null && c.proc.signalCode === null) await c.kill('SIGKILL');
  }
  for (const t of trees.splice(0)) t.remove();
});

interface Checkpoint {
  files: { path: string; offset: number; delivered?: number; pending?: { stdout?: number; stderr?: number } }[];
}

function readCheckpoint(t: NodeTree): Checkpoint | undefined {
  const path = join(t.dataDir, 'checkpoints', 'containers.json');
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Checkpoint;
  } catch {
    return undefined; // replaced while read
  }
}

const of = (records: OutRecord[], stream: string) => records.filter((r) => r.attributes['log.iostream'] === stream).map((r) => r.body);

describe('multiline and SIGKILL', () => {
  it('a group held at the kill is re-read whole after the restart; nothing delivered is repeated', async () => {
    requireNode24();
    const t = new NodeTree('kta-ml-crash-');
    trees.push(t);
    const port = await freePort();
    const configPath = join(t.root, 'agent.yaml');
    const yaml = agentConfigYaml(t, { listen: `127.0.0.1:${port}`, source: { checkpoint_interval: '100ms' } }).replace(
      /^( {4}include: .*\n)/m,
      // The timeout never comes: only the next line, the kill or a stop can end the group.
      '$1    multiline: { mode: auto, timeout: 1h }\n',
    );
    writeFileSync(configPath, yaml);
    const start = async () => {
      const agent = new ChildAgent(configPath);
      children.push(agent);
      agent.start();
      await agent.ready(port);
      return agent;
    };

    // Phase 1: ordinary stdout lines, then the first half of a chained traceback on stdout (one
    // frame line written as P and F chunks), each trace line followed by an ordinary stderr line.
    const split = 14; // a frame of the second traceback: the group cannot end before more lines come
    let n = 0;
    let text = '';
    const stdoutBefore = ['serving on :8080', 'job 76 done'];
    for (const l of stdoutBefore) text += criLine(l, { time: criTime(++n) });
    const traceStart = Buffer.byteLength(text);
    const stderrLines: string[] = [];
    const line = (content: string, stream: 'stdout' | 'stderr') => {
      if (content.length > 60) {
        const time = criTime(++n);
        return criLine(content.slice(0, 30), { stream, tag: 'P', time }) + criLine(content.slice(30), { stream, time: criTime(++n) });
      }
      return criLine(content, { stream, time: criTime(++n) });
    };
    for (const l of PYTHON.slice(0, split)) {
      text += line(l, 'stdout');
      const e = `stderr heartbeat ${stderrLines.length}`;
      stderrLines.push(e);
      text += line(e, 'stderr');
    }
    const c = t.container({ content: text });

    let agent = await start();
    // Everything but the held trace is out, and the checkpoint says so: it rests at the trace's
    // first line, with the stderr lines after it recorded as delivered.
    await waitFor('the ordinary lines', () => readRecords(t.outputPath).length >= stdoutBefore.length + stderrLines.length || undefined, 20_000);
    const size = statSync(c.logPath).size;
    const cp = await waitFor(
      'a checkpoint with the stderr lines delivered',
      () => readCheckpoint(t)?.files.find((f) => f.path === c.logPath && f.delivered === size),
      20_000,
    );
    expect(cp.offset).toBe(traceStart);
    expect(cp.pending).toEqual({ stdout: traceStart });
    expect(of(readRecords(t.outputPath), 'stdout')).toEqual(stdoutBefore);
    expect(await agent.kill('SIGKILL')).toBe('SIGKILL');

    // Phase 2, written while the agent is dead: the rest of the trace, then lines on both streams.
    let rest = '';
    for (const l of PYTHON.slice(split)) rest += line(l, 'stdout');
    rest += line('job 77 failed, requeued', 'stdout') + line('stderr heartbeat last', 'stderr');
    appendFileSync(c.logPath, rest);

    agent = await start();
    await waitFor('the last lines', () => {
      const bodies = readRecords(t.outputPath).map((r) => r.body);
      return (bodies.includes('job 77 failed, requeued') && bodies.includes('stderr heartbeat last')) || undefined;
    }, 20_000);
    expect(await agent.kill('SIGTERM')).toBe(0);

    const records = readRecords(t.outputPath);
    // The trace once, whole, with its first line's time; nothing repeated on either stream.
    expect(of(records, 'stdout')).toEqual([...stdoutBefore, PYTHON.join('\n'), 'job 77 failed, requeued']);
    expect(of(records, 'stderr')).toEqual([...stderrLines, 'stderr heartbeat last']);
    expect(records.find((r) => r.body === PYTHON.join('\n'))!.timestamp).toBe(criTime(stdoutBefore.length + 1));
  }, 60_000);
});
