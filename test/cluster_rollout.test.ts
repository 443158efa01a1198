import { describe, expect, it } from 'vitest';
import { rolloutTraceKey } from '../agent/cluster/rollout_tracker.ts';
import { traceIdFor } from '../agent/cluster/span_ids.ts';
import { deployment, deploymentStatus, occurrence, replicaSet } from '../agent/demo/cluster_objects.ts';
import { CLUSTER_UID, replaySuite, S, seconds, spanTree, T } from './helpers/cluster_replay.ts';

const startReplay = replaySuite('rollout');

const D = { namespace: 'shop', name: 'web', uid: '3c2b1a09-3333-4d5e-9f80-a1b2c3d4e5f6' };
const OLD = { name: 'web-5c4b9d7f8', uid: '7a6b5c4d-4444-4e3f-8a2b-1c0d9e8f7a6b' };
const NEW = { name: 'web-7d9f8b6c5', uid: '5e0c1f3a-2222-4b7d-8a61-0f1e2d3c4b5a' };
// the controller has seen every spec change: observedGeneration above any generation the fake assigns
const CAUGHT_UP = 1_000_000;

const rs = (r: typeof OLD, revision: number, created: number, replicas: number, available: number, history?: number[]) =>
  replicaSet({ namespace: D.namespace, name: r.name, uid: r.uid, deployment: D, revision, created, replicas, available, history });
const dep = (revision: number, replicas: number, status: Parameters<typeof deploymentStatus>[1]) => ({
  ...deployment({ ...D, replicas, revision }),
  status: deploymentStatus(CAUGHT_UP, status),
});
const scaling = (note: string, at: number) =>
  occurrence({ reason: 'ScalingReplicaSet', note, component: 'deployment-controller', regarding: { kind: 'Deployment', namespace: D.namespace, name: D.name, uid: D.uid }, at });

