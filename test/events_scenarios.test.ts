import { beforeEach, describe, expect, it } from 'vitest';
import type { SelfMetrics } from '../agent/metrics.ts';
import { makeEvent, makePod, seconds, uid, type EventInput, type FakeObject } from '../agent/demo/kube_api_server.ts';
import { EventsHarness, harnessPerTest, type EventsAgent } from './events_harness.ts';
import { waitFor } from './helpers/child_agent.ts';

/**
 * Realistic Event sequences replayed through the fake API (kubernetes-events.md §5), with the exact
 * metric values they must produce — once watched straight through, once with the agent stopped in
 * the middle (a step happens while it is down) and restarted from its checkpoint: the counts of the
 * two runs added up must be the same, nothing counted twice or lost.
 */

type Step = (api: Scenario) => void;

class Scenario {
  readonly h: EventsHarness;
  private readonly events = new Map<string, FakeObject>();
  constructor(h: EventsHarness) {
    this.h = h;
  }
  /** Creates (first call for `id`) or bumps an Event to `count` occurrences (count, or series for events.k8s.io). */
  event(id: string, count: number, input?: EventInput): void {
    const known = this.events.get(id);
    if (!known) {
      const e = makeEvent({ ...input!, count: input!.api === 'events' ? undefined : count });
      if (input!.api === 'events' && count > 1) e.series = { count, lastObservedTime: new Date().toISOString().replace('Z', '000Z') };
      this.events.set(id, this.h.api.create('events', e));
      return;
    }
    const next = this.h.api.modify('events', known.metadata.namespace, known.metadata.name, (e) => {
      if (e.reportingComponent && e.eventTime) e.series = { count, lastObservedTime: new Date().toISOString().replace('Z', '000Z') };
      else {
        e.count = count;
        e.lastTimestamp = seconds(new Date());
      }
    });
    this.events.set(id, next);
  }
  /** The highest resourceVersion of any Event: the watch has delivered everything once it reaches it. */
  lastEventRv(): number {
    return Math.max(0, ...this.h.api.list('events').map((e) => Number(e.metadata.resourceVersion)));
  }
}

async function caughtUp(a: EventsAgent, s: Scenario): Promise<void> {
  const want = s.lastEventRv();
  await waitFor('the events watch caught up', () => Number(a.source.resourceVersion ?? 0) >= want, 10_000, 20);
  await a.source.metricsSettled();
}

const METRICS = ['k8s_events_total', 'k8s_pod_startup_failures_total', 'k8s_pvc_provisioning_failures_total', 'k8s_volume_mount_failures_total', 'k8s_pod_disruptions_total'];

/** Every series of the event metrics (histograms as _count/_sum), summed over the agents given. */
async function totals(agents: SelfMetrics[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of agents) {
    for (const name of [...METRICS, 'k8s_image_pull_duration_seconds']) {
      const metric = m.registry.getSingleMetric(name);
      if (!metric) continue;
      for (const v of (await metric.get()).values) {
        const n = (v as { metricName?: string }).metricName ?? name;
        if (n.endsWith('_bucket') && !['1', '2.5', '+Inf'].includes(String(v.labels.le))) continue;
        const key = `${n}{${Object.entries(v.labels).sort(([x], [y]) => (x < y ? -1 : 1)).map(([k, x]) => `${k}=${x}`).join(',')}}`;
        out[key] = Math.round(((out[key] ?? 0) + v.value) * 1000) / 1000;
        if (out[key] === 0) delete out[key];
      }
    }
  }
  return out;
}

async function replay(h: EventsHarness, steps: Step[], restartAt?: number): Promise<Record<string, number>> {
  const s = new Scenario(h);
  const registries: SelfMetrics[] = [];
  let a: EventsAgent | undefined = await h.agent('replay', { leader_election: false });
  registries.push(a.metrics);
  await h.watching();
  for (let i = 0; i < steps.length; i++) {
    if (i === restartAt) {
      await a!.stop();
      a = undefined;
    }
    steps[i]!(s);
    if (!a) {
      a = await h.agent('replay', { leader_election: false });
      registries.push(a.metrics);
    }
    await caughtUp(a, s);
  }
  await a!.stop();
  return totals(registries);
}

