import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { agentNodeFlags, CLI_PATH } from '../agent/runtime_flags.ts';
import type { ReceivedLog, ReceivedSpan } from '../agent/demo/otlp_receiver.ts';
import { sampleValue } from '../agent/status/prom_text.ts';
import { NODE, suiteScratch, waitFor } from './helpers/child_agent.ts';

/**
 * issue 13, "What it must show": `npm start` runs its scripted story and the whole mission shows —
 * enriched and parsed records, one record per Java trace, the excluded pod absent, the k8s_* series
 * with the story's values, the spans of each step at the embedded receiver, and the network output
 * catching up after the receiver's outage with nothing lost.
 */

const { root } = suiteScratch('kta-demo-', 'KTA_KEEP_DEMO_TEST');

function readNdjson<T>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);
}

interface ArchiveRecord {
  timestamp: string;
  body: unknown;
  resource: Record<string, string>;
  attributes: Record<string, unknown>;
}

/** The same record seen by the file output and by the OTLP receiver: time (ns), pod, container, body. */
const nanos = (rfc3339: string) => BigInt(Date.parse(rfc3339.slice(0, 19) + 'Z')) * 1_000_000n + BigInt(rfc3339.slice(20, 29).padEnd(9, '0'));
const keyOfArchived = (r: ArchiveRecord) => `${nanos(r.timestamp)} ${r.resource['k8s.pod.name'] ?? r.resource['k8s.node.name']} ${r.resource['k8s.container.name'] ?? ''} ${JSON.stringify(r.body)}`;
const keyOfReceived = (r: ReceivedLog) => `${r.timeUnixNano} ${String(r.resource['k8s.pod.name'] ?? r.resource['k8s.node.name'])} ${String(r.resource['k8s.container.name'] ?? '')} ${JSON.stringify(r.body)}`;

