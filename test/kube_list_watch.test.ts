import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { resolveConnection, type KubeConnection } from '../agent/kube/connection.ts';
import { ListWatch, type ListWatchOptions } from '../agent/kube/list_watch.ts';
import type { KubeObject } from '../agent/kube/types.ts';
import { createLogger } from '../agent/log.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import { FakeKubeApiServer, makePod, makeReplicaSet, writeKubeconfig, type FakeKubeApiServerOptions } from '../agent/demo/kube_api_server.ts';
import { waitFor } from './helpers/child_agent.ts';

const dir = mkdtempSync(join(tmpdir(), 'kta-kube-lw-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let seq = 0;

interface Setup {
  fake: FakeKubeApiServer;
  conn: KubeConnection;
  metrics: SelfMetrics;
  watch: ListWatch<KubeObject>;
  events: string[];
  logs: string[];
}

async function setup(fakeOpts: FakeKubeApiServerOptions = {}, lw: Partial<ListWatchOptions<KubeObject>> = {}, start = true): Promise<Setup> {
  const fake = new FakeKubeApiServer({ token: 'secret-token', ...fakeOpts });
  await fake.start();
  const logs: string[] = [];
  const log = createLogger('debug', (l) => void logs.push(l));
  const file = writeKubeconfig(dir, { server: fake.url, token: 'secret-token', insecure: true }, `kubeconfig-${++seq}`);
  const conn = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: file, log }))!;
  const metrics = new SelfMetrics('test');
  const watch = new ListWatch<KubeObject>(
    {
      connection: conn,
      path: '/api/v1/pods',
      resource: 'pods',
      fieldSelector: 'spec.nodeName=node-a',
      backoff: { initialMs: 20, maxMs: 200 },
      idleTimeoutMs: 5000,
      log,
      ...lw,
    },
    metrics,
  );
  const events: string[] = [];
  watch.subscribe({
    onAdd: (o) => void events.push(`add ${o.metadata.name}`),
    onUpdate: (_a, b) => void events.push(`update ${b.metadata.name}`),
    onDelete: (o, unknown) => void events.push(`delete ${o.metadata.name}${unknown ? ' (final state unknown)' : ''}`),
  });
  cleanups.push(async () => {
    await watch.stop();
    conn.close();
    await fake.close();
  });
  if (start) watch.start();
  return { fake, conn, metrics, watch, events, logs };
}

function pod(name: string, nodeName = 'node-a', extra: Partial<Parameters<typeof makePod>[0]> = {}) {
  return makePod({ name, namespace: 'shop', nodeName, labels: { app: 'shop' }, ...extra });
}

async function restarts(metrics: SelfMetrics, reason: string, resource = 'pods'): Promise<number> {
  const m = await metrics.kubeWatchRestarts.get();
  return m.values.find((v) => v.labels.resource === resource && v.labels.reason === reason)?.value ?? 0;
}

const watchRequests = (fake: FakeKubeApiServer) => fake.requests.filter((r) => r.verb === 'watch');
const lastWatch = (fake: FakeKubeApiServer) => watchRequests(fake).at(-1)!;

/** Waits until a watch is open on the fake (the LIST is done and the stream has started). */
async function watching(s: Setup, count = 1): Promise<void> {
  await waitFor('watch open', () => s.fake.activeWatches >= 1 && watchRequests(s.fake).length >= count, 10_000, 10);
}

