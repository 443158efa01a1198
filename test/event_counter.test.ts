import { describe, expect, it } from 'vitest';
import { readHandover, writeHandover, HANDOVER_ANNOTATION, LEGACY_HIGH_WATER_ANNOTATION } from '../agent/cluster/handover.ts';
import { parseKubeTime } from '../agent/kube/micro_time.ts';
import { EventCounter } from '../agent/sources/kubernetes_events/event_counter.ts';
import { normalizeEvent, type NormalizedEvent } from '../agent/sources/kubernetes_events/normalize.ts';

/**
 * The causes of issue 10's counting defects, one by one, on the counter alone (the real-API tests in
 * test/realk8s/ show the same end to end): the high-water mark moving while a LIST is walked in name
 * order, the 410 relist going through the same path, and a whole-second mark against microsecond times.
 */

const T0 = Date.parse('2026-12-05T10:00:00Z');
const NOW = T0 + 3600_000;

function counter(): EventCounter {
  return new EventCounter({ maxTracked: 1000, tombstoneTtlMs: 7200_000, eventTtlMs: 3600_000, now: () => NOW });
}

/** A core/v1 Event (whole-second times) or an events.k8s.io one (`micro`: eventTime with µs). */
function ev(name: string, o: { first: string; last?: string; count?: number; uid?: string; micro?: boolean }): NormalizedEvent {
  const base = { apiVersion: 'v1', kind: 'Event', metadata: { name, namespace: 'shop', uid: o.uid ?? `uid-${name}`, resourceVersion: '1', creationTimestamp: o.first.replace(/\.\d+Z$/, 'Z') }, reason: 'R', type: 'Normal', involvedObject: { kind: 'Pod', name: 'p', namespace: 'shop' } };
  if (o.micro) return normalizeEvent({ ...base, eventTime: o.first, series: o.count && o.count > 1 ? { count: o.count, lastObservedTime: o.last } : null, reportingComponent: 'default-scheduler' } as never);
  return normalizeEvent({ ...base, firstTimestamp: o.first, lastTimestamp: o.last ?? o.first, count: o.count ?? 1, source: { component: 'kubelet' } } as never);
}

const at = (s: number) => new Date(T0 + s * 1000).toISOString().replace(/\.000Z$/, 'Z');

function list(c: EventCounter, events: NormalizedEvent[]): number {
  c.listStart();
  let n = 0;
  for (const e of events) n += c.listed(e);
  c.listEnd();
  return n;
}

describe('EventCounter: the mark does not move while a LIST is walked (issue 10, defect 1)', () => {
  it('after a restart, a LIST in name order (a newer Event before older ones) counts every Event written while the agent was down', () => {
    const before = counter();
    list(before, [ev('seed', { first: at(0) })]);
    before.added(ev('counted', { first: at(10) })); // the last thing counted before the kill
    const c = counter();
    c.restore(before.snapshot());
    expect(c.highWater).toBe(T0 + 10_000);
    // written while the agent was down, listed in name order: a-... is the newest
    const down = [ev('a-scaling', { first: at(40) }), ev('b-create', { first: at(20) }), ev('c-create', { first: at(25) }), ev('d-delete', { first: at(30) })];
    expect(list(c, [ev('counted', { first: at(10) }), ev('seed', { first: at(0) }), ...down])).toBe(4);
    expect(c.highWater).toBe(T0 + 40_000);
  });

  it('a relist after 410 is judged the same way: Events created during the gap count whatever their place in the LIST', () => {
    const c = counter();
    list(c, [ev('old', { first: at(0) })]); // the first LIST: history, seeded
    expect(c.added(ev('live', { first: at(5) }))).toBe(1);
    // the watch is lost (410); meanwhile three Events are written; the relist brings them in name order
    const gap = [ev('x-newest', { first: at(9) }), ev('y-older', { first: at(6) }), ev('z-oldest', { first: at(5) , uid: 'uid-z' })];
    expect(list(c, [ev('live', { first: at(5) }), ev('old', { first: at(0) }), ...gap])).toBe(3);
    // and a known Event that grew during the gap counts its growth, once
    expect(list(c, [ev('live', { first: at(5), last: at(11), count: 3 }), ev('old', { first: at(0) }), ...gap])).toBe(2);
  });

  it('the first LIST of a first start seeds history and sets the mark there (a successor does not count it)', () => {
    const c = counter();
    expect(list(c, [ev('b', { first: at(3) }), ev('a', { first: at(7) })])).toBe(0);
    expect(c.highWater).toBe(T0 + 7000);
    expect(c.handover()).toEqual({ highWaterMs: T0 + 7000, recent: [] });
  });
});

describe('EventCounter: a first start counts from the moment it leads', () => {
  it('Events written after it started to lead but before its first LIST came back count; history does not', () => {
    const c = counter();
    c.startAt(T0 + 30_700); // an Event written 0.2 s later says T0 + 30 s (whole seconds)
    const history = ev('old', { first: at(0) });
    const grew = ev('grew', { first: at(10), last: at(31), count: 4 });
    const fresh = ev('fresh', { first: at(30), count: 2 });
    expect(list(c, [fresh, grew, history])).toBe(2 + 1 + 0);
  });
});