describe('demo (npm start)', () => {
  it('plays the whole mission: enrichment, parsing, multiline, exclusion, k8s_* metrics, spans, and an outage with nothing lost', async () => {
    const record = join(root, 'record');
    const child = spawn(NODE, [...agentNodeFlags(), CLI_PATH, 'demo', '--port', '0', '--record', record], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    try {
      const base = await waitFor('the status page address', () => /look\s+(http:\/\/127\.0\.0\.1:\d+)\/status/.exec(stdout)?.[1], 30_000);
      await waitFor('the end of the story', () => stdout.includes('story     done'), 90_000, 250);
      await waitFor('the receiver to catch up', () => stdout.includes('receiver  caught up'), 30_000, 250);
      // The last spans leave the agent within a second of their step (OTEL_BSP_SCHEDULE_DELAY).
      await waitFor('the failed claim\'s span', () => stdout.includes('span      pvc.provision db/scratch-postgres-0'), 20_000, 250);
      // The failed pull ends at its start + pod_startup_timeout (25 s in the demo), in ERROR.
      const pulls = () => readNdjson<ReceivedSpan>(join(record, 'received-spans.ndjson')).filter((s) => s.name === 'container.image_pull');
      await waitFor('both image pull spans', () => pulls().length === 2, 20_000, 250);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      child.kill('SIGINT');
      expect(await exited, stderr).toBe(0);

      // k8s_* series with the story's values
      const v = (name: string, labels: Record<string, string> = {}) => sampleValue(metrics, name, labels);
      expect(v('k8s_deployment_rollouts_total', { namespace: 'shop', result: 'complete' })).toBe(2);
      expect(v('k8s_deployment_rollouts_total', { namespace: 'shop', result: 'superseded' })).toBe(1);
      expect(v('k8s_deployment_rollout_duration_seconds_sum', { result: 'complete' })).toBe(6 + 2);
      expect(v('k8s_pod_startup_duration_seconds_count', { owner_kind: 'Deployment' })).toBe(2);
      expect(v('k8s_pod_startup_duration_seconds_sum', { owner_kind: 'Deployment' })).toBe(5 + 3);
      expect(v('k8s_pod_startup_failures_total', { owner_kind: 'Deployment', reason: 'ImagePull' })).toBe(1);
      expect(v('k8s_pvc_provisioning_duration_seconds_count', { storage_class: 'gp3' })).toBe(2);
      expect(v('k8s_pvc_provisioning_duration_seconds_sum', { storage_class: 'gp3' })).toBe(4 + 3);
      expect(v('k8s_pvc_provisioning_failures_total')).toBe(3);
      expect(v('k8s_node_not_ready_duration_seconds_count')).toBe(1);
      expect(v('k8s_node_not_ready_duration_seconds_sum')).toBe(10);
      expect(v('k8s_events_total', { reason: 'TaintManagerEviction' })).toBe(3);
      expect(v('telemetry_agent_dropped_records_total', { component: 'containers', reason: 'excluded' })).toBeGreaterThan(0);
      expect(v('telemetry_agent_output_retries_total', { output: 'receiver' })).toBeGreaterThan(0);

      // What the embedded receiver got
      const received = readNdjson<ReceivedLog>(join(record, 'received-logs.ndjson'));
      const archived = readNdjson<ArchiveRecord>(join(record, 'archive.ndjson'));
      expect(archived.length).toBeGreaterThan(1000);
      const pod = (r: ReceivedLog) => String(r.resource['k8s.pod.name'] ?? '');
      const container = (r: ReceivedLog) => String(r.resource['k8s.container.name'] ?? '');

      // enrichment: labels and the owning deployment, through the ReplicaSet
      const webApp = received.filter((r) => pod(r).startsWith('web-') && container(r) === 'app');
      expect(webApp.length).toBeGreaterThan(50);
      for (const r of webApp) expect(r.resource).toMatchObject({ 'k8s.pod.label.app': 'web', 'k8s.pod.label.tier': 'frontend', 'k8s.deployment.name': 'web', 'k8s.replicaset.name': expect.stringMatching(/^web-/) });
      // (container records only: the cluster's Events about the story's pods are records too, with the pod as their resource)
      const checkout = received.filter((r) => pod(r).startsWith('checkout-') && container(r) === 'checkout');
      expect(checkout.length).toBeGreaterThan(20);
      expect(checkout.filter((r) => r.resource['k8s.deployment.name'] !== 'checkout')).toEqual([]);
      // parsing: JSON (annotation parser-app: json) and logfmt (parser: logfmt) bodies are objects, with their level numbered
      for (const r of webApp.filter((x) => typeof x.body === 'object')) expect(Object.keys(r.body as object)).toEqual(expect.arrayContaining(['msg', 'level']));
      expect(webApp.filter((r) => typeof r.body === 'object').length / webApp.length).toBeGreaterThan(0.9);
      expect(webApp.every((r) => typeof r.body !== 'object' || r.severityNumber > 0)).toBe(true);
      const worker = received.filter((r) => pod(r) === 'worker-0' && typeof r.body === 'object');
      expect(worker.length).toBeGreaterThan(5);
      expect(worker[0]!.body).toMatchObject({ msg: expect.stringMatching(/^processed /) });
      // multiline: a Java trace is one record with every frame; no frame alone (the app's own log line
      // before it, `ERROR … Checkout failed`, is a record of its own, as with Fluent Bit's java rule)
      const traces = checkout.filter((r) => String(r.body).includes('java.lang.IllegalStateException'));
      expect(traces.length).toBeGreaterThan(0);
      for (const t of traces) {
        const lines = String(t.body).split('\n');
        expect(lines[0]).toMatch(/^java\.lang\.IllegalStateException: payment declined for order \d+$/);
        expect(lines).toContain('\tat com.example.shop.payment.PaymentClient.charge(PaymentClient.java:142)');
        expect(lines.some((l) => l.startsWith('Caused by: java.net.SocketTimeoutException'))).toBe(true);
        expect(lines.at(-1)).toMatch(/^\t\.\.\. \d+ more$/);
        expect(lines).toHaveLength(10);
      }
      expect(checkout.filter((r) => / ERROR 1 --- .* Checkout failed for order \d+$/.test(String(r.body))).every((r) => r.severityNumber === 17)).toBe(true);
      expect(checkout.filter((r) => /^(\tat |Caused by:|\t\.\.\. )/.test(String(r.body)))).toEqual([]);
      // the excluded pod: nothing of it anywhere
      expect(received.filter((r) => pod(r).startsWith('loadgen-'))).toEqual([]);
      expect(archived.filter((r) => r.resource['k8s.pod.name']?.startsWith('loadgen-'))).toEqual([]);
      // cluster events as records too
      expect(received.some((r) => r.attributes['k8s.event.reason'] === 'BackOff' || (typeof r.body === 'string' && r.body.includes('Back-off pulling image')))).toBe(true);

      // the outage: the receiver went away and came back, and got every record the archive got
      expect(stdout).toMatch(/receiver {2}back after 8 s: [1-9]\d* records waited in the disk buffer/);
      const got = new Set(received.map(keyOfReceived));
      const missing = archived.filter((r) => !got.has(keyOfArchived(r)));
      expect(missing.slice(0, 3)).toEqual([]);
      expect(got.size).toBe(new Set(archived.map(keyOfArchived)).size);
      expect(stdout).toMatch(/stopped {3}the receiver got \d+ records \(nothing lost: the archive has \d+\)/);

      // the spans of each step of the story
      const spans = readNdjson<ReceivedSpan>(join(record, 'received-spans.ndjson'));
      const named = (name: string) => spans.filter((s) => s.name === name);
      const rollouts = named('deployment.rollout').map((s) => [s.attributes['kta.revision'], s.attributes['kta.result']]);
      expect(rollouts.sort()).toEqual([['2', 'complete'], ['3', 'superseded'], ['4', 'complete']]);
      expect(named('replicaset.scale').length).toBeGreaterThan(0);
      const startups = named('pod.startup').map((s) => [s.attributes['k8s.pod.name'], s.status.code]);
      expect(startups.sort()).toEqual([['checkout-5d6c7b8a9-q2w3e', 2], ['checkout-7f8d9c6b5-n4x8w', 1], ['checkout-7f8d9c6b5-z9v2m', 1]]);
      expect(named('container.image_pull').map((s) => [s.attributes['k8s.pod.name'], s.status.code]).sort()).toEqual([['checkout-5d6c7b8a9-q2w3e', 2], ['checkout-7f8d9c6b5-n4x8w', 1]]);
      const claims = named('pvc.provision').map((s) => [s.attributes['k8s.persistentvolumeclaim.name'], s.status.code]);
      expect(claims.sort()).toEqual([['data-postgres-0', 1], ['scratch-postgres-0', 2], ['wal-postgres-0', 1]]);
      const node = named('node.not_ready');
      expect(node.map((s) => s.attributes['k8s.node.name'])).toEqual(['demo-node-2']);
      expect(named('pod.eviction').map((s) => s.parentSpanId)).toEqual([node[0]!.spanId, node[0]!.spanId, node[0]!.spanId]);
      expect(new Set(spans.map((s) => s.spanId)).size).toBe(spans.length);

      // the narration: short, readable, says where to look
      expect(stdout).toContain('kube-telemetry-agent demo: the whole mission on this machine');
      expect(stdout).toMatch(/ {2}journal {3}(not read: .+|.+ with .*journalctl.*)/);
      expect(stdout.split('\n').filter(Boolean).length).toBeLessThan(60);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 180_000);

  it('`npm start -- --help` lists what the demo shows', async () => {
    const child = spawn(NODE, [...agentNodeFlags(), CLI_PATH, 'demo', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    expect(await new Promise((r) => child.once('close', r))).toBe(0);
    for (const what of ['simulated node', 'simulated API server', 'rollout', 'ImagePullBackOff', 'claim', 'NotReady', 'journal', 'disk buffer', 'embedded receiver', '/status', 'top', 'tap', '--record', '--seconds']) {
      expect(stdout).toContain(what);
    }
  });
});
