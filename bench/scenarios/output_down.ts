/**
 * Output down: the agent's memory while its one output cannot connect for minutes. A writer child
 * (bench/cri_writer.ts) appends CRI lines to container logs at a steady rate; the agent tails them
 * into an `http` output whose port has no listener (connection refused) with `when_full: block`,
 * for as long as the writer runs. Then the sink (bench/output_sinks.ts) comes up on that port and
 * the agent catches up. Run twice: memory buffer (defaults) and disk buffer (max_size 64MiB).
 * The agent's VmRSS is sampled every 5 s; at the end of the outage buffer_bytes and tail_lag_bytes
 * (from /metrics) show where the logs wait: in the buffer up to its size, the rest unread on disk
 * with the source paused. After the sink is up: the time until every line written was sent
 * (sent counter == lines written, exactly). The raw reader runs over the first run's files once
 * written, the floor every benchmark shows.
 * Target: RSS growth from outage start + 30 s (a quarter of the outage when shorter) to its end
 * below 10% or 15 MiB, whichever is more.
 *
 * Env: BENCH_DOWN_SECONDS (180), BENCH_DOWN_RATE (20000 lines/s), BENCH_DOWN_FILES (10),
 * BENCH_ONLY (e.g. `raw,memory`), BENCH_DOWN_CATCHUP_TIMEOUT_S (300), BENCH_KEEP=1 (keep the temp
 * folder: logs, configs, agent logs).
 */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentChild, metricValue } from '../agent_process.ts';
import {
  MiB,
  formatTable,
  freePort,
  intEnv,
  runChoices,
  runReportingChild,
  throughputTable,
  type Measurement,
  type ProcStats,
  type Scenario,
  type ScenarioContext,
  type ScenarioOutcome,
  type Target,
} from '../measure.ts';
import { SinkProcess } from '../sink_process.ts';