describe('ListWatch: list, then watch', () => {
  it('lists in pages of 500 from the watch cache, then watches from the list resourceVersion with bookmarks and a jittered timeout', async () => {
    const s = await setup({ chunkBytes: 7 }, {}, false);
    for (let i = 0; i < 1200; i++) s.fake.create('pods', pod(`web-${String(i).padStart(4, '0')}`));
    for (let i = 0; i < 30; i++) s.fake.create('pods', pod(`other-${i}`, 'node-b'));
    const listRv = s.fake.resourceVersion;
    s.watch.start();
    await s.watch.whenSynced();
    expect(s.watch.synced).toBe(true);
    expect(s.watch.size).toBe(1200);
    expect(s.events.filter((e) => e.startsWith('add')).length).toBe(1200);

    const lists = s.fake.requests.filter((r) => r.verb === 'list');
    expect(lists.length).toBe(3);
    expect(lists[0].query.get('limit')).toBe('500');
    expect(lists[0].query.get('resourceVersion')).toBe('0');
    expect(lists[0].query.get('fieldSelector')).toBe('spec.nodeName=node-a');
    expect(lists[1].query.get('continue')).toBeTruthy();
    expect(lists[1].query.get('resourceVersion')).toBeNull();
    expect(lists[0].authorization).toBe('Bearer secret-token');

    await watching(s);
    const w = lastWatch(s.fake).query;
    expect(w.get('watch')).toBe('1');
    expect(w.get('resourceVersion')).toBe(listRv);
    expect(w.get('allowWatchBookmarks')).toBe('true');
    expect(w.get('fieldSelector')).toBe('spec.nodeName=node-a');
    const t = Number(w.get('timeoutSeconds'));
    expect(t).toBeGreaterThanOrEqual(300);
    expect(t).toBeLessThanOrEqual(600);
    expect(s.watch.connected).toBe(true);

    // watch events arrive split every 7 bytes
    s.events.length = 0;
    s.fake.create('pods', pod('web-new'));
    s.fake.modify('pods', 'shop', 'web-0000', (o) => void (o.metadata.labels!.version = 'v2'));
    s.fake.delete('pods', 'shop', 'web-0001');
    s.fake.create('pods', pod('elsewhere', 'node-b')); // other node: never seen
    s.fake.create('pods', pod('pending', ''));
    s.fake.modify('pods', 'shop', 'pending', (o) => void ((o.spec as { nodeName: string }).nodeName = 'node-a')); // bound to this node: ADDED
    await waitFor('events', () => s.events.length >= 4, 10_000, 10);
    expect(s.events).toEqual(['add web-new', 'update web-0000', 'delete web-0001', 'add pending']);
    expect(s.watch.get('shop/web-0000')!.metadata.labels!.version).toBe('v2');
    expect(s.watch.get('shop/web-0001')).toBeUndefined();
    expect(s.watch.get('shop/elsewhere')).toBeUndefined();
    expect(s.watch.resourceVersion).toBe(s.fake.resourceVersion);
    // managedFields are dropped on receipt, from LIST and WATCH alike
    for (const o of s.watch.values()) expect(o.metadata.managedFields).toBeUndefined();
    expect(s.fake.count({ verb: 'list' })).toBe(3);
  });

  it('reads a 1 MB object and multi-byte characters split across chunk boundaries', async () => {
    const s = await setup({ chunkBytes: 4099 });
    await watching(s);
    const big = 'é日本語🙂'.repeat(80_000); // > 1 MB of UTF-8, characters straddle chunk boundaries
    s.fake.create('pods', pod('big', 'node-a', { annotations: { 'example.com/blob': big } }));
    await waitFor('big pod', () => s.watch.get('shop/big'), 20_000, 20);
    expect(Buffer.byteLength(big)).toBeGreaterThan(1_000_000);
    expect(s.watch.get('shop/big')!.metadata.annotations!['example.com/blob']).toBe(big);
  });

  it('lists and watches metadata only when asked (PartialObjectMetadata)', async () => {
    const fake = new FakeKubeApiServer();
    await fake.start();
    const file = writeKubeconfig(dir, { server: fake.url, insecure: true, token: 'x' }, `kubeconfig-${++seq}`);
    const conn = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: file, log: createLogger('error') }))!;
    fake.create('replicasets', makeReplicaSet('shop', 'web-7d4b9c', { name: 'web', uid: 'dep-1' }));
    const rs = new ListWatch({ connection: conn, path: '/apis/apps/v1/replicasets', resource: 'replicasets', metadataOnly: true }, new SelfMetrics('t'));
    cleanups.push(async () => {
      await rs.stop();
      conn.close();
      await fake.close();
    });
    rs.start();
    await rs.whenSynced();
    const o = rs.get('shop/web-7d4b9c') as KubeObject & { spec?: unknown };
    expect(o.metadata.ownerReferences![0].name).toBe('web');
    expect(o.spec).toBeUndefined();
    await waitFor('watch', () => fake.activeWatches === 1, 5000, 10);
    fake.create('replicasets', makeReplicaSet('shop', 'api-5f6d7', { name: 'api', uid: 'dep-2' }));
    await waitFor('rs event', () => rs.get('shop/api-5f6d7'), 5000, 10);
    expect((rs.get('shop/api-5f6d7') as KubeObject).kind).toBe('PartialObjectMetadata');
    const [list, watch] = [fake.requests.find((r) => r.verb === 'list')!, fake.requests.find((r) => r.verb === 'watch')!];
    expect(list.accept).toContain('as=PartialObjectMetadataList;g=meta.k8s.io;v=v1');
    expect(watch.accept).toContain('as=PartialObjectMetadata;g=meta.k8s.io;v=v1');
    expect(watch.accept).not.toContain('PartialObjectMetadataList');
  });
});

