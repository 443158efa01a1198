import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/child_agent.ts';
import { sumMetric, type RealAgent } from './agents.ts';
import { ApiProxy } from './api_proxy.ts';
import type { ControlPlane } from './control_plane.ts';
import { AGENT_NAMESPACE, applyAgentRbac, clusterAgent, converge, deleteLease, eventsQuiet, LEASE, leader } from './scenario.ts';
import { uniqueName, type SuiteControlPlane } from './suite.ts';

/**
 * Issue 10's bad input, each against the real API server with the cluster agent: the Lease deleted
 * under its holder, the agent's RBAC removed while it runs, the API server restarted mid-watch, etcd
 * compacted during a burst of Events (410), 2,000 Events in about a second. In each, k8s_events_total
 * of the namespace must end equal to the API's own counts, and the agent must not exit.
 */

/** `n` core/v1 Events about one pod, written as fast as `parallel` connections allow; resolves with the time taken. */
async function burst(cp: ControlPlane, ns: string, n: number, parallel = 50): Promise<number> {
  const started = Date.now();
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  let next = 0;
  const one = async () => {
    while (next < n) {
      const i = next++;
      const r = await cp.request('POST', `/api/v1/namespaces/${ns}/events`, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `burst.${Date.now().toString(16)}${i.toString(16).padStart(5, '0')}` },
        involvedObject: { kind: 'Pod', namespace: ns, name: `p-${i % 20}`, uid: `uid-${i % 20}`, apiVersion: 'v1' },
        reason: `Burst${i % 4}`,
        message: `event ${i}`,
        type: 'Normal',
        count: 1,
        firstTimestamp: now,
        lastTimestamp: now,
        source: { component: 'burst-writer' },
      });
      if (r.status !== 201) throw new Error(`creating an Event: HTTP ${r.status} ${r.text.slice(0, 200)}`);
    }
  };
  await Promise.all(Array.from({ length: parallel }, one));
  return Date.now() - started;
}

