import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RealAgent } from './agents.ts';
import { FakeKubelet } from './fake_kubelet.ts';
import { applyAgentRbac, clusterAgent, converge, deleteLease, eventsQuiet, leader, teardown } from './scenario.ts';
import { uniqueName, type SuiteControlPlane } from './suite.ts';
import { createDeployment, patchTemplate, waitRollout } from './workloads.ts';

/**
 * Event counting against the real control plane: the ground truth is the API's own Events (count,
 * series.count) in the scenario's namespace; what the agents counted is k8s_events_total of that
 * namespace summed over incarnations (the last scrape of each one that ended, and the live one).
 */

export function countingScenarios(plane: SuiteControlPlane): void {
  describe('k8s_events_total against the real control plane', () => {
    let root: string;
    const agents: RealAgent[] = [];
    const kubelets: FakeKubelet[] = [];
    const namespaces: string[] = [];
    beforeAll(() => {
      root = mkdtempSync(join(tmpdir(), 'kta-realk8s-events-'));
      applyAgentRbac(plane.cp);
    });
    afterEach(async () => {
      for (const a of agents.splice(0)) await a.stop();
      await teardown(plane.cp, namespaces.splice(0), kubelets.splice(0));
    });
    afterAll(() => rmSync(root, { recursive: true, force: true }));

    async function kubelet(): Promise<FakeKubelet> {
      const k = new FakeKubelet(plane.cp, uniqueName('node'));
      await k.start();
      kubelets.push(k);
      return k;
    }

    it('rollout with the agent killed (SIGKILL) mid-rollout: the Events written while it was down are counted after the restart, none twice', async () => {
      const cp = plane.cp;
      const ns = uniqueName('rollout-kill');
      await cp.createNamespace(ns);
      namespaces.push(ns);
      await deleteLease(cp);
      const node = await kubelet();
      const a = clusterAgent(cp, { name: uniqueName('agent'), root });
      agents.push(a);
      await a.start();
      await leader([a]);
      await createDeployment(cp, ns, 'web', { replicas: 3, nodeSelector: { 'kubernetes.io/hostname': node.node } });
      await waitRollout(cp, ns, 'web');
      await eventsQuiet(cp, ns);
      const first = await converge(cp, ns, [], [a]);
      expect(first.counted).toEqual(first.truth);

      // a rollout that stalls on its first new pod (the node starts nothing): the agent is killed there
      node.holdPods();
      await patchTemplate(cp, ns, 'web', { image: 'registry.example/app:2' });
      await eventsQuiet(cp, ns);
      const mid = await converge(cp, ns, [], [a]);
      expect(mid.counted).toEqual(mid.truth);
      const lastSeen = await a.scrape();
      await a.kill9();

      // while nobody watches, the rollout finishes: ScalingReplicaSet, SuccessfulCreate/Delete, Scheduled
      node.releasePods();
      await waitRollout(cp, ns, 'web');
      const truthWhileDown = await eventsQuiet(cp, ns);
      expect([...truthWhileDown.values()].reduce((x, y) => x + y, 0)).toBeGreaterThan(Object.values(mid.truth).reduce((x, y) => x + y, 0) + 5);

      await a.start(); // the same data_dir: a restart from its checkpoint
      const after = await converge(cp, ns, [lastSeen], [a]);
      expect(after.counted).toEqual(after.truth);
    }, 240_000);
  });
}
