/**
 * Slowloris against the metrics port (issue 11: "19,500 half-open connections to the metrics
 * port, a header line every 2 s: RSS 135 -> 330 MB and never returns"). The agent runs with one
 * idle container source; attacker children (bench/slowloris_client.ts, each from its own loopback
 * address 127.0.0.2, .3, ...: a neighbour is another address than the kubelet) keep
 * BENCH_SLOWLORIS_CONNECTIONS sockets open to its port, each trickling a header line every 2 s and
 * reconnecting when closed, for BENCH_SLOWLORIS_SECONDS. Meanwhile a prober does what the kubelet does: GET /healthz on a new
 * connection every 200 ms, and a scraper GETs /metrics every 2 s. The agent's VmRSS is sampled
 * every 500 ms: idle before, during, and BENCH_SLOWLORIS_AFTER seconds after the attack.
 *
 * Two runs: `bounded` (the defaults: max_connections 256, header_timeout 10s, ...) and
 * `unbounded` (max_connections 65536 and timeouts of an hour: what the bounds prevent; the
 * baseline of the same invocation). The ratio column is peak RSS during the attack over the idle
 * RSS before it. Targets (bounded): RSS growth under 25 MiB, no probe failed, probe p99 under 1 s.
 *
 * Env: BENCH_SLOWLORIS_CONNECTIONS (19500), BENCH_SLOWLORIS_SECONDS (60), BENCH_SLOWLORIS_AFTER (10),
 * BENCH_SLOWLORIS_ATTACKERS (4 processes), BENCH_ONLY (bounded,unbounded), BENCH_KEEP=1.
 */
import * as fs from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentChild, metricValue } from '../agent_process.ts';
import { MiB, formatTable, freePort, intEnv, runChoices, runReportingChild, type Measurement, type Scenario, type ScenarioContext, type ScenarioOutcome, type Target } from '../measure.ts';

const RUNS = ['bounded', 'unbounded'] as const;
type Run = (typeof RUNS)[number];
const SERVER: Record<Run, Record<string, unknown>> = {
  bounded: {},
  unbounded: { max_connections: 65_536, header_timeout: '1h', request_timeout: '1h', idle_timeout: '1h' },
};
const PROBE_EVERY_MS = 200;
const SCRAPE_EVERY_MS = 2000;
const SAMPLE_EVERY_MS = 500;
const IDLE_SECONDS = 5;
const GROWTH_TARGET_MIB = 25;
const P99_TARGET_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Probe {
  phase: Phase;
  ms: number;
  ok: boolean;
}
type Phase = 'idle' | 'attack' | 'after';

interface RunResult {
  run: Run;
  measurement: Measurement;
  idleRss: number;
  peakAttackRss: number;
  endAttackRss: number;
  afterRss: number;
  probes: Probe[];
  scrapes: { phase: Phase; ok: boolean }[];
  attackers: Record<string, number>;
  closed: Record<string, number | undefined>;
  peakConnections: number;
  attackCpuSeconds: number;
}

