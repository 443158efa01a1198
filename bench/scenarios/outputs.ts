/**
 * Outputs: the cost of each network output type against the file output, on one CRI corpus:
 *   raw            bench/baseline_raw.ts   read + count lines, the floor
 *   file           the agent, container_logs -> file (NDJSON), the reference
 *   http           -> http (NDJSON)                   http_gzip  -> http, compression gzip
 *   loki           -> loki (protobuf + snappy)        otlp       -> otlp, http/protobuf
 *   elasticsearch  -> elasticsearch (_bulk)           splunk_hec -> splunk_hec (event, gzip)
 *   syslog         -> syslog over TCP (RFC 5424, octet counting)
 * each in its own process, one after another; the network outputs send to bench/output_sinks.ts,
 * a separate process that reads every request and answers success without decoding, so the CPU
 * and RSS read from the agent's /proc are the agent's alone. An output type not (yet) in
 * outputs/registry.ts is skipped with a note. Every output keeps its defaults (batch 5000 records
 * / 1 MiB, concurrency 1, memory buffer) beyond what the receiver needs.
 * Target: every network output >= 0.5x the file output's lines per CPU-second.
 *
 * Env: BENCH_OUTPUTS_MIB (64), BENCH_FILES (50), BENCH_SEED (1), BENCH_LONG_EVERY (1000),
 * BENCH_ONLY (e.g. `raw,file,loki`), BENCH_REPEAT (1: the median by lines per CPU-second is shown),
 * BENCH_AGENT_TIMEOUT_S (60 + 2 per MiB), BENCH_KEEP=1 (keep the temp folder: configs, logs).
 */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runAgent } from '../agent_process.ts';