describe('deployment rollout, scale and rollback, replayed through the fake API', () => {
  it.each([{ restartAt: undefined }, { restartAt: 3 }, { restartAt: 6 }])('restart before step $restartAt: exact metrics, one trace per revision', async ({ restartAt }) => {
    const r = await startReplay(T - 60 * S);
    const step = async (n: number, at: number, fn: () => Promise<void>) => {
      await r.advanceTo(at);
      if (restartAt === n) await r.restart();
      await fn();
    };
    // 1: revision 1 rolled out an hour ago: already complete when the agent starts, nothing to observe
    await step(1, T - 30 * S, async () => {
      await r.put('replicasets', rs(OLD, 1, T - 3600 * S, 3, 3));
      await r.put('deployments', dep(1, 3, { replicas: 3, updated: 3, available: 3, progressing: { reason: 'NewReplicaSetAvailable', at: T - 3590 * S, since: T - 3600 * S } }));
    });
    // 2: template change: revision 2, a new ReplicaSet scaled up to 1
    await step(2, T, async () => {
      await r.put('replicasets', rs(NEW, 2, T, 1, 0));
      await r.put('deployments', dep(2, 3, { replicas: 4, updated: 1, available: 3, progressing: { reason: 'ReplicaSetUpdated', at: T, since: T - 3600 * S } }));
      r.event(scaling(`Scaled up replica set ${NEW.name} from 0 to 1`, T));
    });
    // 3: the first new pod is available; old scaled down, new scaled up
    await step(3, T + 12 * S, async () => {
      await r.put('replicasets', rs(NEW, 2, T, 1, 1));
      r.event(scaling(`Scaled down replica set ${OLD.name} from 3 to 2`, T + 12 * S));
      r.event(scaling(`Scaled up replica set ${NEW.name} from 1 to 3`, T + 12 * S));
      await r.put('replicasets', rs(OLD, 1, T - 3600 * S, 2, 2));
      await r.put('replicasets', rs(NEW, 2, T, 3, 1));
      await r.put('deployments', dep(2, 3, { replicas: 5, updated: 3, available: 3, progressing: { reason: 'ReplicaSetUpdated', at: T + 12 * S, since: T - 3600 * S } }));
    });
    // 4: all three new pods available, the old ReplicaSet at 0: complete 40 s after the new ReplicaSet
    await step(4, T + 40 * S, async () => {
      await r.put('replicasets', rs(NEW, 2, T, 3, 3));
      r.event(scaling(`Scaled down replica set ${OLD.name} from 2 to 0`, T + 40 * S));
      await r.put('replicasets', rs(OLD, 1, T - 3600 * S, 0, 0));
      await r.put('deployments', dep(2, 3, { replicas: 3, updated: 3, available: 3, progressing: { reason: 'NewReplicaSetAvailable', at: T + 40 * S, since: T - 3600 * S } }));
    });
    // 5: kubectl scale --replicas=5: a new generation, not a new revision: no rollout
    await step(5, T + 60 * S, async () => {
      await r.put('replicasets', rs(NEW, 2, T, 5, 5));
      await r.put('deployments', dep(2, 5, { replicas: 5, updated: 5, available: 5, progressing: { reason: 'NewReplicaSetAvailable', at: T + 61 * S, since: T - 3600 * S } }));
    });
    // 6: kubectl rollout undo: revision 3 revives the old ReplicaSet (its revision history says 1)
    await step(6, T + 100 * S, async () => {
      await r.put('replicasets', rs(OLD, 3, T - 3600 * S, 2, 0, [1]));
      await r.put('deployments', dep(3, 5, { replicas: 7, updated: 2, available: 5, progressing: { reason: 'ReplicaSetUpdated', at: T + 100 * S, since: T - 3600 * S } }));
      r.event(scaling(`Scaled up replica set ${OLD.name} from 0 to 2`, T + 100 * S));
    });
    // 7: rollback complete 30 s later
    await step(7, T + 130 * S, async () => {
      await r.put('replicasets', rs(OLD, 3, T - 3600 * S, 5, 5, [1]));
      await r.put('replicasets', rs(NEW, 2, T, 0, 0));
      await r.put('deployments', dep(3, 5, { replicas: 5, updated: 5, available: 5, progressing: { reason: 'NewReplicaSetAvailable', at: T + 130 * S, since: T - 3600 * S } }));
    });

    expect(await r.value('k8s_deployment_rollout_duration_seconds_count', { result: 'complete' })).toBe(2);
    expect(await r.value('k8s_deployment_rollout_duration_seconds_sum', { result: 'complete' })).toBe(70);
    expect(await r.value('k8s_deployment_rollout_duration_seconds_bucket', { result: 'complete', le: '30' })).toBe(1);
    expect(await r.value('k8s_deployment_rollout_duration_seconds_bucket', { result: 'complete', le: '60' })).toBe(2);
    expect(await r.value('k8s_deployment_rollouts_total', { namespace: 'shop', result: 'complete' })).toBe(2);
    expect(await r.value('k8s_deployment_rollouts_total')).toBe(2);

    const spans = await r.spans(2);
    await new Promise((res) => setTimeout(res, 150));
    const tree = spanTree(r.receiver.spans);
    const rollouts = tree.byName('deployment.rollout').sort((a, b) => a.startTimeUnixNano.localeCompare(b.startTimeUnixNano));
    expect(rollouts.map((s) => [s.attributes['kta.revision'], seconds(s), s.status.code, s.parentSpanId])).toEqual([
      ['2', 40, 1, ''],
      ['3', 30, 1, ''],
    ]);
    expect(rollouts.map((s) => s.traceId)).toEqual([traceIdFor(CLUSTER_UID, rolloutTraceKey(D.uid, '2')), traceIdFor(CLUSTER_UID, rolloutTraceKey(D.uid, '3'))]);
    expect(rollouts[0]!.attributes).toMatchObject({ 'k8s.deployment.name': 'web', 'k8s.deployment.uid': D.uid, 'k8s.namespace.name': 'shop', 'kta.result': 'complete', 'kta.strategy': 'RollingUpdate' });
    expect(rollouts[0]!.resource['service.name']).toBe('kube-controller-manager');
    // the scale steps this agent saw begin, as children; nothing twice
    const scales = tree.byName('replicaset.scale');
    const ids = r.receiver.spans.map((s) => s.spanId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const s of scales) expect(rollouts.map((x) => x.spanId)).toContain(s.parentSpanId);
    const rev2 = scales.filter((s) => s.traceId === rollouts[0]!.traceId);
    if (restartAt === undefined) {
      expect(rev2.map((s) => `${s.attributes['k8s.replicaset.name']} ${s.attributes['kta.scale.from']}->${s.attributes['kta.scale.to']}`).sort()).toEqual([
        `${OLD.name} 2->0`,
        `${OLD.name} 3->2`,
        `${NEW.name} 0->1`,
        `${NEW.name} 1->3`,
      ]);
      // up 0->1 ends when the ReplicaSet reports the pod available (seen at +12 s; no time in its status)
      const firstUp = rev2.find((s) => s.attributes['kta.scale.to'] === 1)!;
      expect([seconds(firstUp), firstUp.attributes['kta.time.source']]).toEqual([12, 'observed']);
      expect(rollouts[0]!.events.map((e) => e.name)).toEqual(['ScalingReplicaSet', 'ScalingReplicaSet', 'ScalingReplicaSet', 'ScalingReplicaSet']);
    }
    expect(spans.length).toBeGreaterThanOrEqual(2);
    expect(scales.length).toBeGreaterThanOrEqual(restartAt === undefined ? 5 : 2);
  });

  it('a rollout past its progress deadline ends in ERROR at the Progressing condition time', async () => {
    const r = await startReplay(T - 60 * S);
    await r.put('replicasets', rs(OLD, 1, T - 3600 * S, 3, 3));
    await r.put('replicasets', rs(NEW, 2, T, 1, 0));
    await r.put('deployments', dep(2, 3, { replicas: 4, updated: 1, available: 3, progressing: { reason: 'ReplicaSetUpdated', at: T } }));
    await r.advanceTo(T + 601 * S);
    await r.put('deployments', dep(2, 3, { replicas: 4, updated: 1, available: 3, progressing: { reason: 'ProgressDeadlineExceeded', status: 'False', at: T + 600 * S, message: 'ReplicaSet "web-7d9f8b6c5" has timed out progressing.' } }));
    expect(await r.value('k8s_deployment_rollout_duration_seconds_count', { result: 'progress_deadline_exceeded' })).toBe(1);
    expect(await r.value('k8s_deployment_rollout_duration_seconds_sum', { result: 'progress_deadline_exceeded' })).toBe(600);
    expect(await r.value('k8s_deployment_rollouts_total', { namespace: 'shop', result: 'progress_deadline_exceeded' })).toBe(1);
    const [span] = await r.spans(1);
    expect(span!.name).toBe('deployment.rollout');
    expect(span!.status).toEqual({ code: 2, message: 'ProgressDeadlineExceeded: ReplicaSet "web-7d9f8b6c5" has timed out progressing.' });
  });
});