async function readyz(a: RealAgent): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${a.port}/readyz`);
  return { status: res.status, body: await res.text() };
}

export function badInputScenarios(plane: SuiteControlPlane): void {
  describe('bad input against the real API server', () => {
    let root: string;
    const agents: RealAgent[] = [];
    let ns: string;
    beforeAll(() => {
      root = mkdtempSync(join(tmpdir(), 'kta-realk8s-bad-'));
      applyAgentRbac(plane.cp);
    });
    afterEach(async () => {
      for (const a of agents.splice(0)) await a.stop();
      applyAgentRbac(plane.cp);
      if (ns) await plane.cp.request('DELETE', `/api/v1/namespaces/${ns}`);
    });
    afterAll(() => rmSync(root, { recursive: true, force: true }));

    async function start(n = 1): Promise<RealAgent[]> {
      const cp = plane.cp;
      ns = uniqueName('bad');
      await cp.createNamespace(ns);
      await deleteLease(cp);
      const started: RealAgent[] = [];
      for (let i = 0; i < n; i++) {
        const a = clusterAgent(cp, { name: `${ns}-${String.fromCharCode(97 + i)}`, root });
        agents.push(a);
        started.push(a);
        await a.start();
      }
      return started;
    }

    it('the Lease deleted under its holder: the holder recreates it with its handover, the standby never leads, nothing counted twice', async () => {
      const cp = plane.cp;
      const [a, b] = await start(2);
      const first = await leader([a!, b!]);
      const other = first === a ? b! : a!;
      await burst(cp, ns, 50, 10);
      await eventsQuiet(cp, ns, 1500);
      expect((await converge(cp, ns, [], [first])).counted).toEqual((await converge(cp, ns, [], [first])).truth);
      const leaseUrl = `/apis/coordination.k8s.io/v1/namespaces/${AGENT_NAMESPACE}/leases/${LEASE}`;
      const before = await cp.must<{ metadata: { uid: string } }>('GET', leaseUrl);
      await cp.must('DELETE', leaseUrl);
      const recreated = await waitFor(
        'the Lease again',
        async () => {
          const r = await cp.request<{ metadata: { uid: string; annotations?: Record<string, string> }; spec: { holderIdentity?: string } }>('GET', leaseUrl);
          return r.status === 200 && r.body.metadata.uid !== before.metadata.uid ? r.body : undefined;
        },
        20_000,
        100,
      );
      expect(recreated.spec.holderIdentity).toBe(first.o.name);
      expect(recreated.metadata.annotations?.['telemetry-agent.io/handover']).toMatch(/"events":\{"highWater"/);
      await burst(cp, ns, 50, 10);
      await eventsQuiet(cp, ns, 1500);
      // one leader all along: the standby saw the Lease gone for less than a lease duration
      for (const x of [first, other]) expect(sumMetric(await x.scrape(), 'telemetry_agent_leader')).toBe(x === first ? 1 : 0);
      const end = await converge(cp, ns, [], [first, other]);
      expect(end.counted).toEqual(end.truth);
    }, 240_000);

    it('the agent\'s RBAC removed while it runs: 403s, a clear error, readiness drops with the reason, no exit; back when RBAC returns, counting what happened meanwhile', async () => {
      const cp = plane.cp;
      const [a] = await start(1);
      await leader([a!]);
      await burst(cp, ns, 20, 5);
      await eventsQuiet(cp, ns, 1500);
      expect((await converge(cp, ns, [], [a!])).counted).toEqual((await converge(cp, ns, [], [a!])).truth);
      expect((await readyz(a!)).status).toBe(200);
      cp.kubectlOk(['delete', 'clusterrolebinding', 'telemetry-agent-cluster']);
      cp.kubectlOk(['-n', AGENT_NAMESPACE, 'delete', 'rolebinding', 'telemetry-agent-cluster-lease']);
      const notReady = await waitFor('readiness drops', async () => {
        const r = await readyz(a!);
        return r.status !== 200 ? r : undefined;
      }, 60_000, 250);
      expect(notReady.body).toMatch(/403|forbidden/i);
      await burst(cp, ns, 20, 5); // while the agent may read nothing
      await new Promise((r) => setTimeout(r, 3000));
      expect(a!.running).toBe(true);
      expect(a!.stderr).toMatch(/WARN .*(403|forbidden)/i);
      applyAgentRbac(cp);
      await waitFor('ready again', async () => (await readyz(a!)).status === 200, 60_000, 250);
      await eventsQuiet(cp, ns, 1500);
      const end = await converge(cp, ns, [], [a!]);
      expect(end.counted).toEqual(end.truth);
    }, 240_000);

    it('the API server restarted mid-watch: the agent reconnects and counts what was written around the restart once', async (ctx) => {
      if (!plane.owned) ctx.skip('needs its own control plane (REALK8S_ATTACH shares one)');
      const cp = plane.cp;
      const [a] = await start(1);
      await leader([a!]);
      await burst(cp, ns, 30, 5);
      await cp.restartApiserver(2000);
      await burst(cp, ns, 30, 5);
      await eventsQuiet(cp, ns, 1500);
      const end = await converge(cp, ns, [], [a!], 60_000);
      expect(end.counted).toEqual(end.truth);
      expect(a!.running).toBe(true);
    }, 240_000);

    it("etcd compacted during a burst of Events while the agent's watch is cut off: a 410, a relist, every occurrence counted once", async () => {
      const cp = plane.cp;
      ns = uniqueName('bad');
      await cp.createNamespace(ns);
      await deleteLease(cp);
      const proxy = new ApiProxy(cp);
      const url = await proxy.start();
      const kubeconfig = join(root, `${ns}.kubeconfig`);
      writeFileSync(
        kubeconfig,
        `apiVersion: v1\nkind: Config\nclusters: [{name: p, cluster: {server: '${url}', insecure-skip-tls-verify: true}}]\n` +
          `users: [{name: u, user: {tokenFile: '${cp.clusterAgent.tokenFile}'}}]\ncontexts: [{name: c, context: {cluster: p, user: u}}]\ncurrent-context: c\n`,
      );
      const a = clusterAgent(cp, { name: `${ns}-a`, root, kubeconfig });
      agents.push(a);
      try {
        await a.start();
        await leader([a]);
        await burst(cp, ns, 20, 5);
        await eventsQuiet(cp, ns, 1000);
        // the agent's watch is cut and held back while 1,500 Events are written and etcd compacts them
        // away: it resumes from a resourceVersion that is gone
        proxy.cutWatches();
        await burst(cp, ns, 1500, 50);
        await cp.compactEtcd();
        proxy.releaseWatches();
        await eventsQuiet(cp, ns, 1500);
        const end = await converge(cp, ns, [], [a], 60_000);
        expect(end.counted).toEqual(end.truth);
        expect(sumMetric(await a.scrape(), 'telemetry_agent_kube_watch_restarts_total', { resource: 'events', reason: 'expired' })).toBeGreaterThanOrEqual(1);
      } finally {
        await a.stop();
        await proxy.close();
      }
    }, 240_000);

    it('2,000 Events created in about a second: all counted, none twice, no drops', async () => {
      const cp = plane.cp;
      const [a] = await start(1);
      await leader([a!]);
      const took = await burst(cp, ns, 2000, 100);
      console.log(`2,000 Events written in ${took} ms`);
      await eventsQuiet(cp, ns, 1500);
      const end = await converge(cp, ns, [], [a!], 60_000);
      expect(end.counted).toEqual(end.truth);
      expect(Object.values(end.truth).reduce((x, y) => x + y, 0)).toBe(2000);
      expect(sumMetric(await a!.scrape(), 'telemetry_agent_dropped_records_total')).toBe(0);
    }, 240_000);
  });
}
