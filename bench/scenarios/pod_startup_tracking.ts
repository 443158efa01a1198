/**
 * Pod startup tracking: a generated watch stream of the pods on one node (each pod ADDED when bound,
 * MODIFIED as its sandbox, containers and readiness come up, a restart for some, DELETED), read by
 *   raw       bench/pods_raw.ts      read + JSON.parse per line, the floor for any watch consumer
 *   tracker   bench/pods_tracker.ts  + PodStartupTracker: stage histograms, restarts, spans built and batched
 * each in its own process. The run fails unless `tracker` observes exactly one startup per pod. Target:
 * >= 5,000 pod updates per CPU-second (a node churning a pod a second updates it a handful of times:
 * well under 1 % of a core).
 *
 * Env: BENCH_PODS (10000 pods; each pod is about 3.5 KiB of JSON per update, as the API sends it), BENCH_ONLY (e.g. `tracker`).
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { startupPod } from '../../agent/demo/cluster_objects.ts';
import { linesPerCpuSecond, runReportingChild, throughputTable, type Measurement, type Scenario, type ScenarioContext, type ScenarioOutcome } from '../measure.ts';

const RATE_TARGET = 5_000;

function generate(dataDir: string, pods: number): string {
  const path = join(dataDir, `pods-${pods}.ndjson`);
  const fd = fs.openSync(path, 'w');
  const t0 = Date.parse('2026-11-21T10:00:00Z');
  for (let i = 0; i < pods; i++) {
    const created = t0 + i * 1000;
    const base = { name: `web-7d9f8b6c5-${i.toString(36)}`, namespace: `ns-${i % 40}`, uid: `pod-${i}`, nodeName: 'node-a', rs: { name: 'web-7d9f8b6c5', uid: 'rs-1' } };
    const steps = [
      { created, scheduled: created + 1000 },
      { created, scheduled: created + 1000, readyToStart: created + 2000 },
      { created, scheduled: created + 1000, readyToStart: created + 2000, started: created + 6000 },
      { created, scheduled: created + 1000, readyToStart: created + 2000, started: created + 6000, ready: created + 9000 },
      ...(i % 10 === 0 ? [{ created, scheduled: created + 1000, readyToStart: created + 2000, started: created + 60000, ready: created + 9000, restartCount: 1, lastTerminated: 'OOMKilled' }] : []),
    ];
    const lines = steps.map((t, k) => JSON.stringify({ type: k === 0 ? 'ADDED' : 'MODIFIED', object: startupPod({ ...base, t }) }));
    lines.push(JSON.stringify({ type: 'DELETED', object: startupPod({ ...base, t: steps.at(-1)! }) }));
    fs.writeSync(fd, lines.join('\n') + '\n');
  }
  fs.closeSync(fd);
  return path;
}

export const podStartupTracking: Scenario = {
  name: 'pod_startup_tracking',
  description: 'cluster signals: pod watch stream -> startup stages, restarts, spans (node-local tracker)',
  async run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
    const pods = Number(ctx.env.BENCH_PODS ?? 10_000);
    const only = ctx.env.BENCH_ONLY?.split(',');
    const path = generate(ctx.dataDir, pods);
    const measurements: Measurement[] = [];
    const errors: string[] = [];
    const notes = [`${pods} pods, ${fs.readFileSync(path, 'utf8').split('\n').length - 1} watch events (${(fs.statSync(path).size / 1048576).toFixed(1)} MiB)`];
    for (const [name, script] of [
      ['raw', 'bench/pods_raw.ts'],
      ['tracker', 'bench/pods_tracker.ts'],
    ] as const) {
      if (only && !only.includes(name)) continue;
      try {
        const m = await runReportingChild(name, join(ctx.repoRoot, script), [path], ctx.repoRoot);
        if (name === 'tracker' && (m.report.extra?.startups !== pods || m.report.extra?.tracked !== 0)) {
          errors.push(`tracker observed ${m.report.extra?.startups} startups (expected ${pods}) and kept ${m.report.extra?.tracked} pods (expected 0)`);
        }
        if (m.report.extra) notes.push(`${name}: ${Object.entries(m.report.extra).map(([k, v]) => `${k}=${v}`).join(' ')}`);
        measurements.push(m);
      } catch (e) {
        errors.push(`${name} ${(e as Error).message}`);
      }
    }
    fs.rmSync(path, { force: true });
    const tr = measurements.find((m) => m.name === 'tracker');
    const rate = tr ? linesPerCpuSecond(tr) : undefined;
    return {
      measurements,
      table: throughputTable(measurements, ['raw']),
      notes,
      targets: [
        {
          description: `tracker >= ${RATE_TARGET} pod updates per CPU-second`,
          pass: rate === undefined ? undefined : rate >= RATE_TARGET,
          detail: rate === undefined ? 'not measured' : `${Math.round(rate)}`,
        },
      ],
      errors,
    };
  },
};
