import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { waitFor } from '../helpers/child_agent.ts';
import { FakeKubelet } from './fake_kubelet.ts';
import { teardown } from './scenario.ts';
import { createDeployment } from './workloads.ts';
import { uniqueName, type SuiteControlPlane } from './suite.ts';

/**
 * The deploy manifests against a real API server (admission, defaulting, validation), and the
 * harness itself: the fake kubelet makes a Deployment Available through the real controllers.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every leaf path of `want` that `got` lacks or holds with another value. */
function dropped(want: Json, got: Json, path = ''): string[] {
  if (want === null || typeof want !== 'object') return JSON.stringify(want) === JSON.stringify(got) || String(want) === String(got) ? [] : [`${path}: ${JSON.stringify(want)} -> ${JSON.stringify(got)}`];
  if (got === null || typeof got !== 'object') return [`${path}: missing`];
  if (Array.isArray(want)) return want.flatMap((w, i) => dropped(w, (got as Json[])[i] ?? null, `${path}[${i}]`));
  return Object.entries(want).flatMap(([k, w]) => dropped(w, (got as Record<string, Json>)[k] ?? null, `${path}.${k}`));
}

export function deployChecks(plane: SuiteControlPlane): void {
  describe('deploy/ against a real API server (v1.20.2)', () => {
    for (const overlay of ['deploy', 'deploy/overlays/cluster-events']) {
      it(`${overlay}: kubectl apply --dry-run=server accepts every object with no field dropped`, () => {
        const cp = plane.cp;
        const built = cp.kubectlOk(['kustomize', join(ROOT, overlay)]);
        const objects = parseAllDocuments(built).map((d) => d.toJSON() as { kind: string; metadata: { name: string } } & Record<string, Json>);
        // the namespace must exist for a server-side dry run of what goes into it
        cp.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify(objects.find((o) => o.kind === 'Namespace')) });
        const out = cp.kubectlOk(['apply', '--dry-run=server', '-o', 'json', '-f', '-'], { input: built });
        const parsed = JSON.parse(out) as { kind: string; items?: Json[] } & Record<string, Json>;
        const answered = (parsed.kind === 'List' ? parsed.items! : [parsed]) as ({ kind: string; metadata: { name: string } } & Record<string, Json>)[];
        expect(answered.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort());
        for (const o of objects) {
          const a = answered.find((x) => x.kind === o.kind && x.metadata.name === o.metadata.name)!;
          expect(dropped(o as Json, a as Json), `${o.kind}/${o.metadata.name}`).toEqual([]);
        }
      });
    }

    it('the harness: a Deployment becomes Available on a fake node through the real controllers and scheduler', async () => {
      const cp = plane.cp;
      const ns = uniqueName('smoke');
      await cp.createNamespace(ns);
      const kubelet = new FakeKubelet(cp, uniqueName('node'));
      await kubelet.start();
      try {
        await createDeployment(cp, ns, 'web', { replicas: 2, nodeSelector: { 'kubernetes.io/hostname': kubelet.node } });
        const available = await waitFor(
          'Deployment Available',
          async () => {
            const d = await cp.must<{ status?: { availableReplicas?: number } }>('GET', `/apis/apps/v1/namespaces/${ns}/deployments/web`);
            return (d.status?.availableReplicas ?? 0) === 2 ? d : undefined;
          },
          60_000,
          250,
        );
        expect(available.status?.availableReplicas).toBe(2);
        const events = await cp.must<{ items: { reason: string; source?: { component?: string } }[] }>('GET', `/api/v1/namespaces/${ns}/events`);
        expect(events.items.map((e) => e.reason)).toEqual(expect.arrayContaining(['ScalingReplicaSet', 'SuccessfulCreate']));
      } finally {
        await teardown(cp, [ns], [kubelet]);
      }
    }, 180_000);
  });
}