/** One GET on a fresh connection (as the kubelet's prober: no keep-alive), with its latency. */
function probe(port: number, path: string, timeoutMs: number): Promise<{ ok: boolean; ms: number }> {
  const start = performance.now();
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve({ ok: res.statusCode === 200, ms: performance.now() - start }));
      res.on('error', () => resolve({ ok: false, ms: performance.now() - start }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ ok: false, ms: performance.now() - start }));
    req.end();
  });
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function runOne(ctx: ScenarioContext, run: Run, work: string, o: { connections: number; seconds: number; after: number; attackers: number }): Promise<RunResult> {
  const root = join(work, run);
  const containers = join(root, 'var/log/containers');
  fs.mkdirSync(containers, { recursive: true });
  const port = await freePort();
  const listen = `127.0.0.1:${port}`;
  const agent = new AgentChild(ctx.repoRoot, root, listen, {
    node_name: 'bench-node',
    data_dir: join(root, 'data'),
    server: { listen, ...SERVER[run] },
    kubernetes: { mode: 'disabled' },
    sources: { containers: { type: 'container_logs', include: [`${containers}/*.log`] } },
    outputs: { out: { type: 'file', inputs: ['containers'], path: join(root, 'out.ndjson') } },
  });
  try {
    await agent.waitForMetrics(30_000);
    let phase: Phase = 'idle';
    let running = true;
    const probes: Probe[] = [];
    const scrapes: { phase: Phase; ok: boolean }[] = [];
    const samples: { phase: Phase; rss: number }[] = [];
    let peakConnections = 0;
    const prober = (async () => {
      while (running) {
        const at = phase;
        const r = await probe(port, '/healthz', 5000);
        probes.push({ phase: at, ...r });
        await sleep(Math.max(0, PROBE_EVERY_MS - r.ms));
      }
    })();
    const scraper = (async () => {
      while (running) {
        const at = phase;
        const text = await agent.metrics();
        scrapes.push({ phase: at, ok: text !== undefined });
        const open = text === undefined ? undefined : metricValue(text, 'telemetry_agent_server_connections', {});
        if (open !== undefined) peakConnections = Math.max(peakConnections, open);
        await sleep(SCRAPE_EVERY_MS);
      }
    })();
    const sampler = setInterval(() => samples.push({ phase, rss: agent.stats().rssBytes }), SAMPLE_EVERY_MS);

    await sleep(IDLE_SECONDS * 1000);
    const cpuBefore = agent.stats().cpuSeconds;
    phase = 'attack';
    ctx.log(`  ${run}: ${o.connections} slow connections for ${o.seconds} s from ${o.attackers} processes`);
    const per = Math.ceil(o.connections / o.attackers);
    const attackers = await Promise.all(
      Array.from({ length: o.attackers }, (_, i) =>
        runReportingChild(`attacker ${i}`, join(ctx.repoRoot, 'bench/slowloris_client.ts'), ['127.0.0.1', String(port), String(per), String(o.seconds), `127.0.0.${2 + i}`], ctx.repoRoot),
      ),
    );
    const attackCpuSeconds = agent.stats().cpuSeconds - cpuBefore;
    const endAttackRss = agent.stats().rssBytes;
    phase = 'after';
    await sleep(o.after * 1000);
    running = false;
    clearInterval(sampler);
    await Promise.all([prober, scraper]);
    const text = (await agent.metrics()) ?? '';
    const closed: Record<string, number | undefined> = {};
    for (const reason of ['max_connections', 'timeout', 'bad_request', 'request_body']) {
      closed[reason] = metricValue(text, 'telemetry_agent_server_connections_closed_total', { reason });
    }
    const stats = agent.stats();
    await agent.stop();
    const rssOf = (p: Phase) => samples.filter((s) => s.phase === p).map((s) => s.rss);
    const idle = rssOf('idle');
    const attackerTotals: Record<string, number> = {};
    for (const a of attackers) for (const [k, v] of Object.entries(a.report.extra ?? {})) attackerTotals[k] = (attackerTotals[k] ?? 0) + Number(v);
    return {
      run,
      measurement: {
        name: run,
        lines: probes.filter((p) => p.ok).length,
        bytes: 0,
        wallSeconds: IDLE_SECONDS + o.seconds + o.after,
        cpuSeconds: stats.cpuSeconds,
        peakRssBytes: stats.peakRssBytes,
      },
      idleRss: idle.length ? idle[idle.length - 1]! : NaN,
      peakAttackRss: Math.max(...rssOf('attack'), endAttackRss),
      endAttackRss,
      afterRss: rssOf('after').at(-1) ?? NaN,
      probes,
      scrapes,
      attackers: attackerTotals,
      closed,
      peakConnections,
      attackCpuSeconds,
    };
  } catch (err) {
    await agent.kill();
    throw err;
  }
}

