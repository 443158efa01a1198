import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../helpers/child_agent.ts';
import { apiOccurrences, RealAgent, samples, type AgentOptions } from './agents.ts';
import type { ControlPlane } from './control_plane.ts';
import type { FakeKubelet } from './fake_kubelet.ts';

/**
 * What the scenario tests share: the agent's RBAC exactly as deploy/ ships it, a cluster agent
 * config, ground truth from the API, and "sum over incarnations" of what the agents reported.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const AGENT_NAMESPACE = 'telemetry-agent';
export const LEASE = 'telemetry-agent-cluster';

/** The Namespace and the RBAC objects of deploy/ (base and cluster-events overlay), applied for real. */
export function applyAgentRbac(cp: ControlPlane): void {
  cp.kubectlOk([
    'apply',
    '-f',
    join(ROOT, 'deploy/base/namespace.yaml'),
    '-f',
    join(ROOT, 'deploy/base/rbac.yaml'),
    '-f',
    join(ROOT, 'deploy/overlays/cluster-events/rbac.yaml'),
  ]);
}

/** A fresh Lease for a scenario: agents of the one before do not hand anything over. */
export async function deleteLease(cp: ControlPlane): Promise<void> {
  await cp.request('DELETE', `/apis/coordination.k8s.io/v1/namespaces/${AGENT_NAMESPACE}/leases/${LEASE}`);
}

/** A cluster agent (kubernetes_events with leader election, the leader-only trackers) of `name`. */
export function clusterAgent(cp: ControlPlane, o: { name: string; root: string; otlpEndpoint?: string; extra?: string[]; env?: Record<string, string>; kubeconfig?: string }): RealAgent {
  const opts: AgentOptions = {
    name: o.name,
    root: o.root,
    identity: o.kubeconfig ? { ...cp.clusterAgent, kubeconfig: o.kubeconfig } : cp.clusterAgent,
    nodeName: `${o.name}-node`,
    sources: [
      'cluster:',
      '  type: kubernetes_events',
      `  lease_name: ${LEASE}`,
      `  lease_namespace: ${AGENT_NAMESPACE}`,
      `  identity: ${o.name}`,
      '  lease_duration: 4s',
      '  renew_deadline: 3s',
      '  retry_period: 500ms',
      '  signals:',
      '    trackers: [image_pull, deployment_rollout, pvc_provisioning, volume_attach, node_readiness]',
      `    spans: ${o.otlpEndpoint ? 'true' : 'false'}`,
      '    rollout_timeout_grace: 5s',
      ...(o.extra ?? []).map((l) => `  ${l}`),
    ],
    inputs: ['cluster'],
    otlpEndpoint: o.otlpEndpoint,
    env: o.env,
  };
  return new RealAgent(opts);
}

/**
 * A scenario's end: its namespace goes first, while its nodes still finalize its pods (a node removed
 * first leaves controllers recreating pods that fit nowhere: FailedScheduling in the next scenario),
 * then its nodes, deleted while Ready.
 */
export async function teardown(cp: ControlPlane, namespaces: string[], kubelets: FakeKubelet[]): Promise<void> {
  for (const ns of namespaces) await cp.request('DELETE', `/api/v1/namespaces/${ns}`);
  for (const ns of namespaces) {
    await waitFor(`namespace ${ns} gone`, async () => (await cp.request('GET', `/api/v1/namespaces/${ns}`)).status === 404, 120_000, 500).catch(() => undefined);
  }
  for (const k of kubelets) await k.remove();
}

/** Which of `agents` leads now (by telemetry_agent_leader), waiting for exactly one. */
export async function leader(agents: RealAgent[], timeoutMs = 30_000): Promise<RealAgent> {
  return waitFor(
    'exactly one leader',
    async () => {
      const leading: RealAgent[] = [];
      for (const a of agents) {
        if (!a.running) continue;
        const text = await a.scrape().catch(() => '');
        if (/^telemetry_agent_leader 1$/m.test(text)) leading.push(a);
      }
      return leading.length === 1 ? leading[0] : undefined;
    },
    timeoutMs,
    100,
  );
}

/** Waits until the API's Event occurrences of `namespace` stop changing for `quietMs`. */
export async function eventsQuiet(cp: ControlPlane, namespace: string, quietMs = 2500, timeoutMs = 60_000): Promise<Map<string, number>> {
  let last = '';
  let since = Date.now();
  return waitFor(
    `events of ${namespace} quiet for ${quietMs} ms`,
    async () => {
      const now = await apiOccurrences(cp, namespace);
      const key = JSON.stringify([...now].sort());
      if (key !== last) {
        last = key;
        since = Date.now();
        return undefined;
      }
      return Date.now() - since >= quietMs ? now : undefined;
    },
    timeoutMs,
    250,
  );
}

/**
 * k8s_events_total of `namespace` by reason, summed over incarnations: `finished` are the last
 * scrapes of incarnations that ended (what Prometheus last saw of them), plus a scrape of `live`.
 */
export async function countedByReason(namespace: string, finished: string[], live: RealAgent[]): Promise<Map<string, number>> {
  const texts = [...finished];
  for (const a of live) if (a.running) texts.push(await a.scrape());
  const out = new Map<string, number>();
  for (const text of texts) {
    for (const [labels, v] of samples(text, 'k8s_events_total', { namespace })) {
      const reason = /reason="([^"]*)"/.exec(labels)![1]!;
      out.set(reason, (out.get(reason) ?? 0) + v);
    }
  }
  return out;
}

/** Waits until what the agents counted equals the API's occurrences; returns both for the assertion. */
export async function converge(cp: ControlPlane, namespace: string, finished: string[], live: RealAgent[], timeoutMs = 30_000): Promise<{ counted: Record<string, number>; truth: Record<string, number> }> {
  let counted = new Map<string, number>();
  let truth = new Map<string, number>();
  const sorted = (m: Map<string, number>) => Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : 1)));
  await waitFor(
    'the agents counted what the API shows',
    async () => {
      truth = await apiOccurrences(cp, namespace);
      counted = await countedByReason(namespace, finished, live);
      return JSON.stringify(sorted(counted)) === JSON.stringify(sorted(truth));
    },
    timeoutMs,
    250,
  ).catch(() => undefined);
  return { counted: sorted(counted), truth: sorted(truth) };
}
