/**
 * A pod with 10,000 labels (issue 11: "1 MB, which the API accepts; default pod_labels include *:
 * 200 lines of 40 bytes become 206 MB at the receiver; the node agent peaks at 540 MiB RSS (limit
 * 384 Mi): OOM-killed"). The fake Kubernetes API (in this process) serves the pod; the agent
 * (a child) tails its log, enriches, and sends over `http` to the sink (bench/output_sinks.ts);
 * BENCH_METADATA_LINES lines of 40 bytes are written once the pod is known. Measured: bytes at
 * the receiver, the agent's peak RSS (VmHWM, the whole run) and CPU.
 *
 * Two runs: `budget` (the defaults: kubernetes_metadata.max_keys 64, max_bytes 8KiB) and
 * `unbounded` (max_keys 10000, max_bytes 16MiB: every label on every record, as before the budget;
 * the baseline of the same invocation; enriched bytes still count against batches and windows,
 * which is what keeps even this run's memory bounded). The ratio column is receiver bytes over the
 * budget run's. Targets (budget): under 16 KiB per line at the receiver, peak RSS under 384 MiB
 * (the DaemonSet's memory limit).
 *
 * Env: BENCH_METADATA_LINES (200), BENCH_METADATA_LABELS (10000), BENCH_ONLY (budget,unbounded), BENCH_KEEP=1.
 */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeKubeApiServer, makePod, uid, writeKubeconfig } from '../../agent/demo/kube_api_server.ts';
import { AgentChild, metricValue } from '../agent_process.ts';
import { MiB, formatTable, freePort, intEnv, runChoices, type Measurement, type Scenario, type ScenarioOutcome, type Target } from '../measure.ts';
import { SinkProcess } from '../sink_process.ts';

const RUNS = ['budget', 'unbounded'] as const;
type Run = (typeof RUNS)[number];
const METADATA: Record<Run, Record<string, unknown>> = {
  budget: {},
  unbounded: { max_keys: 10_000, max_bytes: '16MiB' },
};
const NODE = 'bench-node';
const LIMIT_MIB = 384;
const PER_LINE_TARGET = 16 * 1024;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function criLines(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += `2026-11-21T10:00:00.${String(i).padStart(9, '0')}Z stdout F line ${String(i).padStart(5, '0')} ${'.'.repeat(28)}\n`;
  return s;
}

