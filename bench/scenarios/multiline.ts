/**
 * Multiline cost: one CRI corpus of application logs with real stack traces (bench/multiline_corpus.ts),
 * read by
 *   raw        bench/baseline_raw.ts   read + count lines, the floor
 *   plain      the agent, multiline off (every line a record)
 *   multiline  the agent, `multiline: { mode: auto }` (each trace one record)
 * each in its own process, one after another, into an NDJSON file whose record count is checked.
 * Lines per CPU-second count input lines for all three, so the ratios are the cost per line read.
 *
 * Env: BENCH_MIB (128), BENCH_FILES (20), BENCH_SEED (1), BENCH_TRACE_EVERY (100 ordinary lines
 * per trace), BENCH_ONLY (e.g. `plain,multiline`), BENCH_REPEAT (1), BENCH_AGENT_TIMEOUT_S
 * (60 + 1 per MiB).
 */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runAgent } from '../agent_process.ts';
import { ensureMultilineCorpus } from '../multiline_corpus.ts';
import {
  MiB,
  countLines,
  freePort,
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

const RUNS = ['raw', 'plain', 'multiline'] as const;
/** multiline auto should cost at most this much of the plain path's lines per CPU-second. */
const PLAIN_RATIO_TARGET = 0.8;

export const multilineCost: Scenario = {
  name: 'multiline',
  description: 'CRI logs with stack traces -> NDJSON file: the agent with multiline auto vs without',

  async run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
    const env = ctx.env;
    const params = {
      mib: Math.max(1, intEnv(env, 'BENCH_MIB', 128)),
      files: Math.max(1, intEnv(env, 'BENCH_FILES', 20)),
      seed: intEnv(env, 'BENCH_SEED', 1),
      traceEvery: Math.max(1, intEnv(env, 'BENCH_TRACE_EVERY', 100)),
    };
    const { only, repeat } = runChoices(env, RUNS);
    const timeoutMs = intEnv(env, 'BENCH_AGENT_TIMEOUT_S', 60 + params.mib) * 1000;

    const corpus = ensureMultilineCorpus(ctx.dataDir, params);
    ctx.log(`${corpus.reused ? 'reused' : 'generated'} ${corpus.dir}`);
    warmPageCache(corpus.paths);

    const measurements: Measurement[] = [];
    const errors: string[] = [];
    const scratch = fs.mkdtempSync(join(tmpdir(), 'kta-bench-ml-'));

    const measure = async (name: string, fn: (i: number) => Promise<Measurement>) => {
      if (!only.has(name)) return;
      try {
        measurements.push(await medianRun(name, repeat, ctx.log, fn));
      } catch (err) {
        errors.push(`${name} run failed: ${(err as Error).message}`);
      }
    };

    const agent = (name: string, multiline: Record<string, unknown> | null, records: number) => async (i: number) => {
      const work = join(scratch, `${name}-${i}`);
      const out = join(work, 'out.ndjson');
      const listen = `127.0.0.1:${await freePort()}`;
      const m = await runAgent({
        name,
        repoRoot: ctx.repoRoot,
        workDir: work,
        listen,
        config: {
          node_name: 'bench-node',
          data_dir: join(work, 'data'),
          log_level: 'warn',
          server: { listen },
          kubernetes: { mode: 'disabled' },
          sources: { containers: { type: 'container_logs', include: [join(corpus.containersDir, '*.log')], multiline } },
          outputs: { out: { type: 'file', inputs: ['containers'], path: out } },
        },
        metric: { name: 'telemetry_agent_output_records_total', labels: { output: 'out', status: 'sent' } },
        target: records,
        bytes: corpus.bytes,
        timeoutMs,
      });
      const written = countLines(out);
      fs.rmSync(work, { recursive: true, force: true });
      if (written !== records) throw new Error(`${name}: output has ${written} records, expected ${records}`);
      // Per line read, like raw, so the columns compare the same work.
      return { ...m, lines: corpus.lines, notes: [`${records} records out`] };
    };

    try {
      await measure('raw', async () => {
        const m = await runReportingChild('raw', join(ctx.repoRoot, 'bench/baseline_raw.ts'), [corpus.containersDir], ctx.repoRoot);
        if (m.lines !== corpus.lines) throw new Error(`raw counted ${m.lines} lines, expected ${corpus.lines}`);
        return m;
      });
      await measure('plain', agent('plain', null, corpus.lines));
      await measure('multiline', agent('multiline', { mode: 'auto' }, corpus.grouped));
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }

    const byName = new Map(measurements.map((m) => [m.name, m]));
    const plain = byName.get('plain');
    const ml = byName.get('multiline');
    const targets: Target[] = [
      plain && ml
        ? {
            description: `multiline auto >= ${PLAIN_RATIO_TARGET}x the plain agent in lines per CPU-second`,
            pass: linesPerCpuSecond(ml) / linesPerCpuSecond(plain) >= PLAIN_RATIO_TARGET,
            detail: `${(linesPerCpuSecond(ml) / linesPerCpuSecond(plain)).toFixed(2)}x; per line read ${((1e6 * ml.cpuSeconds) / ml.lines).toFixed(2)} vs ${((1e6 * plain.cpuSeconds) / plain.lines).toFixed(2)} CPU-µs`,
          }
        : { description: `multiline auto >= ${PLAIN_RATIO_TARGET}x the plain agent in lines per CPU-second`, pass: undefined, detail: 'plain or multiline not measured' },
    ];
    const notes = [
      `input: ${corpus.paths.length} files, ${corpus.lines} CRI lines, ${(corpus.bytes / MiB).toFixed(1)} MiB; ${corpus.traces} traces (${corpus.traceLines} lines, Java/Python/Go/Node) on stderr, ${corpus.grouped} records when grouped`,
      'lines = input lines for every run (the agents write fewer records when grouping); CPU = user+system; agent figures read when the sent counter reached the record count.',
      ...measurements.flatMap((m) => (m.notes ?? []).map((n) => `${m.name}: ${n}`)),
    ];
    return { measurements, table: throughputTable(measurements, ['raw', 'plain']), notes, targets, errors };
  },
};