const SOURCE = 'containers';
const OUTPUT = 'down';
const SAMPLE_MS = 5000;
const GROWTH_TARGET_FRACTION = 0.1;
const GROWTH_TARGET_MIB = 15;
const BUFFERS = {
  memory: { type: 'memory', when_full: 'block' },
  disk: { type: 'disk', max_size: '64MiB', when_full: 'block' },
} as const;
type BufferKind = keyof typeof BUFFERS;
const RUN_NAMES = ['raw', 'memory', 'disk'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sample {
  /** Seconds since the outage began (the writer's start). */
  t: number;
  rssBytes: number;
}

interface DownResult {
  kind: BufferKind;
  measurement: Measurement;
  samples: Sample[];
  outageSeconds: number;
  /** /metrics at the outage's end. */
  bufferBytes: number | undefined;
  bufferRecords: number | undefined;
  tailLagBytes: number | undefined;
  sentDuringOutage: number | undefined;
  retries: number | undefined;
  cpuOutageSeconds: number;
  /** From the sink's start to the first records counted sent. */
  firstSentSeconds: number;
  /** From the sink's start to every line sent. */
  catchUpSeconds: number;
  cpuCatchUpSeconds: number;
  linesWritten: number;
  sent: number;
  sinkBytes: number;
  writerBehind: string;
  containersDir: string;
}

const mib = (b: number | undefined) => (b === undefined ? '-' : (b / MiB).toFixed(1));

/** The sample nearest to `t` seconds into the outage. */
function sampleAt(samples: Sample[], t: number): Sample {
  return samples.reduce((best, s) => (Math.abs(s.t - t) < Math.abs(best.t - t) ? s : best));
}

/** Where growth is measured from: outage start + 30 s, or a quarter of a shorter outage. */
function referenceSeconds(outageSeconds: number): number {
  return Math.min(30, outageSeconds / 4);
}

async function runDown(
  ctx: ScenarioContext,
  kind: BufferKind,
  work: string,
  o: { seconds: number; rate: number; files: number; catchUpTimeoutMs: number },
): Promise<DownResult> {
  const logsRoot = join(work, 'logs');
  const containersDir = join(logsRoot, 'var/log/containers');
  const listen = `127.0.0.1:${await freePort()}`;
  // Nothing listens here until the sink starts: every request is refused (ECONNREFUSED).
  const outputPort = await freePort();
  const config = {
    node_name: 'bench-node',
    data_dir: join(work, 'data'),
    log_level: 'warn',
    server: { listen },
    kubernetes: { mode: 'disabled' },
    sources: { [SOURCE]: { type: 'container_logs', include: [join(containersDir, '*.log')], read_from: 'beginning' } },
    outputs: { [OUTPUT]: { type: 'http', inputs: [SOURCE], endpoint: `http://127.0.0.1:${outputPort}/ingest`, buffer: BUFFERS[kind] } },
  };
  const agent = new AgentChild(ctx.repoRoot, work, listen, config);
  let sink: SinkProcess | undefined;
  try {
    await agent.waitForMetrics(30_000);
    ctx.log(`  [${kind}] agent up; output port ${outputPort} refuses connections; writer: ${o.rate} lines/s into ${o.files} files for ${o.seconds} s`);

    const outageStart = performance.now();
    const cpuAtStart = agent.stats().cpuSeconds;
    let writerDone = false;
    const writer = runReportingChild('writer', join(ctx.repoRoot, 'bench/cri_writer.ts'), [logsRoot, String(o.files), String(o.rate), String(o.seconds)], ctx.repoRoot).finally(
      () => (writerDone = true),
    );
    const samples: Sample[] = [];
    let nextSample = 0;
    while (!writerDone) {
      const t = (performance.now() - outageStart) / 1000;
      if (t * 1000 >= nextSample) {
        samples.push({ t, rssBytes: agent.stats().rssBytes });
        if (samples.length % 6 === 0) ctx.log(`  [${kind}] t=${t.toFixed(0)} s RSS ${mib(samples[samples.length - 1]!.rssBytes)} MiB`);
        nextSample += SAMPLE_MS;
      }
      await Promise.race([writer.catch(() => undefined), sleep(Math.max(10, nextSample - t * 1000))]);
    }
    const written = await writer;
    const outageSeconds = (performance.now() - outageStart) / 1000;
    const endStats = agent.stats();
    samples.push({ t: outageSeconds, rssBytes: endStats.rssBytes });
    const text = (await agent.metrics()) ?? '';
    const bufferLabels = { output: OUTPUT };
    const sentDuringOutage = metricValue(text, 'telemetry_agent_output_records_total', { output: OUTPUT, status: 'sent' });
    const r = {
      bufferBytes: metricValue(text, 'telemetry_agent_buffer_bytes', bufferLabels),
      bufferRecords: metricValue(text, 'telemetry_agent_buffer_records', bufferLabels),
      tailLagBytes: metricValue(text, 'telemetry_agent_tail_lag_bytes', { source: SOURCE }),
      retries: metricValue(text, 'telemetry_agent_output_retries_total', bufferLabels),
    };
    ctx.log(
      `  [${kind}] outage over after ${outageSeconds.toFixed(1)} s: ${written.lines} lines (${mib(written.bytes)} MiB) written; ` +
        `buffer ${mib(r.bufferBytes)} MiB / ${r.bufferRecords ?? '-'} records, tail lag ${mib(r.tailLagBytes)} MiB, RSS ${mib(endStats.rssBytes)} MiB; starting the sink`,
    );

    const upStart = performance.now();
    sink = await SinkProcess.start(ctx.repoRoot, { http: outputPort });
    let firstSent: number | undefined;
    let sent = sentDuringOutage ?? 0;
    let lastProgress = performance.now();
    let final: ProcStats | undefined;
    for (;;) {
      agent.alive();
      const now = performance.now();
      if (now - upStart > o.catchUpTimeoutMs) throw agent.error(`catch-up timed out after ${o.catchUpTimeoutMs / 1000} s at ${sent} of ${written.lines} sent`);
      // The first retry after the sink is up may wait out a backoff of up to retry.max (30 s).
      if (now - lastProgress > 90_000) throw agent.error(`no progress for 90 s at ${sent} of ${written.lines} sent`);
      const m = await agent.metrics();
      const v = m === undefined ? undefined : metricValue(m, 'telemetry_agent_output_records_total', { output: OUTPUT, status: 'sent' });
      if (v !== undefined && v !== sent) {
        sent = v;
        lastProgress = performance.now();
        firstSent ??= (lastProgress - upStart) / 1000;
      }
      if (sent >= written.lines) {
        final = agent.stats();
        break;
      }
      await sleep(200);
    }
    const catchUpSeconds = (performance.now() - upStart) / 1000;
    const wallSeconds = (performance.now() - outageStart) / 1000;
    // Let a duplicate batch in flight land before the last count.
    await sleep(1500);
    const last = (await agent.metrics()) ?? '';
    sent = metricValue(last, 'telemetry_agent_output_records_total', { output: OUTPUT, status: 'sent' }) ?? sent;
    const failed = metricValue(last, 'telemetry_agent_output_records_total', { output: OUTPUT, status: 'failed' }) ?? 0;
    await agent.stop();
    const sinkStats = await sink.stop();
    sink = undefined;
    if (sent !== written.lines) throw new Error(`sent counter ${sent}, expected exactly the ${written.lines} lines written`);
    if (failed !== 0) throw new Error(`${failed} records counted failed`);

    return {
      kind,
      measurement: {
        name: kind,
        lines: written.lines,
        bytes: written.bytes,
        wallSeconds,
        cpuSeconds: final.cpuSeconds,
        peakRssBytes: final.peakRssBytes,
      },
      samples,
      outageSeconds,
      ...r,
      sentDuringOutage,
      cpuOutageSeconds: endStats.cpuSeconds - cpuAtStart,
      firstSentSeconds: firstSent ?? catchUpSeconds,
      catchUpSeconds,
      cpuCatchUpSeconds: final.cpuSeconds - endStats.cpuSeconds,
      linesWritten: written.lines,
      sent,
      sinkBytes: sinkStats?.protocols.http?.bytes ?? NaN,
      writerBehind: String(written.report.extra?.max_behind_lines ?? '-'),
      containersDir,
    };
  } finally {
    await agent.kill();
    if (sink) await sink.stop().catch(() => undefined);
  }
}

export const outputDown: Scenario = {
  name: 'output_down',
  description: 'an http output refused for minutes (when_full: block): agent memory stays flat, then it catches up',

  async run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
    const env = ctx.env;
    const o = {
      seconds: intEnv(env, 'BENCH_DOWN_SECONDS', 180),
      rate: intEnv(env, 'BENCH_DOWN_RATE', 20_000),
      files: Math.max(1, intEnv(env, 'BENCH_DOWN_FILES', 10)),
      catchUpTimeoutMs: intEnv(env, 'BENCH_DOWN_CATCHUP_TIMEOUT_S', 300) * 1000,
    };
    if (o.seconds < 10) throw new Error('BENCH_DOWN_SECONDS must be at least 10 (RSS is sampled every 5 s)');
    const { only, keep } = runChoices(env, RUN_NAMES);
    const measurements: Measurement[] = [];
    const results: DownResult[] = [];
    const errors: string[] = [];
    const notes: string[] = [];
    const scratch = fs.mkdtempSync(join(tmpdir(), 'kta-bench-down-'));
    const failedWork: string[] = [];
    let rawDone = false;

    try {
      for (const kind of Object.keys(BUFFERS) as BufferKind[]) {
        if (!only.has(kind)) continue;
        const work = join(scratch, kind);
        ctx.log(`running ${kind} buffer...`);
        let result: DownResult | undefined;
        try {
          result = await runDown(ctx, kind, work, o);
          results.push(result);
          measurements.push(result.measurement);
          ctx.log(`  ${kind}: ${result.sent} of ${result.linesWritten} sent, caught up ${result.catchUpSeconds.toFixed(1)} s after the sink came up`);
        } catch (err) {
          failedWork.push(work);
          const message = `${kind} run failed: ${(err as Error).message}`;
          errors.push(message);
          ctx.log(`  ${message}`);
        }
        // The raw floor over the same files, once: the first run's files are complete by now.
        if (!rawDone && only.has('raw') && fs.existsSync(join(work, 'logs/var/log/containers'))) {
          rawDone = true;
          try {
            ctx.log('running raw...');
            const dir = join(work, 'logs/var/log/containers');
            const m = await runReportingChild('raw', join(ctx.repoRoot, 'bench/baseline_raw.ts'), [dir], ctx.repoRoot);
            if (result && m.lines !== result.linesWritten) throw new Error(`counted ${m.lines} lines, the writer wrote ${result.linesWritten}`);
            measurements.unshift(m);
          } catch (err) {
            errors.push(`raw run failed: ${(err as Error).message}`);
          }
        }
        // Each run writes ~rate x seconds x 300 bytes of logs: drop them before the next run.
        if (!keep) fs.rmSync(join(work, 'logs'), { recursive: true, force: true });
        if (!keep && !failedWork.includes(work)) fs.rmSync(work, { recursive: true, force: true });
      }
    } finally {
      if (keep) notes.push(`kept ${scratch} (<buffer>/agent.yaml, agent.log, data/, logs/)`);
      else if (failedWork.length > 0) notes.push(`kept ${failedWork.join(', ')} (agent.yaml, agent.log, data/) of the failed run(s)`);
      else fs.rmSync(scratch, { recursive: true, force: true });
    }

    const targets: Target[] = [];
    const downRows: string[][] = [];
    for (const r of results) {
      const refT = referenceSeconds(r.outageSeconds);
      const ref = sampleAt(r.samples, refT);
      const mid = sampleAt(r.samples, r.outageSeconds / 2);
      const end = r.samples[r.samples.length - 1]!;
      const max = Math.max(...r.samples.map((s) => s.rssBytes));
      const growth = end.rssBytes - ref.rssBytes;
      const allowed = Math.max(GROWTH_TARGET_FRACTION * ref.rssBytes, GROWTH_TARGET_MIB * MiB);
      downRows.push([
        r.kind,
        r.outageSeconds.toFixed(0),
        `${mib(ref.rssBytes)} @${ref.t.toFixed(0)}s`,
        `${mib(mid.rssBytes)} @${mid.t.toFixed(0)}s`,
        `${mib(end.rssBytes)} @${end.t.toFixed(0)}s`,
        mib(max),
        `${growth >= 0 ? '+' : ''}${mib(growth)}`,
        mib(r.bufferBytes),
        mib(r.tailLagBytes),
        r.cpuOutageSeconds.toFixed(2),
        r.firstSentSeconds.toFixed(1),
        r.catchUpSeconds.toFixed(1),
        Math.round((r.linesWritten - (r.sentDuringOutage ?? 0)) / r.catchUpSeconds).toLocaleString('en-US'),
        Math.round((r.linesWritten - (r.sentDuringOutage ?? 0)) / Math.max(0.2, r.catchUpSeconds - r.firstSentSeconds)).toLocaleString('en-US'),
        r.cpuCatchUpSeconds.toFixed(2),
        `${r.sent}/${r.linesWritten}`,
      ]);
      targets.push({
        description: `${r.kind} buffer: RSS growth from outage +${refT.toFixed(0)} s to its end < ${GROWTH_TARGET_FRACTION * 100}% or ${GROWTH_TARGET_MIB} MiB`,
        pass: growth < allowed,
        detail: `${growth >= 0 ? '+' : ''}${mib(growth)} MiB (${((growth / ref.rssBytes) * 100).toFixed(1)}%; ${mib(ref.rssBytes)} -> ${mib(end.rssBytes)} MiB, max ${mib(max)})`,
      });
      notes.push(`${r.kind}: RSS MiB every 5 s: ${r.samples.map((s) => (s.rssBytes / MiB).toFixed(0)).join(' ')}`);
      notes.push(
        `${r.kind}: at the outage's end ${r.bufferRecords ?? '-'} records in the buffer, ${r.sentDuringOutage ?? 0} sent, ${r.retries ?? '-'} retries; ` +
          `sink got ${mib(r.sinkBytes)} MiB; writer at most ${r.writerBehind} lines behind schedule`,
      );
    }
    for (const kind of Object.keys(BUFFERS)) {
      if (only.has(kind) && !results.some((r) => r.kind === kind)) {
        targets.push({ description: `${kind} buffer: RSS growth < ${GROWTH_TARGET_FRACTION * 100}% or ${GROWTH_TARGET_MIB} MiB`, pass: undefined, detail: 'run failed' });
      }
    }

    const downTable = formatTable(
      ['buffer', 'outage s', 'RSS ref MiB', 'RSS mid', 'RSS end', 'RSS max', 'growth', 'buffer MiB', 'tail lag MiB', 'CPU outage s', 'first sent s', 'catch-up s', 'catch-up lines/s', 'drain lines/s', 'CPU catch-up s', 'sent/written'],
      downRows,
    );
    notes.unshift(
      `writer: ${o.rate} lines/s (~300 B) into ${o.files} files for ${o.seconds} s; output: http to a port refusing connections, when_full: block;`,
      'memory buffer: defaults (32 MiB, ack on delivery: the source pauses at max_unacked_bytes); disk buffer: max_size 64MiB.',
      'Throughput rows: wall from the outage start to every line sent (bounded by the writer\'s rate), CPU and peak RSS of the',
      'agent over its whole life (/proc); raw reads the first run\'s files once written.',
      'RSS ref/mid/end: VmRSS at outage start + 30 s (a quarter of a shorter outage), its middle and its end; buffer and tail lag',
      'from /metrics at the outage\'s end; first sent / catch-up: seconds from the sink\'s start (includes the backoff wait,',
      'up to retry.max = 30 s, plus jitter); drain lines/s: from the first record sent to the last (the writer had stopped).',
      'Machine shared with other work (2 cores): times are noisy.',
    );
    const table = `${throughputTable(measurements, ['raw'])}\n\n${downTable}`;
    return { measurements, table, notes, targets, errors };
  },
};