export const slowloris: Scenario = {
  name: 'slowloris',
  description: 'metrics port under 19,500 slow connections: agent RSS and /healthz latency, bounded vs unbounded server',
  async run(ctx): Promise<ScenarioOutcome> {
    const o = {
      connections: intEnv(ctx.env, 'BENCH_SLOWLORIS_CONNECTIONS', 19_500),
      seconds: intEnv(ctx.env, 'BENCH_SLOWLORIS_SECONDS', 60),
      after: intEnv(ctx.env, 'BENCH_SLOWLORIS_AFTER', 10),
      attackers: Math.max(1, intEnv(ctx.env, 'BENCH_SLOWLORIS_ATTACKERS', 4)),
    };
    const { only, keep } = runChoices(ctx.env, RUNS);
    const work = fs.mkdtempSync(join(tmpdir(), 'kta-bench-slowloris-'));
    const results: RunResult[] = [];
    const errors: string[] = [];
    try {
      for (const run of RUNS) {
        if (!only.has(run)) continue;
        try {
          results.push(await runOne(ctx, run, work, o));
        } catch (err) {
          errors.push(`${run}: ${(err as Error).message}`);
        }
      }
    } finally {
      if (!keep) fs.rmSync(work, { recursive: true, force: true });
    }
    const mib = (b: number) => (b / MiB).toFixed(1);
    const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '-');
    const rows = results.map((r) => {
      const attack = r.probes.filter((p) => p.phase === 'attack');
      const lat = attack.filter((p) => p.ok).map((p) => p.ms);
      return [
        r.run,
        mib(r.idleRss),
        mib(r.peakAttackRss),
        (r.peakAttackRss / r.idleRss).toFixed(2),
        mib(r.afterRss),
        `${attack.length - attack.filter((p) => p.ok).length}/${attack.length}`,
        ms(percentile(lat, 50)),
        ms(percentile(lat, 99)),
        ms(Math.max(...lat)),
        `${r.scrapes.filter((s) => s.phase === 'attack' && !s.ok).length}/${r.scrapes.filter((s) => s.phase === 'attack').length}`,
        String(r.peakConnections),
        r.attackCpuSeconds.toFixed(1),
      ];
    });
    const table = formatTable(
      ['run', 'idle RSS MiB', 'attack peak MiB', 'ratio', 'after MiB', 'probes failed', 'probe p50 ms', 'p99 ms', 'max ms', 'scrapes failed', 'peak conns', 'agent CPU s'],
      rows,
    );
    const notes = [
      `${o.connections} connections from ${o.attackers} processes for ${o.seconds} s, a header line every 2 s each, reconnecting when closed; probes: GET /healthz on a new connection every ${PROBE_EVERY_MS} ms; ratio: attack peak RSS / idle RSS`,
      ...results.map(
        (r) =>
          `${r.run}: attackers ${Object.entries(r.attackers).map(([k, v]) => `${k}=${v}`).join(' ')}; server closed ${Object.entries(r.closed).map(([k, v]) => `${k}=${v ?? '-'}`).join(' ')}; peak RSS of the whole run ${mib(r.measurement.peakRssBytes)} MiB`,
      ),
    ];
    const targets: Target[] = [];
    const bounded = results.find((r) => r.run === 'bounded');
    if (only.has('bounded')) {
      const attack = bounded?.probes.filter((p) => p.phase === 'attack') ?? [];
      const p99 = percentile(attack.filter((p) => p.ok).map((p) => p.ms), 99);
      targets.push(
        {
          description: `bounded: RSS growth during the attack under ${GROWTH_TARGET_MIB} MiB`,
          pass: bounded ? bounded.peakAttackRss - bounded.idleRss < GROWTH_TARGET_MIB * MiB : undefined,
          detail: bounded ? `${mib(bounded.peakAttackRss - bounded.idleRss)} MiB` : 'run failed',
        },
        {
          description: 'bounded: every /healthz probe answered during the attack',
          pass: bounded ? attack.every((p) => p.ok) : undefined,
          detail: bounded ? `${attack.filter((p) => !p.ok).length} of ${attack.length} failed` : 'run failed',
        },
        { description: `bounded: probe p99 under ${P99_TARGET_MS} ms`, pass: bounded ? p99 < P99_TARGET_MS : undefined, detail: `${ms(p99)} ms` },
      );
    }
    return { measurements: results.map((r) => r.measurement), table, notes, targets, errors };
  },
};
