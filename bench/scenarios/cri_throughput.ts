/**
 * CRI throughput: one corpus of container logs (>= 512 MiB by default), read by
 *   raw    bench/baseline_raw.ts    read + count lines, the floor
 *   naive  bench/baseline_naive.ts  read, parse, P/F join, JSON.stringify, write NDJSON, one loop
 *   agent  agent/cli.ts run         container_logs source -> file output, the product
 * each in its own process, one after another. Targets: agent >= 0.8x naive in lines per CPU-second,
 * agent peak RSS < 150 MiB.
 *
 * Env: BENCH_MIB (512), BENCH_FILES (50), BENCH_SEED (1), BENCH_LONG_EVERY (1000: one 20 KiB line
 * per this many lines), BENCH_ONLY (e.g. `raw,naive`), BENCH_AGENT_TIMEOUT_S (60 + 1 per MiB),
 * BENCH_REPEAT (1: runs per program, the median by lines per CPU-second is shown), BENCH_KEEP=1
 * (keep temp folders with outputs, the agent config and its log), BENCH_BASELINE_REPO (a checkout of
 * another commit, e.g. `git worktree add /tmp/kta-before main` with its node_modules linked: its agent
 * runs too, as `agent-before`, and the table gives the ratio to it: before/after in one invocation).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runAgent } from '../agent_process.ts';
import { ensureCriCorpus } from '../corpus.ts';
import {
  MiB,
  countLines,
  firstAndLastLine,
  freePort,
  criCorpusParams,
  intEnv,
  runChoices,
  linesPerCpuSecond,
  medianRun,
  runReportingChild,
  throughputTable,
  warmPageCache,
  type Measurement,
  type Scenario,
  type ScenarioContext,
  type ScenarioOutcome,
  type Target,
} from '../measure.ts';

const RUNS = ['raw', 'naive', 'agent-before', 'agent'] as const;
const NAIVE_RATIO_TARGET = 0.8;
const RSS_TARGET_MIB = 150;
export const AGENT_SOURCE_NAME = 'containers';
export const AGENT_OUTPUT_NAME = 'bench_file';

/** Checks that an NDJSON line has the record shape of design.md; returns a problem or undefined. */
function shapeProblem(line: string): string | undefined {
  try {
    const r = JSON.parse(line) as Record<string, unknown>;
    for (const key of ['timestamp', 'observed_timestamp', 'body', 'attributes', 'resource']) {
      if (!(key in r)) return `missing "${key}"`;
    }
    const attrs = r.attributes as Record<string, unknown>;
    if (!attrs['log.iostream'] || !attrs['log.file.path']) return 'attributes lack log.iostream or log.file.path';
    return undefined;
  } catch (err) {
    return `not JSON (${(err as Error).message})`;
  }
}