import { ensureCriCorpus } from '../corpus.ts';
import {
  MiB,
  countLines,
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
import type { SinkProtocol, SinkStats } from '../output_sinks.ts';
import { SinkProcess } from '../sink_process.ts';

const FILE_RATIO_TARGET = 0.5;
const RSS_TARGET_MIB = 150;
const SOURCE = 'containers';
const OUTPUT = 'bench_out';

interface NetworkRun {
  name: string;
  /** The output `type` (a key of outputs/registry.ts). */
  type: string;
  sink: SinkProtocol;
  /** Keys beside type/inputs, for a sink at 127.0.0.1:port. */
  config(port: number): Record<string, unknown>;
}

const NETWORK_RUNS: NetworkRun[] = [
  { name: 'http', type: 'http', sink: 'http', config: (port) => ({ endpoint: `http://127.0.0.1:${port}/ingest` }) },
  { name: 'http_gzip', type: 'http', sink: 'http', config: (port) => ({ endpoint: `http://127.0.0.1:${port}/ingest`, compression: 'gzip' }) },
  { name: 'loki', type: 'loki', sink: 'loki', config: (port) => ({ endpoint: `http://127.0.0.1:${port}`, encoding: 'protobuf' }) },
  { name: 'otlp', type: 'otlp', sink: 'otlp', config: (port) => ({ endpoint: `http://127.0.0.1:${port}`, protocol: 'http/protobuf', compression: 'none' }) },
  { name: 'elasticsearch', type: 'elasticsearch', sink: 'elasticsearch', config: (port) => ({ endpoint: `http://127.0.0.1:${port}` }) },
  { name: 'splunk_hec', type: 'splunk_hec', sink: 'splunk_hec', config: (port) => ({ endpoint: `http://127.0.0.1:${port}`, token: '00000000-0000-0000-0000-000000000000' }) },
  { name: 'syslog', type: 'syslog', sink: 'syslog', config: (port) => ({ endpoint: `tcp://127.0.0.1:${port}` }) },
];

const RUN_NAMES = ['raw', 'file', ...NETWORK_RUNS.map((r) => r.name)];

type Plugins = Record<string, { schema: { safeParse(v: unknown): { success: boolean; error?: { message: string } } } }>;

export const outputsBench: Scenario = {
  name: 'outputs',
  description: 'CRI container logs -> each network output type (to a local sink) vs the file output',

  async run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
    const env = ctx.env;
    const params = criCorpusParams(env, 'BENCH_OUTPUTS_MIB', 64);
    const { only, keep, repeat } = runChoices(env, RUN_NAMES);
    const timeoutMs = intEnv(env, 'BENCH_AGENT_TIMEOUT_S', 60 + 2 * params.mib) * 1000;

    const measurements: Measurement[] = [];
    const errors: string[] = [];
    const notes: string[] = [];
    const skipped: string[] = [];

    // Loaded here, not at the top: an output being written elsewhere must not break every benchmark.
    let plugins: Plugins;
    try {
      plugins = (await import('../../outputs/registry.ts')).outputPlugins as unknown as Plugins;
    } catch (err) {
      return { measurements, table: '', notes, targets: [], errors: [`cannot load outputs/registry.ts: ${(err as Error).message}`] };
    }

    ctx.log(`corpus: ${params.mib} MiB, ${params.files} files, seed ${params.seed}, a 20 KiB line every ${params.longLineEvery} lines`);
    const corpus = ensureCriCorpus(ctx.dataDir, params);
    ctx.log(corpus.reused ? `  reused ${corpus.dir}` : `  generated ${corpus.dir} in ${corpus.generateSeconds.toFixed(1)} s`);
    ctx.log(`  ${corpus.lines} records (${corpus.physicalLines} CRI lines), ${(corpus.bytes / MiB).toFixed(1)} MiB`);
    warmPageCache(corpus.paths);

    const scratch = fs.mkdtempSync(join(tmpdir(), 'kta-bench-outputs-'));
    const failedWork: string[] = [];
    const measure = async (name: string, fn: (work: string) => Promise<Measurement>) => {
      if (!only.has(name)) return;
      let n = 0;
      try {
        measurements.push(
          await medianRun(name, repeat, ctx.log, async () => {
            // A fresh data_dir per run: checkpoints of an earlier run would make it start at EOF.
            const work = join(scratch, `${name}-${++n}`);
            try {
              const m = await fn(work);
              if (!keep) fs.rmSync(work, { recursive: true, force: true });
              return m;
            } catch (err) {
              failedWork.push(work);
              throw err;
            }
          }),
        );
      } catch (err) {
        const message = `${name} run failed: ${(err as Error).message}`;
        errors.push(message);
        ctx.log(`  ${message}`);
      }
    };

    const agentConfig = (work: string, listen: string, output: Record<string, unknown>) => ({
      node_name: 'bench-node',
      data_dir: join(work, 'data'),
      log_level: 'warn',
      server: { listen },
      kubernetes: { mode: 'disabled' },
      sources: { [SOURCE]: { type: 'container_logs', include: [join(corpus.containersDir, '*.log')], read_from: 'beginning' } },
      outputs: { [OUTPUT]: { inputs: [SOURCE], ...output } },
    });
    const agent = async (name: string, work: string, output: Record<string, unknown>): Promise<Measurement> => {
      const listen = `127.0.0.1:${await freePort()}`;
      const m = await runAgent({
        name,
        repoRoot: ctx.repoRoot,
        workDir: work,
        listen,
        config: agentConfig(work, listen, output),
        metric: { name: 'telemetry_agent_output_records_total', labels: { output: OUTPUT, status: 'sent' } },
        target: corpus.lines,
        bytes: corpus.bytes,
        timeoutMs,
      });
      // Batches are acknowledged whole, so a count past the corpus means records were sent twice.
      if (m.lines !== corpus.lines) throw new Error(`sent counter reached ${m.lines}, expected exactly ${corpus.lines} (duplicates?)`);
      return m;
    };

    const wantedSinks = new Set<SinkProtocol>();
    const runnable: NetworkRun[] = [];
    for (const run of NETWORK_RUNS) {
      if (!only.has(run.name)) continue;
      if (!(run.type in plugins)) {
        skipped.push(`${run.name} (type ${run.type} is not in outputs/registry.ts yet)`);
        continue;
      }
      // Checked before any run: a key this scenario gets wrong is its own error, not the output's.
      const parsed = plugins[run.type]!.schema.safeParse({ type: run.type, inputs: [SOURCE], ...run.config(1) });
      if (!parsed.success) {
        errors.push(`${run.name}: the bench's config does not validate against outputs' ${run.type} schema: ${parsed.error?.message}`);
        continue;
      }
      runnable.push(run);
      wantedSinks.add(run.sink);
    }

    let sink: SinkProcess | undefined;
    let sinkFinal: SinkStats | undefined;
    try {
      await measure('raw', async () => {
        const m = await runReportingChild('raw', join(ctx.repoRoot, 'bench/baseline_raw.ts'), [corpus.containersDir], ctx.repoRoot);
        if (m.lines !== corpus.physicalLines) throw new Error(`counted ${m.lines} lines, expected ${corpus.physicalLines}`);
        if (m.bytes !== corpus.bytes) throw new Error(`read ${m.bytes} bytes, expected ${corpus.bytes}`);
        return m;
      });

      await measure('file', async (work) => {
        const out = join(work, 'out.ndjson');
        const m = await agent('file', work, { type: 'file', path: out });
        const n = countLines(out);
        if (n !== corpus.lines) throw new Error(`output ${out} has ${n} lines, expected ${corpus.lines}`);
        m.notes = [`wrote ${(fs.statSync(out).size / MiB).toFixed(1)} MiB NDJSON`];
        return m;
      });

      if (runnable.length > 0) {
        sink = await SinkProcess.start(ctx.repoRoot, Object.fromEntries([...wantedSinks].map((p) => [p, 0])));
        ctx.log(`sink pid ${sink.pid}: ${Object.entries(sink.ports).map(([p, n]) => `${p}=${n}`).join(' ')}`);
      }
      for (const run of runnable) {
        const s = sink!;
        await measure(run.name, async (work) => {
          const before = await s.stats();
          const m = await agent(run.name, work, { type: run.type, ...run.config(s.ports[run.sink]!) });
          const after = await s.stats();
          const p0 = before.protocols[run.sink]!;
          const p1 = after.protocols[run.sink]!;
          const bytes = p1.bytes - p0.bytes;
          if (bytes === 0) throw new Error(`the sink received nothing on ${run.sink} although the agent counted ${m.lines} sent`);
          const requests = run.sink === 'syslog' ? `${p1.connections - p0.connections} connection(s)` : `${p1.requests - p0.requests} requests`;
          m.notes = [
            `sink got ${(bytes / MiB).toFixed(1)} MiB (${(bytes / corpus.lines).toFixed(0)} B/record) in ${requests}; sink CPU ${(after.cpuSeconds - before.cpuSeconds).toFixed(2)} s`,
          ];
          return m;
        });
      }
    } finally {
      if (sink) {
        try {
          sinkFinal = await sink.stop();
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      if (keep) notes.push(`kept ${scratch} (<run>-N/agent.yaml, agent.log, data/)`);
      else if (failedWork.length > 0) {
        for (const w of failedWork) fs.rmSync(join(w, 'out.ndjson'), { force: true });
        for (const e of fs.readdirSync(scratch)) if (!failedWork.includes(join(scratch, e))) fs.rmSync(join(scratch, e), { recursive: true, force: true });
        notes.push(`kept ${failedWork.join(', ')} (agent.yaml, agent.log, data/) of the failed run(s)`);
      } else fs.rmSync(scratch, { recursive: true, force: true });
    }

    const byName = new Map(measurements.map((m) => [m.name, m]));
    const file = byName.get('file');
    const targets: Target[] = [];
    for (const run of NETWORK_RUNS) {
      if (!only.has(run.name)) continue;
      const description = `${run.name} >= ${FILE_RATIO_TARGET}x file in lines per CPU-second`;
      const m = byName.get(run.name);
      if (!m || !file) {
        targets.push({ description, pass: undefined, detail: !file ? 'file not measured' : skipped.some((s) => s.startsWith(`${run.name} `)) ? 'not registered yet' : 'not measured' });
        continue;
      }
      const ratio = linesPerCpuSecond(m) / linesPerCpuSecond(file);
      targets.push({ description, pass: ratio >= FILE_RATIO_TARGET, detail: `${ratio.toFixed(2)}x (${Math.round(linesPerCpuSecond(m))} vs ${Math.round(linesPerCpuSecond(file))})` });
    }
    const agents = measurements.filter((m) => m.name !== 'raw');
    if (agents.length > 0) {
      const over = agents.filter((m) => m.peakRssBytes >= RSS_TARGET_MIB * MiB).sort((a, b) => b.peakRssBytes - a.peakRssBytes);
      const worst = agents.reduce((a, b) => (b.peakRssBytes > a.peakRssBytes ? b : a));
      targets.push({
        description: `every agent run peak RSS < ${RSS_TARGET_MIB} MiB (the file output's target in cri-throughput)`,
        pass: over.length === 0,
        detail:
          over.length === 0
            ? `highest ${(worst.peakRssBytes / MiB).toFixed(1)} MiB (${worst.name})`
            : `over: ${over.map((m) => `${m.name} ${(m.peakRssBytes / MiB).toFixed(1)}`).join(', ')} MiB`,
      });
    }

    notes.unshift(
      `input: ${corpus.files} files, ${corpus.lines} records (${corpus.physicalLines} CRI lines), ${(corpus.bytes / MiB).toFixed(1)} MiB, page cache warm`,
      'raw counts CRI lines (P and F); agent runs count records sent. CPU = user+system, all threads, of the agent process only',
      '(the sink runs in its own process). Agent: /proc/<pid>/stat and VmHWM read when the sent counter reached the record count',
      '(wall from spawn, includes start-up and the last batch\'s up to 1 s linger, 200 ms polls). Every agent row includes',
      'the agent\'s start-up CPU, a fixed cost that weighs most on the (fastest) file run and pulls ratios toward 1x on a small',
      'corpus: BENCH_OUTPUTS_MIB=256 or more for per-record costs. Machine shared with other work (2 cores): figures are noisy.',
    );
    for (const s of skipped) notes.push(`skipped ${s}`);
    for (const m of measurements) for (const n of m.notes ?? []) notes.push(`${m.name}: ${n}`);
    if (sinkFinal) notes.push(`sink total CPU ${sinkFinal.cpuSeconds.toFixed(2)} s`);

    return { measurements, table: throughputTable(measurements, ['raw', 'file']), notes, targets, errors };
  },
};
