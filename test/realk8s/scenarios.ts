import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtlpReceiver, type ReceivedSpan } from '../../agent/demo/otlp_receiver.ts';
import { waitFor } from '../helpers/child_agent.ts';
import { sumMetric, type ApiEvent, type RealAgent } from './agents.ts';
import type { ControlPlane } from './control_plane.ts';
import { FakeKubelet } from './fake_kubelet.ts';
import { applyAgentRbac, clusterAgent, converge, deleteLease, eventsQuiet, leader, teardown } from './scenario.ts';
import { uniqueName, type SuiteControlPlane } from './suite.ts';
import {
  createDeployment,
  getDeployment,
  patchTemplate,
  rollback,
  scaleDeployment,
  waitProgressing,
  waitRollout,
} from './workloads.ts';

/**
 * Issue 10's scenarios against the real control plane, each run twice: with the one agent killed
 * (SIGKILL) in the middle and restarted from its data_dir, and with two agents sharing the Lease and
 * the leader killed in the middle. The middle is a point where the cluster has gone quiet halfway
 * through (a rollout waiting for a pod the node does not start, a deadline passed, a node down), so
 * "the last scrape before the kill" is what Prometheus would have last seen of that incarnation.
 *
 * What must hold in every run, against the API's own truth:
 * - k8s_events_total of the scenario's namespace, summed over incarnations (last scrape of each
 *   killed one + the live one), equals the occurrences of its Events (count / series.count);
 * - no span id is exported twice;
 * - k8s_pod_startup_failures_total{reason="Unschedulable"} summed over incarnations equals the number
 *   of distinct pods the scheduler reported unschedulable (FailedScheduling Events);
 * - k8s_deployment_rollouts_total of the namespace equals the rollout spans, and each scenario's own
 *   expectation (e.g. one progress_deadline_exceeded).
 */

export interface Ctx {
  cp: ControlPlane;
  ns: string;
  node: FakeKubelet;
}

export interface Scenario {
  name: string;
  /** Runs up to a quiet point halfway (the kill comes next). */
  before(c: Ctx): Promise<void>;
  /** While the agent is down, or nobody leads yet. */
  during(c: Ctx): Promise<void>;
  /** After the restart or takeover, until the workload is done. */
  after(c: Ctx): Promise<void>;
  /** k8s_deployment_rollouts_total of the namespace by result, summed over incarnations. */
  rollouts?: Record<string, number>;
  /** Span names that must have been exported (once each, as every span), with how many distinct ones. */
  spans?: Record<string, number>;
  /**
   * A second, healthy node: the node lifecycle controller evicts nothing while every node of a zone
   * is down (it takes that for a network partition of the control plane).
   */
  bystander?: boolean;
}

const WEB = { replicas: 3 };
const podTolerations = [
  { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 3 },
  { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 3 },
];