export const metadataBudget: Scenario = {
  name: 'metadata_budget',
  description: 'a pod with 10,000 labels: bytes at the receiver and agent peak RSS, with the per-pod metadata budget vs without',
  async run(ctx): Promise<ScenarioOutcome> {
    const lines = intEnv(ctx.env, 'BENCH_METADATA_LINES', 200);
    const labelCount = intEnv(ctx.env, 'BENCH_METADATA_LABELS', 10_000);
    const { only, keep } = runChoices(ctx.env, RUNS);
    const work = fs.mkdtempSync(join(tmpdir(), 'kta-bench-metadata-'));
    const labels: Record<string, string> = { app: 'flood' };
    for (let i = 1; i < labelCount; i++) labels[`example.com/label-${String(i).padStart(5, '0')}`] = `v${i}-${'x'.repeat(56)}`;
    const fake = new FakeKubeApiServer({ token: 't' });
    await fake.start();
    const sink = await SinkProcess.start(ctx.repoRoot, { http: 0 });
    const results: { run: Run; m: Measurement; receiverBytes: number; sent: number }[] = [];
    const errors: string[] = [];
    try {
      for (const run of RUNS) {
        if (!only.has(run)) continue;
        const root = join(work, run);
        const podUid = uid();
        const pod = `flood-${run}`;
        fake.create('pods', makePod({ uid: podUid, name: pod, namespace: 'shop', nodeName: NODE, labels }));
        const podDir = join(root, 'var/log/pods', `shop_${pod}_${podUid}`, 'app');
        const containers = join(root, 'var/log/containers');
        fs.mkdirSync(podDir, { recursive: true });
        fs.mkdirSync(containers, { recursive: true });
        const listen = `127.0.0.1:${await freePort()}`;
        const agent = new AgentChild(ctx.repoRoot, root, listen, {
          node_name: NODE,
          data_dir: join(root, 'data'),
          server: { listen },
          kubernetes: { mode: 'kubeconfig', kubeconfig: writeKubeconfig(work, { server: fake.url, token: 't', insecure: true }, `kubeconfig-${run}`) },
          sources: { containers: { type: 'container_logs', include: [`${containers}/*.log`], kubernetes_metadata: { wait_for_pod: '30s', ...METADATA[run] } } },
          outputs: { out: { type: 'http', inputs: ['containers'], endpoint: `http://127.0.0.1:${sink.ports.http}` } },
        });
        try {
          await agent.waitForMetrics(30_000);
          const before = (await sink.stats()).protocols.http?.bytes ?? 0;
          const log = join(podDir, '0.log');
          fs.writeFileSync(log, criLines(lines));
          fs.symlinkSync(log, join(containers, `${pod}_shop_app-${'0'.repeat(64)}.log`));
          const start = performance.now();
          let sent = 0;
          while (sent < lines) {
            agent.alive();
            if (performance.now() - start > 300_000) throw agent.error(`${sent} of ${lines} records sent in 300 s`);
            await sleep(200);
            sent = metricValue((await agent.metrics()) ?? '', 'telemetry_agent_output_records_total', { output: 'out', status: 'sent' }) ?? 0;
          }
          const wallSeconds = (performance.now() - start) / 1000;
          const stats = agent.stats();
          await agent.stop();
          const receiverBytes = ((await sink.stats()).protocols.http?.bytes ?? 0) - before;
          results.push({ run, m: { name: run, lines: sent, bytes: receiverBytes, wallSeconds, cpuSeconds: stats.cpuSeconds, peakRssBytes: stats.peakRssBytes }, receiverBytes, sent });
        } catch (err) {
          await agent.kill();
          errors.push(`${run}: ${(err as Error).message}`);
        }
      }
    } finally {
      await sink.stop().catch(() => undefined);
      await fake.close();
      if (!keep) fs.rmSync(work, { recursive: true, force: true });
    }
    const budget = results.find((r) => r.run === 'budget');
    const table = formatTable(
      ['run', 'records', 'at receiver MiB', 'per line KiB', 'ratio', 'peak RSS MiB', 'CPU s'],
      results.map((r) => [
        r.run,
        String(r.sent),
        (r.receiverBytes / MiB).toFixed(2),
        (r.receiverBytes / r.sent / 1024).toFixed(1),
        budget ? (r.receiverBytes / budget.receiverBytes).toFixed(1) : '-',
        (r.m.peakRssBytes / MiB).toFixed(1),
        r.m.cpuSeconds.toFixed(2),
      ]),
    );
    const notes = [`a pod with ${labelCount} labels (about 1 MB), ${lines} lines of 40 bytes, http output (uncompressed NDJSON) to a sink; ratio: receiver bytes / the budget run's`];
    const targets: Target[] = [];
    if (only.has('budget')) {
      targets.push(
        {
          description: `budget: under ${PER_LINE_TARGET / 1024} KiB per line at the receiver`,
          pass: budget ? budget.receiverBytes / budget.sent < PER_LINE_TARGET : undefined,
          detail: budget ? `${(budget.receiverBytes / budget.sent / 1024).toFixed(1)} KiB` : 'run failed',
        },
        {
          description: `budget: peak RSS under the pod limit (${LIMIT_MIB} MiB)`,
          pass: budget ? budget.m.peakRssBytes < LIMIT_MIB * MiB : undefined,
          detail: budget ? `${(budget.m.peakRssBytes / MiB).toFixed(1)} MiB` : 'run failed',
        },
      );
    }
    return { measurements: results.map((r) => r.m), table, notes, targets, errors };
  },
};
