/**
 * Event counting: a generated watch stream of Events (ADDED, then MODIFIED count bumps as the kubelet
 * and controllers PATCH them, some DELETED), read by
 *   raw     bench/events_raw.ts    read + JSON.parse per line, the floor for any watch consumer
 *   events  bench/events_agent.ts  + normalise, count deltas, event metrics, log record
 * each in its own process. The expected number of occurrences is known from the generator: the run
 * fails when `events` counts a different number. Target: >= 20,000 watch events per CPU-second (a busy
 * cluster writes hundreds of Events per second: a few per cent of a core). Both programs read the
 * whole stream into memory first, so peak RSS is mostly the input; `events` also JSON-encodes every
 * log record (the output's work), which `raw` does not.
 *
 * Env: BENCH_EVENTS (300000 watch events), BENCH_ONLY (e.g. `events`).
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { linesPerCpuSecond, runReportingChild, throughputTable, type Measurement, type Scenario, type ScenarioContext, type ScenarioOutcome } from '../measure.ts';

const RATE_TARGET = 20_000;
const REASONS = [
  ['kubelet', 'Pod', 'BackOff', 'Warning', 'Back-off restarting failed container app in pod'],
  ['kubelet', 'Pod', 'Pulled', 'Normal', 'Successfully pulled image "registry.example/app:v1" in 1.234s (1.5s including waiting). Image size: 123456 bytes.'],
  ['kubelet', 'Pod', 'Unhealthy', 'Warning', 'Readiness probe failed: HTTP probe failed with statuscode: 503'],
  ['default-scheduler', 'Pod', 'FailedScheduling', 'Warning', '0/50 nodes are available: 50 Insufficient cpu. preemption: 0/50 nodes are available'],
  ['replicaset-controller', 'ReplicaSet', 'SuccessfulCreate', 'Normal', 'Created pod: web-7d9f8-x2k4p'],
  ['ebs.csi.aws.com_ebs-csi-controller-0_677f0b5e', 'PersistentVolumeClaim', 'ProvisioningFailed', 'Warning', 'rpc error: code = ResourceExhausted desc = quota'],
] as const;

/** Writes the stream; returns its path and the occurrences a correct counter finds. */
export function generate(dataDir: string, n: number): { path: string; occurrences: number } {
  const path = join(dataDir, `events-${n}.ndjson`);
  const live: { obj: Record<string, unknown>; count: number }[] = [];
  const out: string[] = [];
  let occurrences = 0;
  let rv = 1000;
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const t0 = Date.parse('2026-11-21T10:00:00Z');
  for (let i = 0; i < n; i++) {
    const at = new Date(t0 + i * 10).toISOString().replace(/\.\d+Z$/, 'Z');
    const r = rand();
    if (live.length < 20_000 && (live.length === 0 || r < 0.3)) {
      const [component, kind, reason, type, message] = REASONS[i % REASONS.length]!;
      const obj = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `obj-${i}.${i.toString(16)}`, namespace: `ns-${i % 40}`, uid: `uid-${i}`, resourceVersion: String(++rv), creationTimestamp: at },
        involvedObject: { kind, name: `obj-${i}`, namespace: `ns-${i % 40}`, uid: `o-${i}` },
        reason,
        type,
        message,
        source: { component, host: 'node-1' },
        firstTimestamp: at,
        lastTimestamp: at,
        count: 1,
      };
      live.push({ obj, count: 1 });
      occurrences += 1;
      out.push(JSON.stringify({ type: 'ADDED', object: obj }));
    } else if (r < 0.97) {
      const e = live[Math.floor(rand() * live.length)]!;
      const bump = 1 + Math.floor(rand() * 3);
      e.count += bump;
      occurrences += bump;
      e.obj = { ...e.obj, count: e.count, lastTimestamp: at, metadata: { ...(e.obj.metadata as object), resourceVersion: String(++rv) } };
      out.push(JSON.stringify({ type: 'MODIFIED', object: e.obj }));
    } else {
      const e = live.splice(Math.floor(rand() * live.length), 1)[0]!;
      out.push(JSON.stringify({ type: 'DELETED', object: e.obj }));
    }
  }
  fs.writeFileSync(path, out.join('\n') + '\n');
  return { path, occurrences };
}

export const eventCounting: Scenario = {
  name: 'event_counting',
  description: 'kubernetes_events: watch stream -> normalise, count deltas, event metrics, log records',
  async run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
    const n = Number(ctx.env.BENCH_EVENTS ?? 300_000);
    const only = ctx.env.BENCH_ONLY?.split(',');
    const { path, occurrences } = generate(ctx.dataDir, n);
    const measurements: Measurement[] = [];
    const errors: string[] = [];
    const notes = [`${n} watch events (${(fs.statSync(path).size / 1048576).toFixed(1)} MiB), ${occurrences} occurrences expected`];
    for (const [name, script] of [
      ['raw', 'bench/events_raw.ts'],
      ['events', 'bench/events_agent.ts'],
    ] as const) {
      if (only && !only.includes(name)) continue;
      try {
        const m = await runReportingChild(name, join(ctx.repoRoot, script), [path], ctx.repoRoot);
        if (name === 'events' && m.report.extra?.occurrences !== occurrences) {
          errors.push(`events counted ${m.report.extra?.occurrences} occurrences, expected ${occurrences}`);
        }
        if (m.report.extra) notes.push(`${name}: ${Object.entries(m.report.extra).map(([k, v]) => `${k}=${v}`).join(' ')}`);
        measurements.push(m);
      } catch (e) {
        errors.push(`${name} ${(e as Error).message}`);
      }
    }
    fs.rmSync(path, { force: true });
    const ev = measurements.find((m) => m.name === 'events');
    const rate = ev ? linesPerCpuSecond(ev) : undefined;
    return {
      measurements,
      table: throughputTable(measurements, ['raw']),
      notes,
      targets: [
        {
          description: `events >= ${RATE_TARGET} watch events per CPU-second`,
          pass: rate === undefined ? undefined : rate >= RATE_TARGET,
          detail: rate === undefined ? 'not measured' : `${Math.round(rate)}`,
        },
      ],
      errors,
    };
  },
};