export const SCENARIOS: Scenario[] = [
  {
    name: 'a rollout',
    async before({ cp, ns, node }) {
      await createDeployment(cp, ns, 'web', { ...WEB, nodeSelector: { 'kubernetes.io/hostname': node.node } });
      await waitRollout(cp, ns, 'web');
      node.holdPods(); // the new ReplicaSet's first pod is never started: the rollout waits there
      await patchTemplate(cp, ns, 'web', { image: 'registry.example/app:2' });
      await eventsQuiet(cp, ns);
    },
    async during({ cp, ns, node }) {
      node.releasePods();
      await waitRollout(cp, ns, 'web');
    },
    async after({ cp, ns }) {
      await patchTemplate(cp, ns, 'web', { image: 'registry.example/app:3' });
      await waitRollout(cp, ns, 'web');
    },
    rollouts: { complete: 3 },
    spans: { 'deployment.rollout': 3 },
  },
  {
    name: 'a scale up and down',
    async before({ cp, ns, node }) {
      await createDeployment(cp, ns, 'web', { replicas: 2, nodeSelector: { 'kubernetes.io/hostname': node.node } });
      await waitRollout(cp, ns, 'web');
      node.holdPods();
      await scaleDeployment(cp, ns, 'web', 5);
      await eventsQuiet(cp, ns);
    },
    async during({ cp, ns, node }) {
      node.releasePods();
      await waitFor('5 available', async () => ((await getDeployment(cp, ns, 'web')).status?.availableReplicas ?? 0) === 5, 60_000, 250);
    },
    async after({ cp, ns }) {
      await scaleDeployment(cp, ns, 'web', 1);
      await waitFor('1 replica', async () => ((await getDeployment(cp, ns, 'web')).status?.replicas ?? 0) === 1, 60_000, 250);
    },
    rollouts: { complete: 1 },
    spans: { 'deployment.rollout': 1 },
  },
  {
    name: 'a rollback',
    async before({ cp, ns, node }) {
      await createDeployment(cp, ns, 'web', { ...WEB, nodeSelector: { 'kubernetes.io/hostname': node.node } });
      await waitRollout(cp, ns, 'web');
      await patchTemplate(cp, ns, 'web', { image: 'registry.example/app:2' });
      await waitRollout(cp, ns, 'web');
      node.holdPods();
      rollback(cp, ns, 'web');
      await eventsQuiet(cp, ns);
    },
    async during({ cp, ns, node }) {
      node.releasePods();
      await waitRollout(cp, ns, 'web');
    },
    async after() {},
    rollouts: { complete: 3 },
    spans: { 'deployment.rollout': 3 },
  },
  {
    name: 'a progress deadline',
    async before({ cp, ns }) {
      // its pods fit no node: nothing becomes available, the deadline passes and is reported before the kill
      await createDeployment(cp, ns, 'stuck', { replicas: 2, progressDeadlineSeconds: 5, nodeSelector: { 'kubernetes.io/hostname': 'no-such-node' } });
      await waitProgressing(cp, ns, 'stuck', 'ProgressDeadlineExceeded');
      await eventsQuiet(cp, ns);
    },
    async during({ cp, ns }) {
      await scaleDeployment(cp, ns, 'stuck', 3);
      await eventsQuiet(cp, ns);
    },
    async after({ cp, ns, node }) {
      await patchTemplate(cp, ns, 'stuck', { nodeSelector: { 'kubernetes.io/hostname': node.node } });
      await waitRollout(cp, ns, 'stuck');
    },
    rollouts: { progress_deadline_exceeded: 1, complete: 1 },
    spans: { 'deployment.rollout': 2 },
  },
  {
    name: 'unschedulable pods',
    async before({ cp, ns }) {
      await createDeployment(cp, ns, 'pending', { replicas: 2, nodeSelector: { disk: 'ssd' } });
      await eventsQuiet(cp, ns);
    },
    async during({ cp, ns }) {
      await scaleDeployment(cp, ns, 'pending', 4);
      await eventsQuiet(cp, ns);
    },
    async after({ cp, ns }) {
      await scaleDeployment(cp, ns, 'pending', 5);
      await eventsQuiet(cp, ns);
    },
  },
  {
    name: 'a claim bound by the PV controller',
    async before({ cp, ns }) {
      await cp.request('POST', '/apis/storage.k8s.io/v1/storageclasses', {
        apiVersion: 'storage.k8s.io/v1',
        kind: 'StorageClass',
        metadata: { name: 'manual' },
        provisioner: 'kubernetes.io/no-provisioner',
        volumeBindingMode: 'Immediate',
      });
      await cp.must('POST', `/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: 'data' },
        spec: { storageClassName: 'manual', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      });
      // the PV controller finds no volume and says so (FailedBinding / ProvisioningFailed) at every resync
      await waitFor('the claim waits', async () => (await cp.must<{ items: unknown[] }>('GET', `/api/v1/namespaces/${ns}/events`)).items.length > 0, 60_000, 250);
      await eventsQuiet(cp, ns, 1500);
    },
    async during({ cp, ns }) {
      await cp.must('POST', '/api/v1/persistentvolumes', {
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: `pv-${ns}` },
        spec: { storageClassName: 'manual', capacity: { storage: '1Gi' }, accessModes: ['ReadWriteOnce'], hostPath: { path: `/tmp/${ns}` }, persistentVolumeReclaimPolicy: 'Delete' },
      });
      await waitFor('the claim Bound', async () => (await cp.must<{ status?: { phase?: string } }>('GET', `/api/v1/namespaces/${ns}/persistentvolumeclaims/data`)).status?.phase === 'Bound', 60_000, 250);
    },
    async after({ cp, ns }) {
      await eventsQuiet(cp, ns, 1500);
    },
  },
  {
    name: 'a node that stops heartbeating until its pods are evicted',
    async before({ cp, ns, node }) {
      await cp.must('POST', `/apis/apps/v1/namespaces/${ns}/deployments`, {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web' },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: { nodeSelector: { 'kubernetes.io/hostname': node.node }, tolerations: podTolerations, terminationGracePeriodSeconds: 0, containers: [{ name: 'app', image: 'registry.example/app:1' }] },
          },
        },
      });
      await waitRollout(cp, ns, 'web');
      node.down();
      // NodeNotReady, the unreachable taint, TaintManagerEviction after the pods' 3 s toleration,
      // replacement pods that fit nowhere (FailedScheduling)
      await waitFor(
        'the pods evicted',
        async () => (await cp.must<{ items: ApiEvent[] }>('GET', `/api/v1/namespaces/${ns}/events`)).items.filter((e) => e.reason === 'TaintManagerEviction').length >= 2,
        90_000,
        500,
      );
      await eventsQuiet(cp, ns);
    },
    async during({ node }) {
      node.up();
    },
    async after({ cp, ns, node }) {
      await waitFor('the node Ready again', async () => {
        const n = await cp.must<{ status?: { conditions?: { type: string; status: string }[] } }>('GET', `/api/v1/nodes/${node.node}`);
        return n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
      }, 60_000, 250);
      await waitRollout(cp, ns, 'web');
      await eventsQuiet(cp, ns);
    },
    spans: { 'node.not_ready': 1, 'pod.eviction': 2 },
    bystander: true,
  },
];

type Variant = 'kill' | 'failover';

export function killAndFailoverScenarios(plane: SuiteControlPlane): void {
  describe('scenarios with the agent killed (SIGKILL) and with the leader killed', () => {
    let root: string;
    let otlp: OtlpReceiver;
    beforeAll(async () => {
      root = mkdtempSync(join(tmpdir(), 'kta-realk8s-scenarios-'));
      otlp = await OtlpReceiver.start();
      applyAgentRbac(plane.cp);
    });
    afterAll(async () => {
      await otlp?.close();
      rmSync(root, { recursive: true, force: true });
    });

    for (const scenario of SCENARIOS) {
      for (const variant of ['kill', 'failover'] as Variant[]) {
        it(`${scenario.name}, ${variant === 'kill' ? 'the agent killed mid-way and restarted' : 'two agents, the leader killed mid-way'}`, async () => {
          await runScenario(plane.cp, root, otlp, scenario, variant);
        }, 300_000);
      }
    }
  });
}

async function runScenario(cp: ControlPlane, root: string, otlp: OtlpReceiver, scenario: Scenario, variant: Variant): Promise<void> {
  const ns = uniqueName('sc');
  await cp.createNamespace(ns);
  await deleteLease(cp);
  const node = new FakeKubelet(cp, uniqueName('node'));
  await node.start();
  const bystander = scenario.bystander ? new FakeKubelet(cp, uniqueName('bystander')) : undefined;
  await bystander?.start();
  const ctx: Ctx = { cp, ns, node };
  const firstSpan = otlp.spans.length;
  const agents = (variant === 'kill' ? ['a'] : ['a', 'b']).map((n) => clusterAgent(cp, { name: `${ns}-${n}`, root, otlpEndpoint: otlp.url }));
  const finished: string[] = [];
  try {
    for (const a of agents) await a.start();
    const first = await leader(agents);
    await scenario.before(ctx);
    const mid = await converge(cp, ns, [], [first]);
    expect(mid.counted, 'counted before the kill').toEqual(mid.truth);
    await settleReports(first);
    finished.push(await first.scrape());
    await first.kill9();
    const killedAt = cp.auditBytes();
    await scenario.during(ctx);
    let second: RealAgent;
    if (variant === 'kill') {
      await first.start(); // same data_dir: a restart from its checkpoint
      second = await leader([first]);
    } else {
      second = await leader(agents.filter((a) => a !== first));
    }
    // What ended while nobody led is reported from the new leader's first LISTs; a step made before
    // them can overwrite what the objects tell (README, cluster signals' bounds).
    await listedSince(cp, killedAt, ['deployments', 'replicasets', 'persistentvolumeclaims', 'nodes']);
    await scenario.after(ctx);
    await eventsQuiet(cp, ns);
    const live = [second];

    // 1. every Event occurrence counted once over both incarnations / leaders
    const end = await converge(cp, ns, finished, live, 60_000);
    expect(end.counted, 'k8s_events_total summed over incarnations vs the API').toEqual(end.truth);

    // 2. once-per-pod: Unschedulable equals the distinct pods the scheduler reported unschedulable
    const events = await cp.must<{ items: ApiEvent[] }>('GET', `/api/v1/namespaces/${ns}/events`);
    const unschedulable = new Set(events.items.filter((e) => e.reason === 'FailedScheduling').map((e) => e.involvedObject.uid)).size;
    await waitFor(
      'Unschedulable counted',
      async () => sumOver(finished, live, 'k8s_pod_startup_failures_total', { reason: 'Unschedulable' }).then((n) => n === unschedulable),
      20_000,
      250,
    ).catch(() => undefined);
    expect(await sumOver(finished, live, 'k8s_pod_startup_failures_total', { reason: 'Unschedulable' }), 'Unschedulable pods vs distinct pods with FailedScheduling').toBe(unschedulable);

    // 3. spans: the expected ones arrived, none twice
    const spans = () => otlp.spans.slice(firstSpan).filter((s) => spanOf(s, ns, node.node));
    if (scenario.spans) {
      await waitFor(
        'the expected spans',
        () => Object.entries(scenario.spans!).every(([name, n]) => new Set(spans().filter((s) => s.name === name).map((s) => s.spanId)).size >= n),
        30_000,
        250,
      ).catch(() => undefined);
      for (const [name, n] of Object.entries(scenario.spans)) expect(new Set(spans().filter((s) => s.name === name).map((s) => s.spanId)).size, `${name} spans`).toBe(n);
    }
    expect(duplicates(spans()), 'span ids exported twice').toEqual([]);

    // 4. rollouts, once each
    if (scenario.rollouts) {
      for (const [result, n] of Object.entries(scenario.rollouts)) {
        expect(await sumOver(finished, live, 'k8s_deployment_rollouts_total', { namespace: ns, result }), `rollouts ${result}`).toBe(n);
      }
    }
    // the figures of the closing note
    const total = (m: Record<string, number>) => Object.values(m).reduce((x, y) => x + y, 0);
    const counted = await sumOver(finished, live, 'k8s_pod_startup_failures_total', { reason: 'Unschedulable' });
    console.log(
      `[realk8s] ${scenario.name} (${variant}): k8s_events_total over ${variant === 'kill' ? 'both incarnations' : 'both leaders'} ${total(end.counted)} = API ${total(end.truth)} ` +
        `(${Object.keys(end.truth).length} reasons); spans ${spans().length}, ids exported twice ${duplicates(spans()).length}; Unschedulable ${counted} = ${unschedulable} distinct pods`,
    );
  } finally {
    for (const a of agents) await a.stop();
    await teardown(cp, [ns], bystander ? [node, bystander] : [node]);
  }
}

/** The leader's held reports go out at its next renewal: wait for one before taking the last scrape. */
/** The cluster agent's service account completed a LIST of each of `resources` after audit-log offset `from`. */
async function listedSince(cp: ControlPlane, from: number, resources: string[]): Promise<void> {
  await waitFor(
    `the new leader's first LIST of ${resources.join(', ')}`,
    () => {
      const listed = new Set(
        cp
          .auditEntries(from)
          .filter((e) => e.verb === 'list' && e.stage === 'ResponseComplete' && e.user.username === cp.clusterAgent.user && (e.responseStatus?.code ?? 0) === 200)
          .map((e) => e.objectRef?.resource),
      );
      return resources.every((r) => listed.has(r));
    },
    30_000,
    250,
  );
}

async function settleReports(a: RealAgent): Promise<void> {
  const renewals = async () => sumMetric(await a.scrape(), 'telemetry_agent_checkpoint_writes_total');
  const before = await renewals();
  await waitFor('a commit after the quiet point', async () => (await renewals()) > before + 1, 10_000, 100);
}

async function sumOver(finished: string[], live: RealAgent[], name: string, labels: Record<string, string>): Promise<number> {
  let n = 0;
  for (const t of finished) n += sumMetric(t, name, labels);
  for (const a of live) if (a.running) n += sumMetric(await a.scrape(), name, labels);
  return n;
}

function spanOf(s: ReceivedSpan, ns: string, node: string): boolean {
  return s.attributes['k8s.namespace.name'] === ns || s.attributes['k8s.node.name'] === node;
}

function duplicates(spans: ReceivedSpan[]): string[] {
  const seen = new Map<string, number>();
  for (const s of spans) seen.set(`${s.name} ${s.spanId}`, (seen.get(`${s.name} ${s.spanId}`) ?? 0) + 1);
  return [...seen].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`);
}

