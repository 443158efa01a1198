import { describe, expect, it } from 'vitest';
import { podTraceKey } from '../agent/cluster/pod_startup_tracker.ts';
import { spanIdFor, traceIdFor } from '../agent/cluster/span_ids.ts';
import { occurrence, startupPod, type PodTimes } from '../agent/demo/cluster_objects.ts';
import { CLUSTER_UID, replaySuite, S, seconds, spanTree, T } from './helpers/cluster_replay.ts';

const startReplay = replaySuite('pod');

const POD_UID = '0d4b2a9e-1111-4c1e-9e55-5a1b2c3d4e5f';
const rs = { name: 'web-7d9f8b6c5', uid: '5e0c1f3a-2222-4b7d-8a61-0f1e2d3c4b5a' };
const ref = { kind: 'Pod', namespace: 'shop', name: 'web-7d9f8b6c5-x2x7q', uid: POD_UID };
const pod = (t: PodTimes) => startupPod({ name: ref.name, namespace: 'shop', uid: POD_UID, nodeName: 'node-a', rs, t });
const kubelet = (reason: string, note: string, at: number, type = 'Normal') =>
  occurrence({ reason, type, note, component: 'kubelet', regarding: { ...ref, fieldPath: 'spec.containers{app}' }, at });

describe('pod startup with an image pull, replayed through the fake API', () => {
  // restartAt: the agent restarts just before this step (undefined: no restart)
  it.each([{ restartAt: undefined }, { restartAt: 2 }, { restartAt: 3 }])('restart before step $restartAt: one observation, one trace', async ({ restartAt }) => {
    const r = await startReplay(T - 60 * S);
    const step = async (n: number, at: number, fn: () => Promise<void> | void) => {
      await r.advanceTo(at);
      if (restartAt === n) await r.restart();
      await fn();
    };
    // 1: bound to node-a one second after creation
    await step(1, T + 1 * S, async () => {
      await r.put('pods', pod({ created: T, scheduled: T + 1 * S }));
      r.event(occurrence({ reason: 'Scheduled', note: 'Successfully assigned shop/web-7d9f8b6c5-x2x7q to node-a', component: 'default-scheduler', regarding: ref, at: T + 1 * S }));
    });
    // 2: sandbox ready, the image pulled in 3.5 s, the container started at +7 s
    await step(2, T + 2 * S, async () => {
      r.event(kubelet('Pulling', 'Pulling image "registry.example.com/shop/app:1.4.2"', T + 2 * S));
      r.event(kubelet('Pulled', 'Successfully pulled image "registry.example.com/shop/app:1.4.2" in 3.5s (3.6s including waiting). Image size: 52428800 bytes.', T + 6 * S));
      r.event(kubelet('Created', 'Created container: app', T + 6 * S));
      r.event(kubelet('Started', 'Started container app', T + 7 * S));
      await r.put('pods', pod({ created: T, scheduled: T + 1 * S, readyToStart: T + 2 * S, started: T + 7 * S }));
    });
    // 3: the readiness probe passes at +10 s
    await step(3, T + 10 * S, async () => {
      r.event(kubelet('Unhealthy', 'Readiness probe failed: HTTP probe failed with statuscode: 503', T + 8 * S, 'Warning'));
      await r.put('pods', pod({ created: T, scheduled: T + 1 * S, readyToStart: T + 2 * S, started: T + 7 * S, ready: T + 10 * S }));
    });
    // 4: a later restart of the agent re-lists the same pod: nothing is observed again
    await step(4, T + 20 * S, async () => {
      await r.restart();
      await r.put('pods', pod({ created: T, scheduled: T + 1 * S, readyToStart: T + 2 * S, started: T + 7 * S, ready: T + 10 * S }));
    });

    expect(await r.value('k8s_pod_startup_duration_seconds_count', { owner_kind: 'Deployment' })).toBe(1);
    expect(await r.value('k8s_pod_startup_duration_seconds_sum', { owner_kind: 'Deployment' })).toBe(10);
    expect(await r.value('k8s_pod_startup_duration_seconds_bucket', { owner_kind: 'Deployment', le: '5' })).toBe(0);
    expect(await r.value('k8s_pod_startup_duration_seconds_bucket', { owner_kind: 'Deployment', le: '10' })).toBe(1);
    const stage = (s: string) => r.value('k8s_pod_startup_stage_duration_seconds_sum', { stage: s });
    expect([await stage('scheduling'), await stage('prepare'), await stage('container_start'), await stage('readiness')]).toEqual([1, 1, 5, 3]);
    expect(await r.value('k8s_pod_startup_stage_duration_seconds_count')).toBe(4); // no init containers: no init stage
    expect(await r.value('k8s_pod_startup_failures_total')).toBe(0);

    // the pull span comes from the agent that saw the Pulled event; a restart before step 2 means the
    // next agent saw it; the rest of the trace is emitted once, by whoever saw Ready
    const spans = await r.spans(6);
    await new Promise((res) => setTimeout(res, 100));
    expect(spans.map((s) => s.name).sort()).toEqual(['container.image_pull', 'container.start', 'pod.prepare', 'pod.readiness', 'pod.schedule', 'pod.startup']);
    const tree = spanTree(spans);
    const root = tree.one('pod.startup');
    const traceId = traceIdFor(CLUSTER_UID, podTraceKey(POD_UID));
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([traceId]));
    expect(root.spanId).toBe(spanIdFor(CLUSTER_UID, podTraceKey(POD_UID), 'pod.startup', POD_UID));
    expect(root.parentSpanId).toBe('');
    for (const s of spans.filter((x) => x !== root)) expect(s.parentSpanId, s.name).toBe(root.spanId);
    expect(seconds(root)).toBe(10);
    expect(root.status.code).toBe(1); // OK
    expect(root.attributes).toMatchObject({ 'k8s.pod.name': ref.name, 'k8s.pod.uid': POD_UID, 'k8s.namespace.name': 'shop', 'k8s.replicaset.name': rs.name, 'kta.result': 'ready' });
    expect(root.resource).toMatchObject({ 'service.name': 'kubelet', 'k8s.node.name': 'node-a', 'k8s.cluster.name': 'replay', 'k8s.cluster.uid': CLUSTER_UID });
    expect(tree.one('pod.schedule').resource['service.name']).toBe('kube-scheduler');
    expect([seconds(tree.one('pod.schedule')), seconds(tree.one('pod.prepare')), seconds(tree.one('container.start')), seconds(tree.one('pod.readiness'))]).toEqual([1, 1, 5, 3]);
    const pull = tree.one('container.image_pull');
    expect(seconds(pull)).toBe(3.5);
    expect(pull.attributes).toMatchObject({ 'k8s.container.name': 'app', 'container.image.name': 'registry.example.com/shop/app' });
    if (restartAt === undefined) {
      expect(root.events.map((e) => e.name)).toEqual(['Scheduled', 'Pulling', 'Pulled', 'Created', 'Started', 'Unhealthy']);
      expect(root.events[0]!.attributes).toMatchObject({ 'k8s.event.reason': 'Scheduled', 'kta.event.component': 'default-scheduler', 'k8s.event.count': 1 });
      expect(tree.one('pod.readiness').events.map((e) => e.name)).toEqual(['Unhealthy']);
    }
  });
});

