import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LeaderElector } from '../agent/cluster/leader_election.ts';
import { resolveConnection, type KubeConnection } from '../agent/kube/connection.ts';
import { createLogger } from '../agent/log.ts';
import { FakeKubeApiServer, makeEvent, writeKubeconfig } from '../agent/demo/kube_api_server.ts';
import { ChildAgent, freePort, waitFor } from './helpers/child_agent.ts';

const LEASE = { leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 200 };

let api: FakeKubeApiServer;
let dir: string;
let conn: KubeConnection;
const electors: LeaderElector[] = [];

beforeEach(async () => {
  api = new FakeKubeApiServer({ managedFields: false });
  const url = await api.start();
  dir = mkdtempSync(join(tmpdir(), 'kta-leader-'));
  conn = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: writeKubeconfig(dir, { server: url, insecure: true }), log: createLogger('error') }))!;
});
afterEach(async () => {
  await Promise.all(electors.splice(0).map((e) => e.stop()));
  conn.close();
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An elector that records when it led: [start, end) intervals by the test's clock. */
function elector(identity: string) {
  const intervals: { from: number; to?: number }[] = [];
  const e = new LeaderElector({ connection: conn, namespace: 'kube-system', name: 'telemetry-agent-cluster', identity, log: createLogger('error'), ...LEASE });
  e.onChange((leading) => {
    if (leading) intervals.push({ from: Date.now() });
    else intervals.at(-1)!.to = Date.now();
  });
  electors.push(e);
  return { e, intervals };
}

const holder = () => (api.get('leases', 'kube-system', 'telemetry-agent-cluster')?.spec as { holderIdentity?: string } | undefined)?.holderIdentity;

function disjoint(a: { from: number; to?: number }[], b: { from: number; to?: number }[]): boolean {
  return a.every((x) => b.every((y) => (x.to ?? Infinity) <= y.from || (y.to ?? Infinity) <= x.from));
}

describe('leader election with a coordination.k8s.io/v1 Lease', () => {
  it('exactly one of two candidates leads, and the Lease names it', async () => {
    const a = elector('agent-a');
    const b = elector('agent-b');
    a.e.start();
    b.e.start();
    const leader = await waitFor('a leader', () => (a.e.isLeader ? a : b.e.isLeader ? b : undefined), 5000, 20);
    expect(a.e.isLeader && b.e.isLeader).toBe(false);
    expect(holder()).toBe(leader.e.identity);
    // a few renewals later it still leads alone
    const puts = api.count({ verb: 'update', resource: 'leases', status: 200 });
    await waitFor('renewals', () => api.count({ verb: 'update', resource: 'leases', status: 200 }) >= puts + 3, 5000, 20);
    expect([a.e.isLeader, b.e.isLeader].filter(Boolean)).toHaveLength(1);
    expect(disjoint(a.intervals, b.intervals)).toBe(true);
  });

  it('a clean stop releases the Lease: the other takes over at its next retry, well within one lease duration', async () => {
    const a = elector('agent-a');
    a.e.start();
    await waitFor('a leads', () => a.e.isLeader, 5000, 20);
    const b = elector('agent-b');
    b.e.start();
    await waitFor('b competes', () => api.requests.filter((r) => r.path.endsWith('/telemetry-agent-cluster')).length > 6, 5000, 20);
    const stoppedAt = Date.now();
    await a.e.stop();
    await waitFor('b leads', () => b.e.isLeader, 5000, 20);
    expect(Date.now() - stoppedAt).toBeLessThan(LEASE.leaseDurationMs);
    expect(holder()).toBe('agent-b');
    expect(disjoint(a.intervals, b.intervals)).toBe(true);
  });

  it('two agents believing they lead: the Lease is the truth, the one it does not name steps down at its next renewal', async () => {
    const a = elector('agent-a');
    a.e.start();
    await waitFor('a leads', () => a.e.isLeader, 5000, 20);
    // another writer took the Lease (a partitioned agent that came back, a second Deployment)
    api.modify('leases', 'kube-system', 'telemetry-agent-cluster', (l) => {
      (l.spec as Record<string, unknown>).holderIdentity = 'intruder';
      (l.spec as Record<string, unknown>).renewTime = new Date().toISOString();
    });
    await waitFor('a steps down', () => !a.e.isLeader, 2000, 10);
    expect(holder()).toBe('intruder');
    // and does not take it back while the intruder's record is fresh by a's own clock
    await new Promise((r) => setTimeout(r, LEASE.leaseDurationMs / 2));
    expect(a.e.isLeader).toBe(false);
  });

  it('a leader that cannot renew stops leading before the Lease expires, and only then may another lead', async () => {
    const a = elector('agent-a');
    const b = elector('agent-b');
    a.e.start();
    await waitFor('a leads', () => a.e.isLeader, 5000, 20);
    b.e.start();
    await waitFor('b has seen the lease', () => api.requests.filter((r) => r.verb === 'get').length > 4, 5000, 20);
    const lastRenew = Date.parse((api.get('leases', 'kube-system', 'telemetry-agent-cluster')!.spec as { renewTime: string }).renewTime);
    // a's writes fail from now on (b's would too, but b only reads until the Lease expires)
    api.failNext(1_000_000, { kind: 'status', status: 500 }, { verb: 'update', resource: 'leases' });
    await waitFor('a steps down', () => !a.e.isLeader, 5000, 10);
    const downAt = a.intervals[0]!.to!;
    expect(downAt - lastRenew).toBeLessThan(LEASE.leaseDurationMs);
    api.clearFaults();
    await waitFor('someone leads again', () => a.e.isLeader || b.e.isLeader, 5000, 10);
    expect(disjoint(a.intervals, b.intervals)).toBe(true);
    const next = a.e.isLeader ? a.intervals[1]! : b.intervals[0]!;
    expect(next.from).toBeGreaterThanOrEqual(downAt);
  });

  it('concurrent writes from a stale read get 409 Conflict and do not win', async () => {
    const a = elector('agent-a');
    a.e.start();
    await waitFor('a leads', () => a.e.isLeader, 5000, 20);
    const stale = api.get('leases', 'kube-system', 'telemetry-agent-cluster')!;
    await waitFor('a renewed since', () => api.get('leases', 'kube-system', 'telemetry-agent-cluster')!.metadata.resourceVersion !== stale.metadata.resourceVersion, 5000, 20);
    const res = await conn.request('/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/telemetry-agent-cluster', {
      method: 'PUT',
      body: { ...stale, spec: { ...(stale.spec as object), holderIdentity: 'agent-b' } },
    });
    res.resume();
    expect(res.statusCode).toBe(409);
    expect(holder()).toBe('agent-a');
  });
});

describe('two agent processes against one API', () => {
  it('exactly one emits cluster signals; SIGKILL it and the other takes over and counts what happened meanwhile', async () => {
    const ports = [await freePort(), await freePort()];
    const kubeconfig = writeKubeconfig(dir, { server: api.url, insecure: true }, 'agents.kubeconfig');
    const agents = ['agent-a', 'agent-b'].map((id, i) => {
      const cfg = join(dir, `${id}.yaml`);
      writeFileSync(
        cfg,
        [
          `node_name: ${id}`,
          `data_dir: ${join(dir, id)}`,
          `server: { listen: 127.0.0.1:${ports[i]} }`,
          `kubernetes: { mode: kubeconfig, kubeconfig: ${kubeconfig} }`,
          'sources:',
          '  cluster:',
          '    type: kubernetes_events',
          `    identity: ${id}`,
          '    lease_duration: 3s',
          '    renew_deadline: 2s',
          '    retry_period: 500ms',
        ].join('\n'),
      );
      const c = new ChildAgent(cfg);
      c.start();
      return c;
    });
    try {
      await Promise.all(agents.map((c, i) => c.ready(ports[i]!)));
      const scrape = async (i: number) => (await fetch(`http://127.0.0.1:${ports[i]}/metrics`)).text();
      const value = (text: string, series: string) => Number(text.split('\n').find((l) => l.startsWith(`${series} `))?.split(' ')[1] ?? 'NaN');
      const leaderIndex = await waitFor(
        'one leader',
        async () => {
          const v = [value(await scrape(0), 'telemetry_agent_leader'), value(await scrape(1), 'telemetry_agent_leader')];
          return v[0]! + v[1]! === 1 ? v.indexOf(1) : undefined;
        },
        15_000,
      );
      const follower = 1 - leaderIndex;
      await waitFor('the leader watches events', () => api.requests.some((r) => r.verb === 'watch' && r.resource === 'events' && r.status === 200), 10_000);
      const regarding = { kind: 'Pod', name: 'web-1', namespace: 'shop', uid: 'u1' };
      api.create('events', makeEvent({ regarding, reason: 'BackOff', type: 'Warning', message: 'Back-off restarting failed container', component: 'kubelet', host: 'n1', count: 3 }));
      const backOff = 'k8s_events_total{namespace="shop",kind="Pod",reason="BackOff",type="Warning",component="kubelet"}';
      await waitFor('the leader counted', async () => value(await scrape(leaderIndex), backOff) === 3, 10_000);
      expect(await scrape(follower)).not.toContain('k8s_events_total{');
      // let a renewal carry the high-water mark, then kill the leader without a chance to release
      await new Promise((r) => setTimeout(r, 1200));
      const killedAt = Date.now();
      await agents[leaderIndex]!.kill('SIGKILL');
      api.create('events', makeEvent({ regarding, reason: 'Killing', message: 'Stopping container app', component: 'kubelet', host: 'n1', count: 2 }));
      await waitFor('the follower leads', async () => value(await scrape(follower), 'telemetry_agent_leader') === 1, 10_000, 50);
      const takeoverMs = Date.now() - killedAt;
      // one lease duration from the last renewal, plus up to two retry periods of observation, plus
      // a second of slack for a loaded machine (3 processes on 2 cores)
      expect(takeoverMs).toBeLessThan(3000 + 2 * 500 + 1000);
      const killing = 'k8s_events_total{namespace="shop",kind="Pod",reason="Killing",type="Normal",component="kubelet"}';
      await waitFor('the gap counted by the new leader', async () => value(await scrape(follower), killing) === 2, 10_000);
      // history the old leader counted is not counted again
      expect(value(await scrape(follower), backOff)).toBeNaN();
    } finally {
      for (const c of agents) if (c.proc?.exitCode === null && c.proc.signalCode === null) await c.kill('SIGTERM');
    }
  }, 60_000);
});