describe('EventCounter: a takeover from the Lease handover (issue 10, defects 1 and 3)', () => {
  const micro = (s: string) => parseKubeTime(s)!;

  it('the mark keeps microseconds: an Event counted by the old leader (4 s before its kill) is not counted again; one a microsecond later is', () => {
    const old = counter();
    list(old, []);
    const counted = ev('sched-a', { first: '2026-12-05T10:00:06.500123Z', micro: true });
    expect(old.added(counted)).toBe(1);
    const handed = readHandover({ [HANDOVER_ANNOTATION]: writeHandover({ events: old.handover() }) }).handover!.events!;
    expect(handed.highWaterMs).toBe(micro('2026-12-05T10:00:06.500123Z'));

    const c = counter();
    c.handOver({ highWaterMs: handed.highWaterMs, recent: [] }); // even without the recent counts
    const later = ev('sched-b', { first: '2026-12-05T10:00:06.500124Z', micro: true });
    const earlier = ev('sched-c', { first: '2026-12-05T10:00:06.499999Z', micro: true });
    // without the counts handed over, an Event exactly at the mark cannot be told from a new one (the
    // README's bound); with them it is known
    expect(list(c, [counted, later, earlier])).toBe(1 + 1);
    const withRecent = counter();
    withRecent.handOver(handed);
    expect(list(withRecent, [counted, later, earlier])).toBe(1);
  });

  it('growth after the mark: exact for Events the predecessor handed over, at least one for the others', () => {
    const c = counter();
    c.handOver({ highWaterMs: T0 + 10_000, recent: [['uid-known', 4]] });
    const known = ev('known', { first: at(1), last: at(12), count: 7, uid: 'uid-known' });
    const other = ev('other', { first: at(2), last: at(13), count: 9, uid: 'uid-other' });
    const quiet = ev('quiet', { first: at(2), last: at(8), count: 5, uid: 'uid-quiet' });
    expect(list(c, [known, other, quiet])).toBe(3 + 1 + 0);
  });

  it('a handover replaces this agent\'s own stale counts (another leader counted since)', () => {
    const c = counter();
    list(c, []);
    c.added(ev('e', { first: at(1), count: 2 }));
    c.handOver({ highWaterMs: T0 + 20_000, recent: [['uid-e', 6]] });
    expect(c.modified(ev('e', { first: at(1), last: at(21), count: 7 }), 2)).toBe(1);
  });
});

describe('the Lease handover annotation is untrusted input (issue 11)', () => {
  it('round-trips, with microseconds', () => {
    const h = { identity: 'agent-a', events: { highWaterMs: parseKubeTime('2026-12-05T10:00:00.000001Z')!, recent: [['u', 3]] as [string, number][] }, signals: { throughMs: T0, keys: ['rollout/u/2'] } };
    expect(readHandover({ [HANDOVER_ANNOTATION]: writeHandover(h) })).toEqual({ handover: h });
    expect(readHandover({})).toEqual({});
    expect(readHandover(undefined)).toEqual({});
  });

  it('reads the whole-second mark of earlier versions as counted through the end of that second', () => {
    expect(readHandover({ [LEGACY_HIGH_WATER_ANNOTATION]: String(T0) }).handover?.events?.highWaterMs).toBe(T0 + 999.999);
  });

  it.each([
    ['not JSON', '{"version":1,', /not JSON/],
    ['another version', '{"version":2}', /version/],
    ['a time that is not one', '{"version":1,"events":{"highWater":"yesterday","recent":[]}}', /events\.highWater: not an RFC 3339 time/],
    ['a negative count', '{"version":1,"events":{"highWater":"2026-12-05T10:00:00Z","recent":[["u",-1]]}}', /events\.recent\.0\.1/],
    ['a count that is not a number', '{"version":1,"events":{"highWater":"2026-12-05T10:00:00Z","recent":[["u","7"]]}}', /events\.recent\.0\.1/],
    ['too many recent Events', JSON.stringify({ version: 1, events: { highWater: '2026-12-05T10:00:00Z', recent: Array.from({ length: 300 }, (_, i) => [`u${i}`, 1]) } }), /events\.recent/],
    ['an unknown key', '{"version":1,"evil":true}', /Unrecognized key/],
    ['null', 'null', /\(top\)/],
  ])('%s: an error naming what is wrong, no exception', (_, value, message) => {
    const r = readHandover({ [HANDOVER_ANNOTATION]: value });
    expect(r.handover).toBeUndefined();
    expect(r.error).toMatch(message);
  });

  it('a legacy mark that is not a number is an error too', () => {
    expect(readHandover({ [LEGACY_HIGH_WATER_ANNOTATION]: '1e99' }).error).toMatch(/not an epoch ms/);
  });
});