describe('ListWatch: ends, bookmarks and 410', () => {
  it('rewatches from the last resourceVersion when the server ends the watch at timeoutSeconds, without listing again', async () => {
    const s = await setup({ secondMs: 100, noBookmarks: false }, { watchTimeoutSeconds: { min: 2, max: 3 } });
    await watching(s);
    for (let i = 0; i < 20; i++) s.fake.create('pods', pod(`other-${i}`, 'node-b'));
    await waitFor('5 watches', () => watchRequests(s.fake).length >= 5, 10_000, 20);
    expect(s.fake.count({ verb: 'list' })).toBe(1);
    expect(await restarts(s.metrics, 'closed')).toBeGreaterThanOrEqual(4);
    // the final bookmark before the end carried the global resourceVersion forward
    expect(lastWatch(s.fake).query.get('resourceVersion')).toBe(s.fake.resourceVersion);
    expect(await restarts(s.metrics, 'expired')).toBe(0);
  });

  it('bookmarks keep the resourceVersion fresh: resuming after 10 quiet minutes does not relist (and does without bookmarks)', async () => {
    // 1 API second = 5 ms: bookmarks every 60 s (300 ms), watches of 300-600 s, 10 quiet minutes = 3 s.
    // Meanwhile pods of other nodes change 1000 times, 10x the history the server keeps.
    const run = async (noBookmarks: boolean) => {
      const s = await setup({ secondMs: 5, historySize: 100, noBookmarks }, { idleTimeoutMs: noBookmarks ? 60_000 : 150 * 5 });
      s.fake.create('pods', pod('quiet'));
      await watching(s);
      s.fake.create('pods', pod('other', 'node-b'));
      for (let i = 0; i < 1000; i++) {
        s.fake.modify('pods', 'shop', 'other', (o) => void (o.metadata.labels!.n = String(i)));
        if (i % 100 === 99) await new Promise((r) => setTimeout(r, 300));
      }
      s.fake.breakWatches(); // the connection drops after the quiet period
      s.fake.create('pods', pod('late'));
      await waitFor('late pod', () => s.watch.get('shop/late'), 10_000, 10);
      return { lists: s.fake.count({ verb: 'list' }), expired: await restarts(s.metrics, 'expired'), events: s.events };
    };
    const withBookmarks = await run(false);
    expect(withBookmarks.lists).toBe(1);
    expect(withBookmarks.expired).toBe(0);
    expect(withBookmarks.events).toEqual(['add quiet', 'add late']);
    const without = await run(true);
    expect(without.lists).toBeGreaterThanOrEqual(2);
    expect(without.expired).toBeGreaterThanOrEqual(1);
  });

  for (const expiredAs of ['status', 'event'] as const) {
    it(`relists on 410 (${expiredAs === 'status' ? 'HTTP 410' : 'ERROR event in the stream'}) and reports the gap as a diff`, async () => {
      const s = await setup({ expiredAs });
      for (const n of ['a', 'b', 'c', 'd']) s.fake.create('pods', pod(n));
      await watching(s);
      expect(s.events).toEqual(['add a', 'add b', 'add c', 'add d']);
      s.events.length = 0;
      // the watch drops; while the agent is away:
      s.fake.breakWatches();
      s.fake.delete('pods', 'shop', 'b'); // deleted in the gap: a delete with unknown final state
      s.fake.create('pods', pod('e'));
      s.fake.delete('pods', 'shop', 'e'); // created and deleted in the gap: never seen
      s.fake.modify('pods', 'shop', 'c', (o) => void (o.metadata.labels!.tier = 'gold'));
      s.fake.create('pods', pod('f'));
      s.fake.delete('pods', 'shop', 'd');
      s.fake.create('pods', pod('d')); // same name, new uid: the old one is gone, a new one is here
      s.fake.compact();
      await waitFor('relist', () => s.fake.count({ verb: 'list' }) === 2 && s.events.length >= 5, 10_000, 10);
      await waitFor('watching again', () => s.fake.activeWatches === 1, 10_000, 10);
      expect(s.events.sort()).toEqual(['add d', 'add f', 'delete b (final state unknown)', 'delete d (final state unknown)', 'update c'].sort());
      expect(s.watch.get('shop/c')!.metadata.labels!.tier).toBe('gold');
      expect([...s.watch.values()].map((o) => o.metadata.name).sort()).toEqual(['a', 'c', 'd', 'f']);
      expect(await restarts(s.metrics, 'expired')).toBe(1);
      const relist = s.fake.requests.filter((r) => r.verb === 'list')[1];
      expect(relist.query.get('resourceVersion')).toBeNull(); // a consistent read after 410
      expect(lastWatch(s.fake).query.get('resourceVersion')).toBe(s.fake.resourceVersion);
    });
  }

  it('a watch that answers 410 every time, right after each LIST (issue 11): one warning, relists with backoff, resync() lists at once for a reader missing an object', async () => {
    const s = await setup({}, { backoff: { initialMs: 400, maxMs: 400 } });
    s.fake.failNext(1000, { kind: 'status', status: 410, reason: 'Expired', message: 'too old resource version' }, { verb: 'watch' });
    s.fake.create('pods', pod('a'));
    await waitFor('three LISTs', () => s.fake.count({ verb: 'list' }) >= 3, 10_000, 10);
    expect(s.watch.synced && s.watch.connected).toBe(true);
    expect(s.watch.watching).toBe(false);
    expect(s.logs.filter((l) => l.includes('WARN'))).toHaveLength(1);
    expect(s.logs.find((l) => l.includes('WARN'))).toMatch(/the watch answers 410 Gone right after a LIST/);
    // a pod appears; its reader asks for it: listed at once, not after the 400 ms backoff
    s.fake.create('pods', pod('late'));
    const lists = s.fake.count({ verb: 'list' });
    const asked = Date.now();
    await new Promise((r) => setTimeout(r, 60));
    s.watch.resync(0);
    await waitFor('the late pod listed', () => s.watch.get('shop/late') !== undefined, 5000, 5);
    expect(Date.now() - asked).toBeLessThan(350);
    expect(s.fake.count({ verb: 'list' })).toBe(lists + 1);
    expect(await restarts(s.metrics, 'expired')).toBeGreaterThanOrEqual(3);
    expect(s.logs.filter((l) => l.includes('WARN'))).toHaveLength(1);
  });

  it('restarts a LIST whose continue token expired between pages', async () => {
    const s = await setup({}, {}, false);
    for (let i = 0; i < 1200; i++) s.fake.create('pods', pod(`p-${i}`));
    let expired = false;
    s.fake.onRequest = (r) => {
      if (!expired && r.query.get('continue')) {
        expired = true;
        s.fake.expireContinueTokens();
      }
    };
    s.watch.start();
    await s.watch.whenSynced();
    expect(s.watch.size).toBe(1200);
    const lists = s.fake.requests.filter((r) => r.verb === 'list');
    expect(lists.map((r) => r.status)).toEqual([200, 410, 200, 200, 200]);
    expect(await restarts(s.metrics, 'continue_expired')).toBe(1);
    expect(new Set(s.events).size).toBe(1200);
  });
});

