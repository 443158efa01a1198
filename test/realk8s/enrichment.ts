import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentNodeFlags } from '../../agent/runtime_flags.ts';
import { agentConfigYaml, criLine, criTime, NodeTree, readRecords, type ContainerLog, type OutRecord } from '../helpers/agent_harness.ts';
import { CLI, freePort, NODE, waitFor } from '../helpers/child_agent.ts';
import { sumMetric } from './agents.ts';
import type { ControlPlane } from './control_plane.ts';
import { FakeKubelet } from './fake_kubelet.ts';
import { ApiProxy } from './api_proxy.ts';
import { applyAgentRbac, teardown } from './scenario.ts';
import { uniqueName, type SuiteControlPlane } from './suite.ts';
import { createDeployment, waitRollout } from './workloads.ts';

/**
 * Node-agent enrichment against the real API server, with the node agents' own RBAC (deploy/base):
 * the pods of a fake node, their log files in kubelet's layout in a temporary tree, the agent as a
 * separate process reading them from the beginning (the startup backlog).
 */

const LINES = 200;

interface NodeFixture {
  ns: string;
  kubelet: FakeKubelet;
  tree: NodeTree;
  containers: { log: ContainerLog; excluded: boolean }[];
}

/** A Deployment of 4 pods and one pod marked `telemetry-agent.io/exclude`, with a backlog of LINES lines each. */
async function nodeWithBacklog(cp: ControlPlane): Promise<NodeFixture> {
  const ns = uniqueName('enrich');
  await cp.createNamespace(ns);
  const kubelet = new FakeKubelet(cp, uniqueName('node'));
  await kubelet.start();
  await createDeployment(cp, ns, 'web', { replicas: 4, nodeSelector: { 'kubernetes.io/hostname': kubelet.node } });
  await cp.must('POST', `/api/v1/namespaces/${ns}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'noisy', labels: { app: 'noisy' }, annotations: { 'telemetry-agent.io/exclude': 'true' } },
    spec: { nodeName: kubelet.node, containers: [{ name: 'app', image: 'registry.example/noisy:1' }] },
  });
  await waitRollout(cp, ns, 'web');
  const pods = await cp.must<{ items: { metadata: { name: string; uid: string; annotations?: Record<string, string> } }[] }>('GET', `/api/v1/namespaces/${ns}/pods`);
  const tree = new NodeTree('kta-realk8s-node-');
  const containers = pods.items.map((p) => {
    let content = '';
    for (let i = 0; i < LINES; i++) content += criLine(`${p.metadata.name} line ${i}`, { time: criTime(i + 1) });
    const log = tree.container({ namespace: ns, pod: p.metadata.name, uid: p.metadata.uid, container: 'app', content });
    return { log, excluded: p.metadata.annotations?.['telemetry-agent.io/exclude'] === 'true' };
  });
  return { ns, kubelet, tree, containers };
}

/** One start of the node agent over the tree, from an empty data_dir: resolves with what it wrote once the backlog is out. */
async function startOnce(
  cp: ControlPlane,
  f: NodeFixture,
  run: number,
  o: { kubeconfig?: string; whileRunning?: (port: number) => Promise<void> } = {},
): Promise<{ records: OutRecord[]; metrics: string; stderr: string }> {
  const port = await freePort();
  const dataDir = join(f.tree.root, `data-${run}`);
  const output = join(f.tree.root, 'out', `records-${run}.ndjson`);
  let yaml = agentConfigYaml(f.tree, { listen: `127.0.0.1:${port}`, kubernetes: { mode: 'kubeconfig', kubeconfig: o.kubeconfig ?? cp.nodeAgent.kubeconfig } });
  yaml = yaml.replace('node_name: test-node', `node_name: ${f.kubelet.node}`).replace(`data_dir: ${JSON.stringify(f.tree.dataDir)}`, `data_dir: ${JSON.stringify(dataDir)}`).replace(JSON.stringify(f.tree.outputPath), JSON.stringify(output));
  const config = join(f.tree.root, `agent-${run}.yaml`);
  writeFileSync(config, yaml);
  const proc = spawn(NODE, [...agentNodeFlags(), CLI, 'run', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    await o.whileRunning?.(port);
    const want = f.containers.filter((c) => !c.excluded).length * LINES;
    await waitFor('the startup backlog written', () => (existsSync(output) ? readRecords(output).length >= want : false), 120_000, 200).catch(() => undefined);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return { records: readRecords(output), metrics, stderr };
  } finally {
    await stop(proc);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  await exited;
}

/** Busy loops on every core, at normal priority, until stopped. */
function cpuLoad(): { stop(): Promise<void> } {
  const procs = Array.from({ length: availableParallelism() }, () => spawn(NODE, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  return { stop: async () => void (await Promise.all(procs.map((p) => stop(p)))) };
}

/** What a start must show: every backlog record with its pod's metadata, none of the excluded pod's. */
function check(f: NodeFixture, r: { records: OutRecord[]; metrics: string }): string[] {
  const problems: string[] = [];
  const byPod = new Map<string, OutRecord[]>();
  for (const rec of r.records) {
    const pod = rec.resource['k8s.pod.name'] ?? '?';
    byPod.set(pod, [...(byPod.get(pod) ?? []), rec]);
  }
  for (const c of f.containers) {
    const got = byPod.get(c.log.pod) ?? [];
    if (c.excluded) {
      if (got.length) problems.push(`${c.log.pod}: ${got.length} records of an excluded pod`);
      continue;
    }
    if (got.length !== LINES) problems.push(`${c.log.pod}: ${got.length} of ${LINES} records`);
    const bare = got.filter((rec) => rec.resource['k8s.deployment.name'] !== 'web' || rec.resource['k8s.pod.label.app'] !== 'web');
    if (bare.length) problems.push(`${c.log.pod}: ${bare.length} records without pod metadata`);
  }
  const unenriched = sumMetric(r.metrics, 'telemetry_agent_unenriched_records_total');
  if (unenriched) problems.push(`telemetry_agent_unenriched_records_total ${unenriched}`);
  return problems;
}

export function enrichmentScenarios(plane: SuiteControlPlane): void {
  describe('node agent enrichment against the real API (deploy/base RBAC)', () => {
    let f: NodeFixture;
    beforeAll(async () => {
      applyAgentRbac(plane.cp);
      f = await nodeWithBacklog(plane.cp);
    }, 120_000);
    afterAll(async () => {
      if (!f) return;
      await teardown(plane.cp, [f.ns], [f.kubelet]);
      f.tree.remove();
    }, 120_000);

    it('under CPU load (busy loops on every core): every record of the startup backlog enriched and the exclude annotation applied, in 10 of 10 starts', async () => {
      const load = cpuLoad();
      const results: string[][] = [];
      try {
        for (let run = 0; run < 10; run++) results.push(check(f, await startOnce(plane.cp, f, run)));
      } finally {
        await load.stop();
      }
      console.log(`[realk8s] startup backlog under CPU load: ${results.filter((p) => p.length === 0).length} of ${results.length} starts fully enriched, exclude applied`);
      expect(results.map((p, i) => `start ${i + 1}: ${p.length ? p.join('; ') : 'ok'}`)).toEqual(results.map((_, i) => `start ${i + 1}: ok`));
    }, 900_000);

    it('a WATCH that answers 410 every time while LIST works (issue 11): pods created after the start are still enriched, nothing counted as api_unavailable, one warning', async () => {
      const proxy = new ApiProxy(plane.cp);
      const url = await proxy.start();
      proxy.watchGone = true;
      const kubeconfig = join(f.tree.root, 'proxy.kubeconfig');
      writeFileSync(
        kubeconfig,
        `apiVersion: v1\nkind: Config\nclusters: [{name: p, cluster: {server: '${url}', insecure-skip-tls-verify: true}}]\n` +
          `users: [{name: u, user: {tokenFile: '${plane.cp.nodeAgent.tokenFile}'}}]\ncontexts: [{name: c, context: {cluster: p, user: u}}]\ncurrent-context: c\n`,
      );
      try {
        const r = await startOnce(plane.cp, f, 100, {
          kubeconfig,
          whileRunning: async (port) => {
            // the watch keeps answering 410: the relists back off (0.8, 1.6, 3.2, 6.4, 12.8 s, ... 30 s)
            await waitFor('six LISTs of pods', () => proxy.lists.filter((p) => p.endsWith('/pods')).length >= 6, 60_000, 100);
            // a pod that only a LIST can bring: the watch never delivers anything
            const pod = await plane.cp.must<{ metadata: { name: string; uid: string } }>('POST', `/api/v1/namespaces/${f.ns}/pods`, {
              apiVersion: 'v1',
              kind: 'Pod',
              metadata: { name: 'late', labels: { app: 'web' }, ownerReferences: [] },
              spec: { nodeName: f.kubelet.node, containers: [{ name: 'app', image: 'registry.example/app:1' }] },
            });
            let content = '';
            for (let i = 0; i < LINES; i++) content += criLine(`late line ${i}`, { time: criTime(i + 1) });
            f.containers.push({ log: f.tree.container({ namespace: f.ns, pod: pod.metadata.name, uid: pod.metadata.uid, container: 'app', content }), excluded: false });
            await waitFor('the agent answering', () => fetch(`http://127.0.0.1:${port}/healthz`).then((x) => x.ok, () => false), 10_000, 50);
          },
        });
        const late = r.records.filter((rec) => rec.resource['k8s.pod.name'] === 'late');
        expect(late).toHaveLength(LINES);
        expect(late.filter((rec) => rec.resource['k8s.pod.label.app'] !== 'web')).toEqual([]);
        expect(sumMetric(r.metrics, 'telemetry_agent_unenriched_records_total', { reason: 'api_unavailable' })).toBe(0);
        expect(sumMetric(r.metrics, 'telemetry_agent_kube_watch_restarts_total', { resource: 'pods', reason: 'expired' })).toBeGreaterThan(0);
        expect(r.stderr.match(/WARN .*pods.*410/g) ?? []).toHaveLength(1);
      } finally {
        await proxy.close();
        const late = f.containers.findIndex((c) => c.log.pod === 'late');
        if (late >= 0) f.containers.splice(late, 1);
        await plane.cp.request('DELETE', `/api/v1/namespaces/${f.ns}/pods/late`);
      }
    }, 300_000);
  });
}

