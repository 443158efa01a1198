import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FakeKubeApiServer, writeKubeconfig } from '../agent/demo/kube_api_server.ts';
import { agentNodeFlags, CLI_PATH } from '../agent/runtime_flags.ts';
import { criLine, NodeTree } from './helpers/agent_harness.ts';
import { ChildAgent, freePort, NODE, suiteScratch, waitFor } from './helpers/child_agent.ts';
import { requireTool } from './helpers/tools.ts';

/**
 * issue 13: the alert rules and dashboards of deploy/ against a real Prometheus. `promtool test
 * rules` checks each alert's thresholds on synthetic series; then a real Prometheus scrapes a
 * running demo (every metric the dashboards draw, cluster signals included) and an agent driven
 * into each alert's condition, with the rules' thresholds scaled from minutes to seconds: every
 * alert fires, and every dashboard query returns data.
 */

const DEPLOY = fileURLToPath(new URL('../deploy/', import.meta.url));
/** The alerts issue 13 asks for, in the order of deploy/prometheus/alerts.yaml. */
const ALERTS = [
  'TelemetryAgentOutputFailing',
  'TelemetryAgentBufferOld',
  'TelemetryAgentTailLagRising',
  'TelemetryAgentRecordsDropped',
  'TelemetryAgentCheckpointErrors',
  'TelemetryAgentNoClusterEventsLeader',
  'TelemetryAgentConfigReloadRejected',
];
const { root, onCleanup } = suiteScratch('kta-prom-rules-', 'KTA_KEEP_PROM_TESTS');

/** The rules with the waits shortened, each change checked to apply exactly where meant. */
function scaledRules(): string {
  let text = readFileSync(join(DEPLOY, 'prometheus/alerts.yaml'), 'utf8');
  const once = (from: string, to: string) => {
    const n = text.split(from).length - 1;
    if (n !== 1) throw new Error(`alerts.yaml: expected "${from}" once, found it ${n} times`);
    text = text.replace(from, to);
  };
  once('(time() - telemetry_agent_output_last_success_timestamp_seconds > 300)', '(time() - telemetry_agent_output_last_success_timestamp_seconds > 5)');
  once('telemetry_agent_buffer_oldest_record_age_seconds > 600', 'telemetry_agent_buffer_oldest_record_age_seconds > 5');
  once('telemetry_agent_tail_lag_bytes > 100e6', 'telemetry_agent_tail_lag_bytes > 20000');
  once('deriv(telemetry_agent_tail_lag_bytes[10m])', 'deriv(telemetry_agent_tail_lag_bytes[20s])');
  const waits = text.match(/for: [1-9]\d*m/g) ?? [];
  expect(waits.length).toBe(5);
  return text.replace(/for: [1-9]\d*m/g, 'for: 0s');
}

function dashboardQueries(): { dashboard: string; panel: string; expr: string }[] {
  const out: { dashboard: string; panel: string; expr: string }[] = [];
  for (const file of ['telemetry-agent-pipeline.json', 'cluster-signals.json']) {
    const d = JSON.parse(readFileSync(join(DEPLOY, 'grafana', file), 'utf8')) as { panels: { title: string; type: string; targets?: { expr: string }[] }[] };
    for (const p of d.panels) for (const t of p.targets ?? []) out.push({ dashboard: file, panel: p.title, expr: t.expr });
  }
  return out;
}

/** Grafana's variables as Grafana would fill them for "All" and a range covering the test. */
function grafanaExpand(expr: string): string {
  return expr.replaceAll('$job', '.+').replaceAll('$instance', '.+').replaceAll('$__rate_interval', '30s').replaceAll('$__range', '10m');
}

