import { describe, expect, it } from 'vitest';
import { nodeTraceKey } from '../agent/cluster/node_readiness_tracker.ts';
import { traceIdFor } from '../agent/cluster/span_ids.ts';
import { node, occurrence } from '../agent/demo/cluster_objects.ts';
import { CLUSTER_UID, replaySuite, S, seconds, spanTree, T } from './helpers/cluster_replay.ts';

const startReplay = replaySuite('node');

const N = { name: 'node-b', uid: 'b0b0b0b0-aaaa-4bbb-8ccc-dddddddddddd' };
const PODS = ['web-7d9f8b6c5-x2x7q', 'web-7d9f8b6c5-k9m4p', 'api-6f7e8d9c0-q1w2e', 'worker-5b6c7d8e9-r4t5y'];

describe('a node NotReady for 6 minutes with four evictions, replayed through the fake API', () => {
  it.each([{ restart: false }, { restart: true }])('one observation, one root with four eviction children (restart mid-outage: $restart)', async ({ restart }) => {
    const r = await startReplay(T - 60 * S);
    await r.put('nodes', node({ ...N, created: T - 86400 * S, ready: true, since: T - 86000 * S }));
    await r.advanceTo(T + 40 * S);
    await r.put('nodes', node({ ...N, created: T - 86400 * S, ready: false, since: T }));
    r.event(occurrence({ reason: 'NodeNotReady', note: `Node ${N.name} status is now: NodeNotReady`, component: 'node-controller', regarding: { kind: 'Node', name: N.name, uid: N.name }, at: T + 40 * S }));
    if (restart) {
      await r.advanceTo(T + 200 * S);
      await r.restart();
    }
    // 300 s toleration: the taint manager evicts at +300 s (the event carries no pod uid)
    await r.advanceTo(T + 300 * S);
    for (const name of PODS) {
      const ns = name.startsWith('api') ? 'api' : 'shop';
      r.event(occurrence({ reason: 'TaintManagerEviction', note: `Marking for deletion Pod ${ns}/${name}`, component: 'taint-eviction-controller', regarding: { kind: 'Pod', namespace: ns, name, uid: '' }, at: T + 300 * S, namespace: ns }));
    }
    await r.advanceTo(T + 361 * S);
    await r.put('nodes', node({ ...N, created: T - 86400 * S, ready: true, since: T + 360 * S }));

    expect(await r.value('k8s_node_not_ready_duration_seconds_count')).toBe(1);
    expect(await r.value('k8s_node_not_ready_duration_seconds_sum')).toBe(360);
    expect(await r.value('k8s_node_not_ready_duration_seconds_bucket', { le: '300' })).toBe(0);
    expect(await r.value('k8s_node_not_ready_duration_seconds_bucket', { le: '600' })).toBe(1);
    const spans = await r.spans(5);
    await new Promise((res) => setTimeout(res, 100));
    expect(r.receiver.spans.length).toBe(5);
    const tree = spanTree(spans);
    const root = tree.one('node.not_ready');
    expect(root.traceId).toBe(traceIdFor(CLUSTER_UID, nodeTraceKey(N.uid, T)));
    expect([seconds(root), root.status.code, root.attributes['k8s.node.name']]).toEqual([360, 1, N.name]);
    const evictions = tree.byName('pod.eviction');
    expect(evictions.map((e) => e.attributes['k8s.pod.name']).sort()).toEqual([...PODS].sort());
    for (const e of evictions) expect([e.traceId, e.parentSpanId, e.events[0]!.name]).toEqual([root.traceId, root.spanId, 'TaintManagerEviction']);
    expect(root.events.map((e) => e.name)).toEqual([...(restart ? [] : ['NodeNotReady']), ...PODS.map(() => 'TaintManagerEviction')]);
  });
});