describe('image pull back-off', () => {
  it.each([{ restart: false }, { restart: true }])('counts ImagePull once and ends the startup in ERROR at the timeout (restart mid-way: $restart)', async ({ restart }) => {
    const r = await startReplay(T - 60 * S, { pod_startup_timeout: '15m' });
    const backoff = { reason: 'ImagePullBackOff', message: 'Back-off pulling image "registry.example.com/shop/app:1.4.3"' };
    await r.advanceTo(T + 2 * S);
    await r.put('pods', pod({ created: T, scheduled: T + 1 * S, readyToStart: T + 2 * S }));
    r.event(kubelet('Pulling', 'Pulling image "registry.example.com/shop/app:1.4.3"', T + 2 * S));
    await r.advanceTo(T + 5 * S);
    r.event(kubelet('Failed', 'Failed to pull image "registry.example.com/shop/app:1.4.3": rpc error: code = NotFound desc = not found', T + 4 * S, 'Warning'));
    r.event(kubelet('Failed', 'Error: ErrImagePull', T + 4 * S, 'Warning'));
    await r.put('pods', pod({ created: T, scheduled: T + 1 * S, readyToStart: T + 2 * S, waiting: { reason: 'ErrImagePull', message: 'not found' } }));
    r.event(kubelet('BackOff', 'Back-off pulling image "registry.example.com/shop/app:1.4.3"', T + 5 * S));
    await r.put('pods', pod({ created: T, scheduled: T + 1 * S, readyToStart: T + 2 * S, waiting: backoff }));
    if (restart) {
      await r.advanceTo(T + 60 * S);
      await r.restart();
    }
    await r.advanceTo(T + 120 * S);
    await r.put('pods', pod({ created: T, scheduled: T + 1 * S, readyToStart: T + 2 * S, waiting: backoff }));
    expect(await r.value('k8s_pod_startup_failures_total', { owner_kind: 'Deployment', reason: 'ImagePull' })).toBe(1);

    await r.advanceTo(T + 16 * 60 * S); // past the 15 min startup timeout
    // the stages that did end (scheduling, prepare) are spans too; the pull span only from the agent that saw it begin
    const names = restart ? ['pod.prepare', 'pod.schedule', 'pod.startup'] : ['container.image_pull', 'pod.prepare', 'pod.schedule', 'pod.startup'];
    const spans = await r.spans(names.length);
    await new Promise((res) => setTimeout(res, 100));
    expect(r.receiver.spans.map((s) => s.name).sort()).toEqual(names);
    const root = spanTree(r.receiver.spans).one('pod.startup');
    expect(root.status.code).toBe(2); // ERROR
    expect(seconds(root)).toBe(900); // ends at creation + timeout, the same in every incarnation
    expect(root.attributes).toMatchObject({ 'kta.timeout': true, 'kta.result': 'timeout' });
    expect(await r.value('k8s_pod_startup_failures_total')).toBe(1); // no second count as Timeout
    expect(await r.value('k8s_pod_startup_duration_seconds_count')).toBe(0);
    if (!restart) {
      expect(root.status.message).toBe('Failed: Error: ErrImagePull');
      const pull = spanTree(spans).one('container.image_pull');
      expect(pull.parentSpanId).toBe(root.spanId);
      expect(pull.status.code).toBe(2);
      expect(pull.events.map((e) => e.name)).toEqual(['Failed', 'Failed', 'BackOff']);
    }
  });
});