describe('ListWatch: failures', () => {
  it('backs off on 500 (doubling) and on a broken stream, then recovers without relisting', async () => {
    const s = await setup({}, { backoff: { initialMs: 100, maxMs: 2000 }, random: () => 0.5 });
    await watching(s);
    s.fake.failNext(3, { kind: 'status', status: 500, message: 'etcdserver: request timed out' }, { verb: 'watch' });
    s.fake.breakWatches();
    await waitFor('watching again', () => s.fake.activeWatches === 1 && watchRequests(s.fake).length === 5, 10_000, 10);
    const times = watchRequests(s.fake).map((r) => r.at);
    const gaps = times.slice(2).map((t, i) => t - times[i + 1]);
    // after the break 100 ms, then 200, 400, 800 (random fixed at the middle: no jitter)
    expect(gaps[0]).toBeGreaterThanOrEqual(190);
    expect(gaps[1]).toBeGreaterThanOrEqual(390);
    expect(gaps[2]).toBeGreaterThanOrEqual(790);
    expect(gaps[2]).toBeLessThan(1500);
    expect(await restarts(s.metrics, 'server_error')).toBe(3);
    expect(await restarts(s.metrics, 'network')).toBe(1);
    expect(s.fake.count({ verb: 'list' })).toBe(1);
    expect(s.logs.some((l) => l.includes('etcdserver: request timed out'))).toBe(true);
    s.fake.create('pods', pod('after'));
    await waitFor('event after recovery', () => s.watch.get('shop/after'), 5000, 10);
    expect(s.watch.connected).toBe(true);
    expect(s.logs.filter((l) => l.includes('watching again after 4 failed attempt(s)'))).toHaveLength(1);
  });

  it('retries 403 (RBAC) with backoff, and a failing first LIST until it succeeds', async () => {
    const s = await setup({}, {}, false);
    s.fake.create('pods', pod('x'));
    s.fake.failNext(2, { kind: 'status', status: 403, message: 'pods is forbidden: User "system:serviceaccount:obs:agent" cannot list resource "pods"' }, { verb: 'list' });
    s.watch.start();
    expect(s.watch.synced).toBe(false);
    expect(s.watch.get('shop/x')).toBeUndefined(); // nothing blocks: the cache just does not know yet
    await s.watch.whenSynced();
    expect(await restarts(s.metrics, 'forbidden')).toBe(2);
    expect(s.logs.some((l) => l.includes('cannot list resource'))).toBe(true);
    expect(s.watch.get('shop/x')).toBeDefined();
  });

  it('a watch quiet after its headers (no events, no bookmarks) is resumed at the idle timeout as a routine end: counted closed, no warning (issue 10)', async () => {
    const s = await setup({}, { idleTimeoutMs: 300 });
    await watching(s);
    s.fake.failNext(1, { kind: 'hang' }, { verb: 'watch' });
    s.fake.breakWatches();
    await waitFor('hung watch', () => s.fake.requests.some((r) => r.fault === 'hang'), 5000, 10);
    const hungAt = s.fake.requests.find((r) => r.fault === 'hang')!.at;
    await waitFor('reconnected', () => s.fake.activeWatches === 1 && watchRequests(s.fake).length === 3, 5000, 10);
    expect(lastWatch(s.fake).at - hungAt).toBeGreaterThanOrEqual(290);
    expect(await restarts(s.metrics, 'idle_timeout')).toBe(0);
    expect(await restarts(s.metrics, 'closed')).toBeGreaterThanOrEqual(1);
    // (the test's own breakWatches() is a warning; the quiet end is not)
    expect(s.logs.filter((l) => l.includes('WARN') && /idle|no data/.test(l))).toEqual([]);
    expect(s.logs.some((l) => l.includes('watch quiet for 300 ms'))).toBe(true);
    expect(s.fake.count({ verb: 'list' })).toBe(1);
    s.fake.create('pods', pod('after-hang'));
    await waitFor('event', () => s.watch.get('shop/after-hang'), 5000, 10);
  });

  it('a LIST that never answers (not even headers) is ended by the idle timeout', async () => {
    const s = await setup({}, { idleTimeoutMs: 200 }, false);
    s.fake.failNext(1, { kind: 'stall' }, { verb: 'list' });
    s.watch.start();
    await s.watch.whenSynced();
    expect(await restarts(s.metrics, 'idle_timeout')).toBe(1);
  });

  it('a watch cut in the middle of an event resumes from the last resourceVersion; the partial event is not applied', async () => {
    const s = await setup({ chunkBytes: 11 });
    s.fake.create('pods', pod('one'));
    await watching(s);
    const rv = s.watch.resourceVersion;
    s.fake.breakWatches();
    await waitFor('reconnected', () => s.fake.activeWatches === 1 && watchRequests(s.fake).length === 2, 5000, 10);
    expect(lastWatch(s.fake).query.get('resourceVersion')).toBe(rv);
    expect(s.watch.get('shop/cut-her')).toBeUndefined();
    expect(await restarts(s.metrics, 'network')).toBe(1);
    expect(s.fake.count({ verb: 'list' })).toBe(1);
  });

  it('a dropped connection (no response at all) is retried', async () => {
    const s = await setup();
    await watching(s);
    s.fake.failNext(2, { kind: 'drop' }, { verb: 'watch' });
    s.fake.breakWatches();
    await waitFor('reconnected', () => s.fake.activeWatches === 1 && watchRequests(s.fake).length === 4, 5000, 10);
    expect(await restarts(s.metrics, 'network')).toBe(3);
  });

  it('honours Retry-After on 429', async () => {
    const s = await setup();
    await watching(s);
    s.fake.failNext(1, { kind: 'status', status: 429, reason: 'TooManyRequests', message: 'too many requests, please try again later', retryAfterSeconds: 1 }, { verb: 'watch' });
    s.fake.breakWatches();
    await waitFor('reconnected', () => s.fake.activeWatches === 1 && watchRequests(s.fake).length === 3, 5000, 10);
    const [, throttled, next] = watchRequests(s.fake);
    expect(throttled.status).toBe(429);
    expect(next.at - throttled.at).toBeGreaterThanOrEqual(990);
    expect(await restarts(s.metrics, 'throttled')).toBe(1);
  });

  it('retries 504 "Too large resource version" after about a second without relisting', async () => {
    const s = await setup({}, { tooLargeResourceVersionRetryMs: 400, random: () => 0.5 });
    await watching(s);
    s.fake.failNext(1, FakeKubeApiServer.tooLargeResourceVersion(), { verb: 'watch' });
    s.fake.breakWatches();
    await waitFor('reconnected', () => s.fake.activeWatches === 1 && watchRequests(s.fake).length === 3, 5000, 10);
    const [, tooLarge, next] = watchRequests(s.fake);
    expect(tooLarge.status).toBe(504);
    expect(next.at - tooLarge.at).toBeGreaterThanOrEqual(390);
    expect(next.query.get('resourceVersion')).toBe(tooLarge.query.get('resourceVersion'));
    expect(s.fake.count({ verb: 'list' })).toBe(1);
    expect(await restarts(s.metrics, 'too_large_resource_version')).toBe(1);
  });

  it('survives a throwing event handler', async () => {
    const s = await setup();
    s.watch.subscribe({
      onAdd: () => {
        throw new Error('consumer bug');
      },
    });
    await watching(s);
    s.fake.create('pods', pod('p1'));
    s.fake.create('pods', pod('p2'));
    await waitFor('both', () => s.events.length === 2, 5000, 10);
    expect(s.logs.some((l) => l.includes('consumer bug'))).toBe(true);
  });

  it('stop() returns promptly during a hang and during a backoff wait', async () => {
    const s = await setup({}, { idleTimeoutMs: 60_000 });
    await watching(s);
    s.fake.failNext(1, { kind: 'hang' }, { verb: 'watch' });
    s.fake.breakWatches();
    await waitFor('hung', () => s.fake.requests.some((r) => r.fault === 'hang'), 5000, 10);
    let t = Date.now();
    await s.watch.stop();
    expect(Date.now() - t).toBeLessThan(500);
    expect(s.watch.connected).toBe(false);

    const s2 = await setup({}, { backoff: { initialMs: 60_000, maxMs: 60_000 } });
    await watching(s2);
    s2.fake.failNext(1, { kind: 'status', status: 500 }, { verb: 'watch' });
    s2.fake.breakWatches(); // the break itself waits 60 s
    await new Promise((r) => setTimeout(r, 100));
    t = Date.now();
    await s2.watch.stop();
    expect(Date.now() - t).toBeLessThan(500);
  });
});