describe('alert rules and dashboards against a real Prometheus', () => {
  it('promtool: the rules load, and each alert fires at its threshold and not short of it', (ctx) => {
    const promtool = requireTool(ctx, 'promtool');
    const check = spawnSync(promtool, ['check', 'rules', join(DEPLOY, 'prometheus/alerts.yaml')], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain('SUCCESS: 7 rules found');
    const test = spawnSync(promtool, ['test', 'rules', 'alerts.test.yaml'], { cwd: join(DEPLOY, 'prometheus'), encoding: 'utf8' });
    expect(test.status, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toContain('SUCCESS');
    // every alert has a runbook line and is unit-tested
    const rules = readFileSync(join(DEPLOY, 'prometheus/alerts.yaml'), 'utf8');
    const alerts = [...rules.matchAll(/- alert: (\w+)/g)].map((m) => m[1]!);
    expect(alerts).toEqual(ALERTS);
    expect(rules.match(/ {10}runbook: /g)).toHaveLength(alerts.length);
    const tests = readFileSync(join(DEPLOY, 'prometheus/alerts.test.yaml'), 'utf8');
    for (const a of alerts) expect(tests, a).toContain(`alertname: ${a}`);
  });

  it('a scraped demo and an agent driven into each condition: every alert fires, every dashboard query returns data', async (ctx) => {
    const prometheus = requireTool(ctx, 'prometheus');
    const began = Date.now() / 1000;
    const procs: ChildProcess[] = [];
    onCleanup(() => procs.forEach((p) => p.exitCode === null && p.kill('SIGKILL')));

    // The demo: cluster signals, transforms, every pipeline metric.
    // Prometheus scrapes from before anything happens: a counter or histogram series that appears
    // with its first event is only an increase() for Prometheus if it saw the time before.
    const ports: number[] = [];
    while (ports.length < 4) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    const [port, demoPort, promPort, nobody] = ports as [number, number, number, number];
    writeFileSync(join(root, 'alerts.yaml'), scaledRules());
    writeFileSync(
      join(root, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        'rule_files: [alerts.yaml]',
        'scrape_configs:',
        `  - { job_name: telemetry-agent, scrape_interval: 1s, scrape_timeout: 1s, static_configs: [{ targets: ["127.0.0.1:${port}"] }] }`,
        `  - { job_name: telemetry-agent-demo, scrape_interval: 1s, scrape_timeout: 1s, static_configs: [{ targets: ["127.0.0.1:${demoPort}"] }] }`,
        '',
      ].join('\n'),
    );
    let promLog = '';
    const prom = spawn(prometheus, [`--config.file=${join(root, 'prometheus.yml')}`, `--storage.tsdb.path=${join(root, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(prom);
    prom.stdout!.on('data', (d: Buffer) => (promLog += d.toString()));
    prom.stderr!.on('data', (d: Buffer) => (promLog += d.toString()));
    const api_ = `http://127.0.0.1:${promPort}/api/v1`;
    await waitFor('Prometheus ready', async () => {
      if (prom.exitCode !== null) throw new Error(`prometheus exited:\n${promLog.slice(-3000)}`);
      return (await fetch(`http://127.0.0.1:${promPort}/-/ready`).catch(() => undefined))?.ok;
    }, 30_000, 200);

    const demo = spawn(NODE, [...agentNodeFlags(), CLI_PATH, 'demo', '--port', String(demoPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(demo);
    let demoOut = '';
    demo.stdout!.on('data', (d: Buffer) => (demoOut += d.toString()));
    demo.stderr!.on('data', () => {});

    // The driven agent: an API that forbids Leases, receivers that are not there, a source blocked behind a full buffer.
    const api = new FakeKubeApiServer();
    await api.start();
    onCleanup(() => void api.close());
    api.failNext(1_000_000, { kind: 'status', status: 403, reason: 'Forbidden', message: 'leases.coordination.k8s.io is forbidden: User "system:serviceaccount:telemetry-agent:telemetry-agent" cannot get resource "leases"' }, { resource: 'leases' });
    const dir = join(root, 'driven');
    // Three node trees laid out as kubelet does (the source reads only kubelet's files), one container each.
    mkdirSync(dir, { recursive: true });
    const trees = { lossy: new NodeTree('kta-prom-lossy-'), stuck: new NodeTree('kta-prom-stuck-'), kept: new NodeTree('kta-prom-kept-') };
    onCleanup(() => Object.values(trees).forEach((t) => t.remove()));
    const [lossyLog, stuckLog, keptLog] = [trees.lossy, trees.stuck, trees.kept].map((t) => t.container({ namespace: 'shop', pod: 'web-1' }).logPath) as [string, string, string];
    const include = (t: NodeTree) => JSON.stringify(join(t.containersDir, '*.log'));
    // nothing listens on `nobody`
    const config = join(dir, 'agent.yaml');
    const good = [
      'node_name: driven-node',
      `data_dir: ${JSON.stringify(join(dir, 'data'))}`,
      `server: { listen: "127.0.0.1:${port}" }`,
      `kubernetes: { mode: kubeconfig, kubeconfig: ${JSON.stringify(writeKubeconfig(dir, { server: api.url, insecure: true }))} }`,
      'sources:',
      `  lossy: { type: container_logs, include: [${include(trees.lossy)}], glob_interval: 200ms, poll_interval: 200ms, kubernetes_metadata: { enabled: false } }`,
      // Delivered to a file: its checkpoint moves all the time, until its folder is taken away.
      `  kept: { type: container_logs, include: [${include(trees.kept)}], checkpoint_interval: 200ms, glob_interval: 200ms, poll_interval: 200ms, kubernetes_metadata: { enabled: false } }`,
      `  stuck: { type: container_logs, include: [${include(trees.stuck)}], glob_interval: 200ms, poll_interval: 200ms, max_unacked_bytes: 8KiB, kubernetes_metadata: { enabled: false } }`,
      '  cluster: { type: kubernetes_events, lease_namespace: telemetry-agent, lease_duration: 3s, renew_deadline: 2s, retry_period: 500ms }',
      'outputs:',
      `  lossy: { type: http, inputs: [lossy], endpoint: "http://127.0.0.1:${nobody}/ingest", buffer: { type: memory, max_size: 16KiB, when_full: drop_newest }, retry: { initial: 100ms, max: 500ms } }`,
      `  blocked: { type: http, inputs: [stuck], endpoint: "http://127.0.0.1:${nobody}/ingest", buffer: { type: memory, max_size: 8KiB, when_full: block }, retry: { initial: 100ms, max: 500ms } }`,
      `  archive: { type: file, inputs: [kept], path: ${JSON.stringify(join(dir, 'archive.ndjson'))} }`,
      '',
    ].join('\n');
    writeFileSync(config, good);
    const driven = new ChildAgent(config);
    driven.start();
    procs.push(driven.proc!);
    await driven.ready(port, 30_000).catch(() => undefined); // the cluster source never gets ready: it has no Lease

    let n = 0;
    const writer = setInterval(() => {
      let text = '';
      for (let i = 0; i < 200; i++, n++) text += criLine(`{"level":"info","msg":"request ${n} ${'x'.repeat(80)}"}`, { time: new Date().toISOString() });
      appendFileSync(lossyLog, text);
      appendFileSync(stuckLog, text);
      appendFileSync(keptLog, text);
    }, 200);
    onCleanup(() => clearInterval(writer));

    try {
      // Prometheus must have seen the healthy counters first: increase() needs the 0 before the 1.
      await waitFor('Prometheus scraping both agents', async () => {
        if (prom.exitCode !== null) throw new Error(`prometheus exited:\n${promLog.slice(-3000)}`);
        const res = await fetch(`${api_}/query?query=${encodeURIComponent('count_over_time(up[1m]) >= 3')}`).catch(() => undefined);
        const body = res?.ok ? ((await res.json()) as { data: { result: unknown[] } }) : undefined;
        return (body?.data.result.length ?? 0) === 2;
      }, 60_000, 500);
      // Conditions the agent cannot reach alone: a checkpoint folder that becomes a file, a broken config, watches cut.
      const writes = async () => Number(/telemetry_agent_checkpoint_writes_total\{source="kept"\} (\d+)/.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1] ?? 0);
      await waitFor('checkpoints of the source that delivers', async () => (await writes()) > 0 && existsSync(join(dir, 'data', 'checkpoints')), 60_000, 200);
      rmSync(join(dir, 'data', 'checkpoints'), { recursive: true, force: true });
      writeFileSync(join(dir, 'data', 'checkpoints'), 'not a folder');
      writeFileSync(config, good.replace('sources:', 'sources:\n  broken: { type: container_logz }'));
      driven.proc!.kill('SIGHUP');
      api.breakWatches();

      /** The firing alerts: every instance's labels, by alert name. */
      const firing = async () => {
        const res = await fetch(`${api_}/alerts`).catch(() => undefined);
        const out = new Map<string, Record<string, string>[]>();
        if (!res?.ok) return out;
        const body = (await res.json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
        for (const a of body.data.alerts.filter((x) => x.state === 'firing')) out.set(a.labels.alertname!, [...(out.get(a.labels.alertname!) ?? []), a.labels]);
        return out;
      };
      let alerts = new Map<string, Record<string, string>[]>();
      await waitFor(
        'every alert firing',
        async () => {
          if (prom.exitCode !== null) throw new Error(`prometheus exited:\n${promLog.slice(-3000)}`);
          alerts = await firing();
          return ALERTS.every((a) => alerts.has(a));
        },
        120_000,
        500,
      ).catch((err: Error) => {
        const log = driven.stderr.split('\n').filter((l) => !l.includes('WARN  output')).join('\n');
        throw new Error(`${err.message}: firing ${[...alerts.keys()].join(', ') || 'none'}\nagent log:\n${log.slice(-3000)}`, { cause: err });
      });
      const instances = (name: string) => alerts.get(name) ?? [];
      expect(instances('TelemetryAgentOutputFailing')).toContainEqual(expect.objectContaining({ job: 'telemetry-agent', output: 'lossy' }));
      expect(instances('TelemetryAgentBufferOld')).toContainEqual(expect.objectContaining({ output: 'lossy' }));
      expect(instances('TelemetryAgentTailLagRising')).toContainEqual(expect.objectContaining({ source: 'stuck' }));
      expect(instances('TelemetryAgentRecordsDropped')).toContainEqual(expect.objectContaining({ component: 'lossy', reason: 'buffer_full' }));
      expect(instances('TelemetryAgentCheckpointErrors')).toContainEqual(expect.objectContaining({ source: 'kept' }));
      expect(instances('TelemetryAgentNoClusterEventsLeader')).toEqual([expect.objectContaining({ job: 'telemetry-agent' })]);
      expect(instances('TelemetryAgentConfigReloadRejected')).toEqual([expect.objectContaining({ job: 'telemetry-agent', result: 'failure' })]);
      // Where nothing is wrong, nothing fires: the delivering output, and the demo's job (it has its leader).
      const all = [...(await firing()).values()].flat();
      expect(all.filter((l) => l.output === 'archive' || l.component === 'archive')).toEqual([]);
      const demoAlerts = all.filter((l) => l.job === 'telemetry-agent-demo');
      expect(demoAlerts.filter((l) => l.alertname !== 'TelemetryAgentRecordsDropped')).toEqual([]);

      // Every dashboard query, as Grafana sends it, returns at least one value over the run.
      await waitFor('the demo story', () => demoOut.includes('story     done'), 90_000, 500);
      await new Promise((r) => setTimeout(r, 3000)); // the story's last spans and metrics scraped
      const empty: string[] = [];
      const queries = dashboardQueries();
      expect(queries.length).toBeGreaterThan(40);
      for (const q of queries) {
        const params = new URLSearchParams({ query: grafanaExpand(q.expr), start: String(began), end: String(Date.now() / 1000), step: '2' });
        const res = await fetch(`${api_}/query_range?${params}`);
        const body = (await res.json()) as { status: string; error?: string; data?: { result: { values: [number, string][] }[] } };
        if (body.status !== 'success') {
          empty.push(`${q.dashboard} "${q.panel}": ${body.error}`);
          continue;
        }
        const values = (body.data?.result ?? []).flatMap((s) => s.values.map((v) => Number(v[1])));
        if (!values.some((v) => !Number.isNaN(v))) empty.push(`${q.dashboard} "${q.panel}": no data for ${q.expr}`);
      }
      expect(empty).toEqual([]);
    } finally {
      clearInterval(writer);
      demo.kill('SIGINT');
      await new Promise((r) => (demo.exitCode !== null ? r(null) : demo.once('close', r)));
      await driven.kill('SIGTERM').catch(() => undefined);
      prom.kill('SIGTERM');
      await new Promise((r) => (prom.exitCode !== null ? r(null) : prom.once('close', r)));
      await api.close();
    }
  }, 300_000);
});