describe('container restarts and disruptions on the node', () => {
  it('counts restartCount deltas by reason and a DisruptionTarget once, across a restart', async () => {
    const r = await startReplay(T - 60 * S);
    const ready = { created: T, scheduled: T + 1 * S, readyToStart: T + 2 * S, started: T + 3 * S, ready: T + 4 * S };
    await r.advanceTo(T + 5 * S);
    await r.put('pods', pod(ready));
    await r.put('pods', pod({ ...ready, restartCount: 2, lastTerminated: 'OOMKilled' }));
    await r.advanceTo(T + 100 * S);
    await r.restart();
    await r.put('pods', pod({ ...ready, restartCount: 2, lastTerminated: 'OOMKilled' })); // relisted: nothing new
    await r.put('pods', pod({ ...ready, restartCount: 3, lastTerminated: 'Error' }));
    await r.put('pods', pod({ ...ready, restartCount: 3, lastTerminated: 'Error', disruption: { reason: 'EvictionByEvictionAPI', at: T + 101 * S } }));
    await r.put('pods', pod({ ...ready, restartCount: 3, lastTerminated: 'Error', disruption: { reason: 'EvictionByEvictionAPI', at: T + 101 * S } }));
    expect(await r.value('k8s_container_restarts_total', { namespace: 'shop', reason: 'OOMKilled' })).toBe(2);
    expect(await r.value('k8s_container_restarts_total', { namespace: 'shop', reason: 'Error' })).toBe(1);
    expect(await r.value('k8s_pod_disruptions_total', { namespace: 'shop', reason: 'EvictionByEvictionAPI' })).toBe(1);
    expect(await r.value('k8s_pod_startup_duration_seconds_count')).toBe(1);
  });
});
