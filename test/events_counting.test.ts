import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeEvent, seconds } from './fakes/kube_api_server.ts';
import { EventsHarness, metricValue, series } from './events_harness.ts';
import { waitFor } from './helpers/child_agent.ts';

let h: EventsHarness;
beforeEach(async () => {
  h = new EventsHarness();
  await h.start();
});
afterEach(async () => {
  await h.close();
});

const pod = { kind: 'Pod', name: 'web-1', namespace: 'shop', uid: 'pod-uid-1' };

describe('kubernetes_events counting', () => {
  it('seeds from the first LIST without counting, then counts count deltas of MODIFIED', async () => {
    const old = h.api.create('events', makeEvent({ regarding: pod, reason: 'BackOff', type: 'Warning', message: 'Back-off restarting failed container', component: 'kubelet', host: 'n1', count: 40 }));
    const a = await h.agent('a', { leader_election: false });
    await waitFor('synced', () => a.source.tracked === 1, 5000);
    expect(await series(a.metrics, 'k8s_events_total')).toEqual([]);
    h.api.modify('events', 'shop', old.metadata.name, (e) => void (e.count = 43));
    await waitFor('3 counted', async () => (await metricValue(a.metrics, 'k8s_events_total', { namespace: 'shop', kind: 'Pod', reason: 'BackOff', type: 'Warning', component: 'kubelet' })) === 3, 5000);
    expect(a.records.map((r) => r.attributes['k8s.event.count'])).toEqual([43]);
    expect(a.records[0]!.attributes['kta.event.delta']).toBe(3);
    await a.stop();
  });
});