const ns = 'shop';
const kubelet = (p: { name: string; uid: string }, reason: string, type: string, message: string, fieldPath = 'spec.containers{app}'): EventInput => ({
  regarding: { kind: 'Pod', name: p.name, namespace: ns, uid: p.uid, fieldPath },
  reason,
  type,
  message,
  component: 'kubelet',
  host: 'node-1',
});
const scheduler = (p: { name: string; uid: string }, reason: string, type: string, message: string, action: string): EventInput => ({
  regarding: { kind: 'Pod', name: p.name, namespace: ns, uid: p.uid },
  reason,
  type,
  message,
  component: 'default-scheduler',
  api: 'events',
  action,
});
const pods = [0, 1, 2].map((i) => ({ name: `web-7d9f8-${'abc'[i]}x`, uid: uid() }));

const scenarios: { name: string; setup?: (h: EventsHarness) => void; steps: Step[]; expect: Record<string, number> }[] = [
  {
    name: 'a rollout (3 replicas, scale up, pull, start, scale down the old ReplicaSet)',
    steps: [
      (s) => s.event('scale-up', 1, { regarding: { kind: 'Deployment', name: 'web', namespace: ns }, reason: 'ScalingReplicaSet', message: 'Scaled up replica set web-7d9f8 from 0 to 3', component: 'deployment-controller' }),
      (s) => pods.forEach((p, i) => s.event(`create-${i}`, 1, { regarding: { kind: 'ReplicaSet', name: 'web-7d9f8', namespace: ns }, reason: 'SuccessfulCreate', message: `Created pod: ${p.name}`, component: 'replicaset-controller' })),
      (s) => pods.forEach((p, i) => s.event(`sched-${i}`, 1, scheduler(p, 'Scheduled', 'Normal', `Successfully assigned ${ns}/${p.name} to node-${i}`, 'Binding'))),
      (s) =>
        pods.forEach((p, i) => {
          s.event(`pulling-${i}`, 1, kubelet(p, 'Pulling', 'Normal', 'Pulling image "nginx:1.27"'));
          s.event(`pulled-${i}`, 1, kubelet(p, 'Pulled', 'Normal', ['Successfully pulled image "nginx:1.27" in 1.5s (1.5s including waiting). Image size: 7000 bytes.', 'Successfully pulled image "nginx:1.27" in 800ms (2s including waiting). Image size: 7000 bytes.', 'Container image "nginx:1.27" already present on machine'][i]!));
        }),
      (s) =>
        pods.forEach((p, i) => {
          s.event(`created-${i}`, 1, kubelet(p, 'Created', 'Normal', 'Created container: app'));
          s.event(`started-${i}`, 1, kubelet(p, 'Started', 'Normal', 'Started container app'));
        }),
      (s) => s.event('scale-down', 1, { regarding: { kind: 'Deployment', name: 'web', namespace: ns }, reason: 'ScalingReplicaSet', message: 'Scaled down replica set web-5c4b2 from 3 to 0', component: 'deployment-controller' }),
      (s) => [0, 1, 2].forEach((i) => s.event(`delete-${i}`, 1, { regarding: { kind: 'ReplicaSet', name: 'web-5c4b2', namespace: ns }, reason: 'SuccessfulDelete', message: `Deleted pod: web-5c4b2-${i}`, component: 'replicaset-controller' })),
    ],
    expect: {
      'k8s_events_total{component=deployment-controller,kind=Deployment,namespace=shop,reason=ScalingReplicaSet,type=Normal}': 2,
      'k8s_events_total{component=replicaset-controller,kind=ReplicaSet,namespace=shop,reason=SuccessfulCreate,type=Normal}': 3,
      'k8s_events_total{component=replicaset-controller,kind=ReplicaSet,namespace=shop,reason=SuccessfulDelete,type=Normal}': 3,
      'k8s_events_total{component=default-scheduler,kind=Pod,namespace=shop,reason=Scheduled,type=Normal}': 3,
      'k8s_events_total{component=kubelet,kind=Pod,namespace=shop,reason=Pulling,type=Normal}': 3,
      'k8s_events_total{component=kubelet,kind=Pod,namespace=shop,reason=Pulled,type=Normal}': 3,
      'k8s_events_total{component=kubelet,kind=Pod,namespace=shop,reason=Created,type=Normal}': 3,
      'k8s_events_total{component=kubelet,kind=Pod,namespace=shop,reason=Started,type=Normal}': 3,
      // two pulls (1.5 s, 0.8 s); the cached image is not a pull
      'k8s_image_pull_duration_seconds_count{}': 2,
      'k8s_image_pull_duration_seconds_sum{}': 2.3,
      'k8s_image_pull_duration_seconds_bucket{le=1}': 1,
      'k8s_image_pull_duration_seconds_bucket{le=2.5}': 2,
      'k8s_image_pull_duration_seconds_bucket{le=+Inf}': 2,
    },
  },
  {
    name: 'a failed scheduling (FailedScheduling as a series: 1, 2, then 5 at the heartbeat, then Scheduled)',
    setup: (h) => {
      const p = makePod({
        namespace: ns,
        name: pods[0]!.name,
        uid: pods[0]!.uid,
        nodeName: '',
        labels: { app: 'web', 'pod-template-hash': '7d9f8' },
        owner: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-7d9f8', uid: uid() },
      });
      delete (p.spec as { nodeName?: string }).nodeName;
      h.api.create('pods', p);
    },
    steps: [
      (s) => s.event('fs', 1, scheduler(pods[0]!, 'FailedScheduling', 'Warning', '0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.', 'Scheduling')),
      (s) => s.event('fs', 2),
      (s) => s.event('fs', 5),
      (s) => s.event('sched', 1, scheduler(pods[0]!, 'Scheduled', 'Normal', `Successfully assigned ${ns}/${pods[0]!.name} to node-4`, 'Binding')),
    ],
    expect: {
      'k8s_events_total{component=default-scheduler,kind=Pod,namespace=shop,reason=FailedScheduling,type=Warning}': 5,
      'k8s_events_total{component=default-scheduler,kind=Pod,namespace=shop,reason=Scheduled,type=Normal}': 1,
      'k8s_pod_startup_failures_total{owner_kind=Deployment,reason=Unschedulable}': 1,
    },
  },
  {
    name: 'an image pull back-off',
    steps: [
      (s) => s.event('pulling', 1, kubelet(pods[1]!, 'Pulling', 'Normal', 'Pulling image "registry.example/app:v9"')),
      (s) => {
        s.event('failed-pull', 1, kubelet(pods[1]!, 'Failed', 'Warning', 'Failed to pull image "registry.example/app:v9": rpc error: code = NotFound desc = failed to pull and unpack image: not found'));
        s.event('err-pull', 1, kubelet(pods[1]!, 'Failed', 'Warning', 'Error: ErrImagePull'));
      },
      (s) => {
        s.event('backoff', 1, kubelet(pods[1]!, 'BackOff', 'Normal', 'Back-off pulling image "registry.example/app:v9"'));
        s.event('err-backoff', 1, kubelet(pods[1]!, 'Failed', 'Warning', 'Error: ImagePullBackOff'));
      },
      (s) => {
        s.event('pulling', 3);
        s.event('failed-pull', 3);
        s.event('err-pull', 3);
      },
      (s) => {
        s.event('backoff', 6);
        s.event('err-backoff', 6);
      },
    ],
    expect: {
      'k8s_events_total{component=kubelet,kind=Pod,namespace=shop,reason=Pulling,type=Normal}': 3,
      'k8s_events_total{component=kubelet,kind=Pod,namespace=shop,reason=Failed,type=Warning}': 12,
      'k8s_events_total{component=kubelet,kind=Pod,namespace=shop,reason=BackOff,type=Normal}': 6,
    },
  },
  {
    name: 'a PVC that fails to provision (CSI provisioner component normalised to its driver)',
    setup: (h) =>
      h.api.create('persistentvolumeclaims', {
        metadata: { name: 'data-db-0', namespace: ns, uid: 'pvc-uid-1', annotations: { 'volume.kubernetes.io/storage-provisioner': 'ebs.csi.aws.com' } },
        spec: { storageClassName: 'fast', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } } },
        status: { phase: 'Pending' },
      }),
    steps: [
      (s) => s.event('ext', 1, { regarding: { kind: 'PersistentVolumeClaim', name: 'data-db-0', namespace: ns, uid: 'pvc-uid-1' }, reason: 'ExternalProvisioning', message: "Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com' or manually by the system administrator.", component: 'persistentvolume-controller' }),
      (s) => s.event('prov', 1, { regarding: { kind: 'PersistentVolumeClaim', name: 'data-db-0', namespace: ns, uid: 'pvc-uid-1' }, reason: 'Provisioning', message: 'External provisioner is provisioning volume for claim "shop/data-db-0"', component: 'ebs.csi.aws.com_ebs-csi-controller-6d4f9c-xk2lp_677f0b5e-1c2d-4e3f-8a9b-0c1d2e3f4a5b' }),
      (s) => s.event('fail', 1, { regarding: { kind: 'PersistentVolumeClaim', name: 'data-db-0', namespace: ns, uid: 'pvc-uid-1' }, reason: 'ProvisioningFailed', type: 'Warning', message: 'failed to provision volume with StorageClass "fast": rpc error: code = ResourceExhausted desc = quota exceeded', component: 'ebs.csi.aws.com_ebs-csi-controller-6d4f9c-xk2lp_677f0b5e-1c2d-4e3f-8a9b-0c1d2e3f4a5b' }),
      (s) => {
        s.event('ext', 4);
        s.event('prov', 3);
        s.event('fail', 3);
      },
    ],
    expect: {
      'k8s_events_total{component=persistentvolume-controller,kind=PersistentVolumeClaim,namespace=shop,reason=ExternalProvisioning,type=Normal}': 4,
      'k8s_events_total{component=ebs.csi.aws.com,kind=PersistentVolumeClaim,namespace=shop,reason=Provisioning,type=Normal}': 3,
      'k8s_events_total{component=ebs.csi.aws.com,kind=PersistentVolumeClaim,namespace=shop,reason=ProvisioningFailed,type=Warning}': 3,
      'k8s_pvc_provisioning_failures_total{provisioner=ebs.csi.aws.com,storage_class=fast}': 3,
    },
  },
  {
    name: 'an attach failure and the mounts that wait for it',
    setup: (h) => {
      const p = makePod({ namespace: ns, name: pods[2]!.name, uid: pods[2]!.uid, nodeName: 'node-2' });
      (p.spec as { volumes: unknown[] }).volumes = [
        { name: 'data', persistentVolumeClaim: { claimName: 'data-db-0' } },
        { name: 'config', configMap: { name: 'app-config' } },
      ];
      h.api.create('pods', p);
    },
    steps: [
      (s) => s.event('attach', 1, { regarding: { kind: 'Pod', name: pods[2]!.name, namespace: ns, uid: pods[2]!.uid }, reason: 'FailedAttachVolume', type: 'Warning', message: 'AttachVolume.Attach failed for volume "pvc-0a1b2c" : rpc error: code = Internal desc = Could not attach volume "vol-0abc" to node "i-0def": attachment of disk failed', component: 'attachdetach-controller' }),
      (s) => s.event('config', 1, kubelet(pods[2]!, 'FailedMount', 'Warning', 'MountVolume.SetUp failed for volume "config" : configmap "app-config" not found', '')),
      (s) => {
        s.event('attach', 4);
        s.event('config', 3);
      },
      (s) => s.event('timeout', 1, kubelet(pods[2]!, 'FailedMount', 'Warning', 'Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[data], failed to process volumes=[]: timed out waiting for the condition', '')),
      (s) => s.event('timeout', 2),
    ],
    expect: {
      'k8s_events_total{component=attachdetach-controller,kind=Pod,namespace=shop,reason=FailedAttachVolume,type=Warning}': 4,
      'k8s_events_total{component=kubelet,kind=Pod,namespace=shop,reason=FailedMount,type=Warning}': 5,
      'k8s_volume_mount_failures_total{namespace=shop,stage=setup,volume_type=configMap}': 3,
      'k8s_volume_mount_failures_total{namespace=shop,stage=timeout,volume_type=other}': 2,
    },
  },
  {
    name: 'a node going NotReady, its pods marked NotReady and evicted by the taint manager',
    steps: [
      (s) => s.event('node', 1, { regarding: { kind: 'Node', name: 'node-3', uid: 'node-3-uid' }, reason: 'NodeNotReady', message: 'Node node-3 status is now: NodeNotReady', component: 'node-controller' }),
      (s) => [0, 1, 2, 3].forEach((i) => s.event(`pod-nr-${i}`, 1, { regarding: { kind: 'Pod', name: `db-${i}`, namespace: ns, uid: `db-${i}-uid` }, reason: 'NodeNotReady', type: 'Warning', message: 'Node is not ready', component: 'node-controller' })),
      (s) => [0, 1, 2].forEach((i) => s.event(`evict-${i}`, 1, { regarding: { kind: 'Pod', name: `db-${i}`, namespace: ns }, reason: 'TaintManagerEviction', message: `Marking for deletion Pod ${ns}/db-${i}`, component: 'taint-eviction-controller' })),
      (s) => {
        s.event('evict-3', 1, { regarding: { kind: 'Pod', name: 'db-3', namespace: ns }, reason: 'TaintManagerEviction', message: `Marking for deletion Pod ${ns}/db-3`, component: 'taint-eviction-controller' });
        s.event('cancel-3', 1, { regarding: { kind: 'Pod', name: 'db-3', namespace: ns }, reason: 'TaintManagerEviction', message: `Cancelling deletion of Pod ${ns}/db-3`, component: 'taint-eviction-controller' });
      },
    ],
    expect: {
      'k8s_events_total{component=node-controller,kind=Node,namespace=,reason=NodeNotReady,type=Normal}': 1,
      'k8s_events_total{component=node-controller,kind=Pod,namespace=shop,reason=NodeNotReady,type=Warning}': 4,
      'k8s_events_total{component=taint-eviction-controller,kind=Pod,namespace=shop,reason=TaintManagerEviction,type=Normal}': 5,
      'k8s_pod_disruptions_total{namespace=shop,reason=DeletionByTaintManager}': 4,
    },
  },
];

const harness = harnessPerTest();
let h: EventsHarness;
beforeEach(() => void (h = harness()));

describe('replayed event sequences give exact metrics', () => {
  for (const sc of scenarios) {
    it(sc.name, async () => {
      sc.setup?.(h);
      expect(await replay(h, sc.steps)).toEqual(sc.expect);
    });
    it(`${sc.name}: the agent restarted in the middle (a step while it is down) changes no counter`, async () => {
      sc.setup?.(h);
      expect(await replay(h, sc.steps, Math.floor(sc.steps.length / 2))).toEqual(sc.expect);
    });
  }
});
