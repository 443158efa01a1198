import { appendFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.ts';
import { parseConfig } from '../../agent/config/load.ts';
import { FakeKubeApiServer, makePod, uid, writeKubeconfig } from '../../agent/demo/kube_api_server.ts';
import { createLogger } from '../../agent/log.ts';
import { criLine, criTime, NodeTree, readRecords, requireNode24, scrapeMetric } from '../helpers/agent_harness.ts';
import { freePort, waitFor } from '../helpers/child_agent.ts';

/**
 * Issue 11: "a pod with 10,000 labels (1 MB, which the API accepts); default pod_labels:
 * { include: ['*'] }: 200 lines of 40 bytes become 206 MB at the receiver; the node agent peaks at
 * 540 MiB RSS (limit 384 Mi): OOM-killed". Labels and annotations copied onto records have a budget
 * per pod (kubernetes_metadata.max_keys, max_bytes), and what enrichment adds counts against the
 * source's window and the buffers. The agent's RSS for this pod is the `metadata_budget` benchmark's.
 */

const NODE = 'test-node';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** 10,000 labels of about 100 bytes each on the records (`k8s.pod.label.` + key + value): 1 MB. */
function hugeLabels(): Record<string, string> {
  const labels: Record<string, string> = { app: 'flood' };
  for (let i = 1; i < 10_000; i++) labels[`example.com/label-${String(i).padStart(5, '0')}`] = `v${i}-${'x'.repeat(56)}`;
  return labels;
}

/** 200 CRI lines whose message is 40 bytes. */
function lines(): string {
  let s = '';
  for (let i = 0; i < 200; i++) s += criLine(`line ${String(i).padStart(3, '0')} ${'.'.repeat(31)}`, { time: criTime(i + 1) });
  return s;
}

async function setup(o: { metadata?: string; source?: string; outputs?: string; firstLines?: number } = {}): Promise<{ tree: NodeTree; agent: Agent; logs: string[]; base: string; log: string }> {
  requireNode24();
  const fake = new FakeKubeApiServer({ token: 'tok' });
  await fake.start();
  cleanups.push(() => fake.close());
  const tree = new NodeTree('kta-hardening-metadata-');
  cleanups.push(() => tree.remove());
  const kubeconfig = writeKubeconfig(tree.root, { server: fake.url, token: 'tok', insecure: true });
  const pod = fake.create('pods', makePod({ uid: uid(), name: 'flood-1', namespace: 'shop', nodeName: NODE, labels: hugeLabels() }));
  const port = await freePort();
  const config = parseConfig(
    `node_name: ${NODE}
data_dir: ${tree.dataDir}
shutdown_timeout: 2s
server: { listen: "127.0.0.1:${port}" }
kubernetes: { mode: kubeconfig, kubeconfig: ${kubeconfig} }
sources:
  containers:
    type: container_logs
    include: [${join(tree.containersDir, '*.log')}]
    glob_interval: 100ms
    poll_interval: 100ms
    kubernetes_metadata: { wait_for_pod: 30s${o.metadata ?? ''} }
${o.source ?? ''}
outputs:
  out: { type: file, inputs: [containers], path: ${tree.outputPath} }
${o.outputs ?? ''}`,
    'metadata.yaml',
    {},
  );
  const logs: string[] = [];
  const agent = new Agent(config, createLogger('debug', (l) => logs.push(l)));
  cleanups.push(() => agent.stop().then(() => undefined));
  await agent.start();
  const c = tree.container({ namespace: 'shop', pod: 'flood-1', uid: pod.metadata.uid!, content: lines().split('\n').slice(0, o.firstLines ?? 200).map((l) => `${l}\n`).join('') });
  return { tree, agent, logs, base: `http://127.0.0.1:${port}`, log: c.logPath };
}

describe('hardening: pod metadata has a budget', { timeout: 120_000 }, () => {
  it('a pod with 10,000 labels (1 MB), default pod_labels include *: records carry 64 labels, the receiver gets about 1.5 MB instead of 206 MB, the cut is counted and logged once', async () => {
    const { tree, logs, base } = await setup();
    await waitFor('200 records', () => readRecords(tree.outputPath).length === 200, 60_000);
    const records = readRecords(tree.outputPath);
    for (const r of records) {
      const labels = Object.keys(r.resource).filter((k) => k.startsWith('k8s.pod.label.'));
      expect(labels).toHaveLength(64);
      expect(r.resource['k8s.pod.label.app']).toBe('flood');
      expect(r.resource['kta.k8s.metadata.truncated']).toBe(true);
      expect(Buffer.byteLength(JSON.stringify(r.resource))).toBeLessThan(8 * 1024 + 1024);
    }
    // 200 × (a 40-byte line + at most 8 KiB of metadata + the rest of the record): not 200 × 1 MB.
    const received = statSync(tree.outputPath).size;
    expect(received).toBeLessThan(200 * 10 * 1024);
    expect(await scrapeMetric(base, 'telemetry_agent_pod_metadata_dropped_keys_total', { source: 'containers', kind: 'label' })).toBe(10_000 - 64);
    const warnings = logs.filter((l) => l.includes('pod shop/flood-1: 10000 labels and annotations'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/\(965\.6 KiB\) are more than kubernetes_metadata allows per pod \(max_keys 64, max_bytes 8KiB\): 64 \(6\.0 KiB\) are on its records, 9936 \(959\.7 KiB\) left out, kta\.k8s\.metadata\.truncated set/);
  });

  it('max_keys and max_bytes are the user\'s to set: a byte budget binds before the key count', async () => {
    const { tree, base } = await setup({ metadata: ', max_keys: 1000, max_bytes: 2KiB' });
    await waitFor('200 records', () => readRecords(tree.outputPath).length === 200, 60_000);
    const r = readRecords(tree.outputPath)[0]!;
    const kept = Object.entries(r.resource).filter(([k]) => k.startsWith('k8s.pod.label.'));
    expect(kept.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0)).toBeLessThanOrEqual(2048);
    expect(kept.length).toBeGreaterThan(10);
    expect(await scrapeMetric(base, 'telemetry_agent_pod_metadata_dropped_keys_total', { source: 'containers', kind: 'label' })).toBe(10_000 - kept.length);
  });

  it('what enrichment adds counts against the buffers and the source window: an output that cannot deliver holds the enriched bytes, and reading stops at max_unacked_bytes of them', async () => {
    const closed = await freePort();
    const { tree, base } = await setup({
      outputs: `  down: { type: http, inputs: [containers], endpoint: "http://127.0.0.1:${closed}", retry: { initial: 1s, max: 1s } }\n`,
    });
    await waitFor('every line read', async () => (await scrapeMetric(base, 'telemetry_agent_source_records_total', { source: 'containers' })) === 200, 60_000);
    const raw = (await scrapeMetric(base, 'telemetry_agent_source_bytes_total', { source: 'containers' }))!;
    const held = (await scrapeMetric(base, 'telemetry_agent_buffer_bytes', { output: 'down', type: 'memory' }))!;
    const unacked = (await scrapeMetric(base, 'telemetry_agent_source_unacked_bytes', { source: 'containers' }))!;
    expect(raw).toBeLessThan(200 * 100);
    // Each record carries about 6.5 KiB of labels: that is what the buffer and the window hold.
    expect(held).toBeGreaterThan(200 * 6 * 1024);
    expect(unacked).toBeGreaterThan(200 * 6 * 1024);
    expect(readRecords(tree.outputPath)).toHaveLength(200);
  });

  it('a source window of 256 KiB stops reading after about 40 enriched records, not 200 raw lines', async () => {
    const closed = await freePort();
    // Reads of 1 KiB (about 12 lines each), so the window can stop the source between them. One
    // line first, and the rest once the pod is known: records of a pod not known yet are held,
    // unweighed, until it is (kubernetes_metadata.wait_for_pod).
    const { tree, base, log } = await setup({
      source: '    max_unacked_bytes: 256KiB\n    read_chunk: 1KiB\n',
      outputs: `  down: { type: http, inputs: [containers], endpoint: "http://127.0.0.1:${closed}", retry: { initial: 1s, max: 1s } }\n`,
      firstLines: 1,
    });
    await waitFor('the first record enriched', () => readRecords(tree.outputPath)[0]?.resource['k8s.pod.label.app'] === 'flood', 60_000);
    appendFileSync(log, lines().split('\n').slice(1).join('\n'));
    await waitFor('the window full', async () => ((await scrapeMetric(base, 'telemetry_agent_source_unacked_bytes', { source: 'containers' })) ?? 0) >= 256 * 1024, 60_000);
    // Past its window the source reads no further until something is accepted, which the down
    // output never does: what it read by now is all it reads, far short of the 200 lines.
    const read = (await scrapeMetric(base, 'telemetry_agent_source_records_total', { source: 'containers' }))!;
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThan(100);
    await waitFor('those records in the file output', () => readRecords(tree.outputPath).length === read, 30_000);
  });
});
