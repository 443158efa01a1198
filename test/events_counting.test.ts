import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { makeEvent, seconds, type FakeObject } from '../agent/demo/kube_api_server.ts';
import { EventsHarness, harnessPerTest, metricValue, series } from './events_harness.ts';
import { waitFor } from './helpers/child_agent.ts';

const harness = harnessPerTest();
let h: EventsHarness;
beforeEach(() => void (h = harness()));

const pod = { kind: 'Pod', name: 'web-1', namespace: 'shop', uid: 'pod-uid-1' };
const backOff = { namespace: 'shop', kind: 'Pod', reason: 'BackOff', type: 'Warning', component: 'kubelet' };
const ago = (s: number) => seconds(new Date(Date.now() - s * 1000));

function kubeletEvent(count: number, extra: Partial<Parameters<typeof makeEvent>[0]> = {}): FakeObject {
  return makeEvent({ regarding: pod, reason: 'BackOff', type: 'Warning', message: 'Back-off restarting failed container app in pod web-1', component: 'kubelet', host: 'n1', count, ...extra });
}

async function total(a: { metrics: Parameters<typeof metricValue>[0] }, labels = backOff): Promise<number> {
  return metricValue(a.metrics, 'k8s_events_total', labels);
}

describe('kubernetes_events counting (kubernetes-events.md §4)', () => {
  it('seeds from the first LIST without counting history, then counts count deltas of MODIFIED', async () => {
    const old = h.api.create('events', kubeletEvent(40, { first: ago(600), last: ago(30) }));
    const a = await h.agent('a', { leader_election: false });
    await waitFor('synced', () => a.source.tracked === 1, 5000);
    expect(await series(a.metrics, 'k8s_events_total')).toEqual([]);
    h.api.modify('events', 'shop', old.metadata.name, (e) => void (e.count = 43));
    await waitFor('3 counted', async () => (await total(a)) === 3, 5000);
    expect(a.records.map((r) => [r.attributes['k8s.event.count'], r.attributes['kta.event.delta']])).toEqual([[43, 3]]);
    expect(a.records[0]!.severityNumber).toBe(13);
    expect(a.records[0]!.resource['k8s.pod.name']).toBe('web-1');
    await a.stop();
  });

  it('reads events.k8s.io/v1 and falls back to core/v1 where discovery does not list the group (404), never touching the other', async () => {
    const v1 = await h.agent('v1', { leader_election: false });
    await h.watching();
    h.api.create('events', kubeletEvent(1));
    await waitFor('counted via events.k8s.io', async () => (await total(v1)) === 1, 5000);
    expect(h.api.requests.some((r) => r.path === '/apis/events.k8s.io/v1/events' && r.verb === 'watch')).toBe(true);
    expect(h.api.requests.filter((r) => r.path.startsWith('/api/v1/events'))).toEqual([]);
    await v1.stop();

    const core = new EventsHarness({ eventsV1: false });
    await core.start();
    try {
      const c = await core.agent('core', { leader_election: false });
      await core.watching('/api/v1/events');
      core.api.create('events', kubeletEvent(2));
      await waitFor('counted via core/v1', async () => (await total(c)) === 2, 5000);
      expect(core.api.requests.some((r) => r.path === '/api/v1/events' && r.verb === 'watch')).toBe(true);
      // discovery decided it: no request for events.k8s.io events at all (RBAC need not grant them)
      expect(core.api.requests.some((r) => r.path === '/apis/events.k8s.io/v1' && r.status === 404)).toBe(true);
      expect(core.api.requests.filter((r) => r.path.startsWith('/apis/events.k8s.io/v1/'))).toEqual([]);
      await c.stop();
    } finally {
      await core.close();
    }
  });

  it('an Event re-created after expiry (same name, new uid, continued count) counts only its growth', async () => {
    const a = await h.agent('a', { leader_election: false });
    await h.watching();
    const e = h.api.create('events', kubeletEvent(36, { first: ago(7200), last: ago(1) }));
    // first sight of an Event older than the TTL with count 36: one new occurrence, not 36
    await waitFor('first sight', async () => (await total(a)) === 1, 5000);
    h.api.delete('events', 'shop', e.metadata.name);
    await waitFor('tombstone', () => (a.source as unknown as { counter: { tombstoneCount: number } }).counter.tombstoneCount === 1, 5000);
    h.api.create('events', { ...structuredClone(e), metadata: { ...e.metadata, uid: 'recreated-uid', resourceVersion: undefined }, count: 37 });
    await waitFor('+1 after re-creation', async () => (await total(a)) === 2, 5000);
    expect(a.records.map((r) => r.attributes['kta.event.delta'])).toEqual([1, 1]);
    await a.stop();
  });

  it('a count that goes backwards for one uid counts 0 and is logged', async () => {
    const a = await h.agent('a', { leader_election: false });
    await h.watching();
    const e = h.api.create('events', kubeletEvent(5));
    await waitFor('5', async () => (await total(a)) === 5, 5000);
    h.api.modify('events', 'shop', e.metadata.name, (x) => void (x.count = 3));
    h.api.modify('events', 'shop', e.metadata.name, (x) => void (x.count = 7));
    await waitFor('7', async () => (await total(a)) === 7, 5000);
    expect(a.logs.join('')).toMatch(/went from 5 to 3 occurrences; counted as 0/);
    expect(a.records.map((r) => r.attributes['kta.event.delta'])).toEqual([5, 2]);
    await a.stop();
  });

  it('events out of order (older last_seen after newer) are each counted once', async () => {
    const a = await h.agent('a', { leader_election: false });
    await h.watching();
    h.api.create('events', kubeletEvent(1, { first: ago(5), last: ago(5) }));
    h.api.create('events', kubeletEvent(2, { first: ago(300), last: ago(200) }));
    h.api.create('events', kubeletEvent(1, { first: ago(100), last: ago(100) }));
    await waitFor('4', async () => (await total(a)) === 4, 5000);
    expect(a.records.map((r) => r.timestamp < a.records[0]!.timestamp)).toEqual([false, true, true]);
    await a.stop();
  });

  it('an Event about an object that no longer exists is counted and logged with its reference', async () => {
    const a = await h.agent('a', { leader_election: false });
    await h.watching();
    const gone = { kind: 'Pod', name: 'deleted-pod', namespace: 'shop', uid: 'gone-uid' };
    h.api.create('events', makeEvent({ regarding: gone, reason: 'FailedScheduling', type: 'Warning', message: '0/3 nodes are available', component: 'default-scheduler', api: 'events', action: 'Scheduling' }));
    await waitFor('counted', async () => (await metricValue(a.metrics, 'k8s_pod_startup_failures_total', { owner_kind: 'unknown', reason: 'Unschedulable' })) === 1, 5000);
    expect(await series(a.metrics, 'k8s_events_total')).toEqual(['component=default-scheduler,kind=Pod,namespace=shop,reason=FailedScheduling,type=Warning 1']);
    expect(a.records[0]!.resource).toMatchObject({ 'k8s.object.name': 'deleted-pod', 'k8s.pod.uid': 'gone-uid' });
    await a.stop();
  });

  it('a watch that breaks mid-stream resumes without counting twice; after 410 the relist counts only what changed', async () => {
    const a = await h.agent('a', { leader_election: false });
    await h.watching();
    const e = h.api.create('events', kubeletEvent(1));
    await waitFor('1', async () => (await total(a)) === 1, 5000);
    const watches = () => h.api.count({ verb: 'watch', resource: 'events' });
    const before = watches();
    h.api.breakWatches();
    h.api.modify('events', 'shop', e.metadata.name, (x) => void (x.count = 4));
    await waitFor('rewatched', () => watches() > before, 10_000);
    await waitFor('4', async () => (await total(a)) === 4, 10_000);

    // the watch is lost and history compacted: the relist diffs against what was seen
    const lists = () => h.api.count({ verb: 'list', resource: 'events' });
    const listsBefore = lists();
    h.api.breakWatches();
    h.api.modify('events', 'shop', e.metadata.name, (x) => void (x.count = 6));
    h.api.create('events', kubeletEvent(2));
    h.api.compact();
    await waitFor('relisted', () => lists() > listsBefore, 15_000);
    await waitFor('4 + 2 + 2', async () => (await total(a)) === 8, 10_000);
    expect(a.records.map((r) => r.attributes['kta.event.delta'])).toEqual([1, 3, 2, 2]);
    await a.stop();
  });

  it('clock skew: an eventTime far ahead of lastTimestamp is counted once and does not hide later events after a restart', async () => {
    let a = await h.agent('a', { leader_election: false });
    await h.watching();
    const skewed = kubeletEvent(1, { first: ago(10), last: ago(10) });
    skewed.eventTime = new Date(Date.now() + 3600_000).toISOString().replace('Z', '000Z'); // a recorder an hour ahead
    skewed.series = { count: 2, lastObservedTime: new Date(Date.now() + 3600_000).toISOString().replace('Z', '000Z') };
    h.api.create('events', skewed);
    await waitFor('2', async () => (await total(a)) === 2, 5000);
    await a.stop();
    // created while the agent was down, with a sane clock: counted by the catch-up after restart
    h.api.create('events', kubeletEvent(3, { first: ago(0), last: ago(0) }));
    a = await h.agent('a', { leader_election: false });
    await waitFor('3 after restart', async () => (await total(a)) === 3, 5000);
    await a.stop();
  });

  it('log records not yet accepted by the outputs at a stop are sent again after the restart, the counters untouched', async () => {
    let a = await h.agent('a', { leader_election: false });
    await h.watching();
    a.accepting = false; // an output that has not confirmed anything yet
    h.api.create('events', kubeletEvent(2));
    h.api.create('events', kubeletEvent(1, { reason: 'Killing', type: 'Normal', message: 'Stopping container app' }));
    await waitFor('counted', async () => (await total(a)) === 2 && a.source.pendingRecords === 2, 5000);
    await a.stop(); // settled() times out: the two records stay in the checkpoint
    a = await h.agent('a', { leader_election: false });
    await waitFor('re-sent', () => a.records.length === 2, 5000);
    expect(a.records.map((r) => r.attributes['k8s.event.reason']).sort()).toEqual(['BackOff', 'Killing']);
    await waitFor('accepted', () => a.source.pendingRecords === 0, 5000);
    expect(await series(a.metrics, 'k8s_events_total')).toEqual([]); // nothing counted twice
    await a.stop();
  });

  it('a corrupt checkpoint is reported and the source starts as on a first run: seeds, counts only what is new', async () => {
    mkdirSync(join(h.dir, 'a', 'checkpoints'), { recursive: true });
    writeFileSync(join(h.dir, 'a', 'checkpoints', 'a.events.json'), '{"version":1,"counter":{"seen":[[');
    // history: from seconds before the start (one from the very second it starts would count)
    h.api.create('events', kubeletEvent(9, { first: ago(5), last: ago(5) }));
    const a = await h.agent('a', { leader_election: false });
    await h.watching();
    expect(a.logs.join('')).toMatch(/ignoring checkpoint .*a\.events\.json/);
    expect(await metricValue(a.metrics, 'telemetry_agent_checkpoint_invalid_total', { source: 'a', reason: 'unreadable' })).toBe(1);
    h.api.create('events', kubeletEvent(1));
    await waitFor('only the new one', async () => (await total(a)) === 1, 5000);
    await a.stop();
  });

  it('50,000 events in a burst: all counted, memory bounded by max_tracked_events and max_pending_records, drops counted', async () => {
    const a = await h.agent('a', { leader_election: false, max_tracked_events: 10_000, max_pending_records: 1000 });
    await h.watching();
    a.accepting = false; // a stuck output
    for (let i = 0; i < 50_000; i++) {
      h.api.create('events', makeEvent({ regarding: { kind: 'Pod', name: `p-${i}`, namespace: `ns-${i % 20}`, uid: `u-${i}` }, reason: 'Scheduled', message: `Successfully assigned ns/p-${i} to n1`, component: 'default-scheduler', api: 'events' }));
    }
    let sum = 0;
    await waitFor(
      'all 50,000 counted',
      async () => {
        const m = await a.metrics.registry.getSingleMetric('k8s_events_total')!.get();
        sum = m.values.reduce((n, v) => n + v.value, 0);
        return sum === 50_000;
      },
      60_000,
      250,
    );
    expect(a.source.tracked).toBeLessThanOrEqual(10_000);
    expect(a.source.pendingRecords).toBeLessThanOrEqual(1000);
    const dropped = await metricValue(a.metrics, 'telemetry_agent_dropped_records_total', { component: 'a', reason: 'queue_full' });
    expect(dropped + a.source.pendingRecords).toBe(50_000);
    a.accepting = true;
    await a.source.stopReading();
    await a.source.close();
  }, 90_000);
});