function gitHead(repo: string): string {
  try {
    return execFileSync('git', ['-C', repo, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' }).trim().slice(0, 80);
  } catch {
    return 'not a git checkout';
  }
}

export const criThroughput: Scenario = {
  name: 'cri-throughput',
  description: 'CRI container logs -> NDJSON file: raw read vs naive loop vs the agent',

  async run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
    const env = ctx.env;
    const params = criCorpusParams(env, 'BENCH_MIB', 512);
    const { only, keep, repeat } = runChoices(env, RUNS);
    const timeoutMs = intEnv(env, 'BENCH_AGENT_TIMEOUT_S', 60 + params.mib) * 1000;

    ctx.log(`corpus: ${params.mib} MiB, ${params.files} files, seed ${params.seed}, a 20 KiB line every ${params.longLineEvery} lines`);
    const corpus = ensureCriCorpus(ctx.dataDir, params);
    ctx.log(
      corpus.reused
        ? `  reused ${corpus.dir}`
        : `  generated ${corpus.dir} in ${corpus.generateSeconds.toFixed(1)} s`,
    );
    ctx.log(`  ${corpus.lines} records (${corpus.physicalLines} CRI lines), ${(corpus.bytes / MiB).toFixed(1)} MiB`);
    warmPageCache(corpus.paths);

    const measurements: Measurement[] = [];
    const errors: string[] = [];
    const notes: string[] = [];
    const scratch = fs.mkdtempSync(join(tmpdir(), 'kta-bench-'));
    let agentRun = 0;
    const measure = async (name: string, fn: () => Promise<Measurement>) => {
      if (!only.has(name)) return;
      try {
        measurements.push(await medianRun(name, repeat, ctx.log, fn));
      } catch (err) {
        const message = `${name} run failed: ${(err as Error).message}`;
        errors.push(message);
        ctx.log(`  ${message}`);
      }
    };
    const checkOutput = (path: string, m: Measurement): void => {
      const n = countLines(path);
      if (n !== corpus.lines) throw new Error(`output ${path} has ${n} lines, expected ${corpus.lines}`);
      const { first, last } = firstAndLastLine(path);
      const problem = shapeProblem(first) ?? shapeProblem(last);
      if (problem) m.notes = [...(m.notes ?? []), `record shape: ${problem}`];
      m.notes = [...(m.notes ?? []), `output ${(fs.statSync(path).size / MiB).toFixed(1)} MiB NDJSON`];
      if (!keep) fs.rmSync(path, { force: true });
    };

    try {
      await measure('raw', async () => {
        const m = await runReportingChild('raw', join(ctx.repoRoot, 'bench/baseline_raw.ts'), [corpus.containersDir], ctx.repoRoot);
        if (m.lines !== corpus.physicalLines) throw new Error(`counted ${m.lines} lines, expected ${corpus.physicalLines}`);
        if (m.bytes !== corpus.bytes) throw new Error(`read ${m.bytes} bytes, expected ${corpus.bytes}`);
        return m;
      });

      await measure('naive', async () => {
        const out = join(scratch, 'naive.ndjson');
        const m = await runReportingChild('naive', join(ctx.repoRoot, 'bench/baseline_naive.ts'), [corpus.containersDir, out], ctx.repoRoot);
        if (m.lines !== corpus.lines) throw new Error(`emitted ${m.lines} records, expected ${corpus.lines}`);
        checkOutput(out, m);
        return m;
      });

      const agentMeasure = async (name: string, repoRoot: string): Promise<Measurement> => {
        // A fresh data_dir per run: checkpoints of an earlier run would make it start at EOF.
        const work = join(scratch, `agent-${++agentRun}`);
        if (!keep) fs.rmSync(join(scratch, `agent-${agentRun - 1}`), { recursive: true, force: true });
        const out = join(work, 'out.ndjson');
        const port = await freePort();
        const listen = `127.0.0.1:${port}`;
        const m = await runAgent({
          name,
          repoRoot,
          workDir: work,
          listen,
          config: {
            node_name: 'bench-node',
            data_dir: join(work, 'data'),
            log_level: 'warn',
            server: { listen },
            kubernetes: { mode: 'disabled' },
            sources: {
              [AGENT_SOURCE_NAME]: {
                type: 'container_logs',
                include: [join(corpus.containersDir, '*.log')],
                read_from: 'beginning',
              },
            },
            outputs: {
              [AGENT_OUTPUT_NAME]: { type: 'file', inputs: [AGENT_SOURCE_NAME], path: out },
            },
          },
          metric: { name: 'telemetry_agent_output_records_total', labels: { output: AGENT_OUTPUT_NAME, status: 'sent' } },
          target: corpus.lines,
          bytes: corpus.bytes,
          timeoutMs,
        });
        if (m.lines !== corpus.lines) m.notes = [...(m.notes ?? []), `counter read ${m.lines} (> ${corpus.lines}: duplicates?)`];
        checkOutput(out, m);
        m.lines = corpus.lines;
        return m;
      };
      const baselineRepo = env.BENCH_BASELINE_REPO;
      if (baselineRepo) {
        notes.push(`agent-before: the agent of ${baselineRepo} (${gitHead(baselineRepo)}); agent: ${gitHead(ctx.repoRoot)}`);
        await measure('agent-before', () => agentMeasure('agent-before', baselineRepo));
      }
      await measure('agent', () => agentMeasure('agent', ctx.repoRoot));
    } finally {
      const agentFailed = errors.some((e) => e.startsWith('agent '));
      if (keep) notes.push(`kept ${scratch} (outputs, agent-N/agent.yaml, agent-N/agent.log)`);
      else if (agentFailed) {
        // Keep the failed agent's config and log for a look; drop the big outputs.
        const work = join(scratch, `agent-${agentRun}`);
        fs.rmSync(join(scratch, 'naive.ndjson'), { force: true });
        fs.rmSync(join(work, 'out.ndjson'), { force: true });
        notes.push(`kept ${work} (agent.yaml, agent.log, data/) of the failed agent run`);
      } else fs.rmSync(scratch, { recursive: true, force: true });
    }

    const byName = new Map(measurements.map((m) => [m.name, m]));
    const agent = byName.get('agent');
    const naive = byName.get('naive');
    const targets: Target[] = [];
    if (agent && naive) {
      const ratio = linesPerCpuSecond(agent) / linesPerCpuSecond(naive);
      targets.push({
        description: `agent >= ${NAIVE_RATIO_TARGET}x naive in lines per CPU-second`,
        pass: ratio >= NAIVE_RATIO_TARGET,
        detail: `${ratio.toFixed(2)}x (${Math.round(linesPerCpuSecond(agent))} vs ${Math.round(linesPerCpuSecond(naive))})`,
      });
    } else {
      targets.push({ description: `agent >= ${NAIVE_RATIO_TARGET}x naive in lines per CPU-second`, pass: undefined, detail: 'agent or naive not measured' });
    }
    targets.push(
      agent
        ? {
            description: `agent peak RSS < ${RSS_TARGET_MIB} MiB`,
            pass: agent.peakRssBytes < RSS_TARGET_MIB * MiB,
            detail: `${(agent.peakRssBytes / MiB).toFixed(1)} MiB`,
          }
        : { description: `agent peak RSS < ${RSS_TARGET_MIB} MiB`, pass: undefined, detail: 'agent not measured' },
    );

    notes.unshift(
      `input: ${corpus.files} files, ${corpus.lines} records (${corpus.physicalLines} CRI lines), ${(corpus.bytes / MiB).toFixed(1)} MiB, page cache warm`,
      'raw counts CRI lines (P and F); naive and agent count joined records. CPU = user+system, all threads.',
      'raw/naive: CPU and peak RSS reported by the process at its end (wall includes Node start-up);',
      'agent: /proc/<pid>/stat and VmHWM read when the sent counter reached the record count (wall from spawn, 200 ms polls).',
    );
    for (const m of measurements) for (const n of m.notes ?? []) notes.push(`${m.name}: ${n}`);

    const baselines = byName.has('agent-before') ? ['raw', 'naive', 'agent-before'] : ['raw', 'naive'];
    return { measurements, table: throughputTable(measurements, baselines), notes, targets, errors };
  },
};
