import { waitFor } from '../helpers/child_agent.ts';
import type { ControlPlane } from './control_plane.ts';

/** Workloads the scenarios drive through the real controllers (all through the API, as kubectl would). */

export interface DeploymentStatus {
  metadata: { uid: string; generation?: number; annotations?: Record<string, string> };
  spec: { replicas?: number };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    availableReplicas?: number;
    conditions?: { type: string; status: string; reason?: string; lastUpdateTime?: string; lastTransitionTime?: string }[];
  };
}

export async function createDeployment(
  cp: ControlPlane,
  ns: string,
  name: string,
  o: { replicas: number; node?: string; image?: string; progressDeadlineSeconds?: number; nodeSelector?: Record<string, string> },
): Promise<DeploymentStatus> {
  return cp.must('POST', `/apis/apps/v1/namespaces/${ns}/deployments`, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: o.replicas,
      progressDeadlineSeconds: o.progressDeadlineSeconds ?? 600,
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          ...(o.nodeSelector ? { nodeSelector: o.nodeSelector } : {}),
          terminationGracePeriodSeconds: 0,
          containers: [{ name: 'app', image: o.image ?? 'registry.example/app:1' }],
        },
      },
    },
  });
}

/** A new pod template (a rollout): image, or a node selector. */
export async function patchTemplate(cp: ControlPlane, ns: string, name: string, spec: { image?: string; nodeSelector?: Record<string, string> | null }): Promise<void> {
  const podSpec: Record<string, unknown> = {};
  if (spec.image) podSpec.containers = [{ name: 'app', image: spec.image }];
  if (spec.nodeSelector !== undefined) podSpec.nodeSelector = spec.nodeSelector;
  await cp.must('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`, { spec: { template: { spec: podSpec } } }, 'application/strategic-merge-patch+json');
}

export async function scaleDeployment(cp: ControlPlane, ns: string, name: string, replicas: number): Promise<void> {
  await cp.must('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`, { spec: { replicas } }, 'application/merge-patch+json');
}

export function getDeployment(cp: ControlPlane, ns: string, name: string): Promise<DeploymentStatus> {
  return cp.must('GET', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`);
}

/** kubectl rollout status's rule: the latest spec observed, every replica updated and available. */
export function rolloutComplete(d: DeploymentStatus): boolean {
  const want = d.spec.replicas ?? 1;
  const s = d.status ?? {};
  return (
    (s.observedGeneration ?? 0) >= (d.metadata.generation ?? 0) &&
    (s.updatedReplicas ?? 0) >= want &&
    (s.replicas ?? 0) === (s.updatedReplicas ?? 0) &&
    (s.availableReplicas ?? 0) >= want &&
    s.conditions?.find((c) => c.type === 'Progressing')?.reason === 'NewReplicaSetAvailable'
  );
}

export async function waitRollout(cp: ControlPlane, ns: string, name: string, timeoutMs = 90_000): Promise<DeploymentStatus> {
  return waitFor(`deployment ${ns}/${name} rolled out`, async () => {
    const d = await getDeployment(cp, ns, name);
    return rolloutComplete(d) ? d : undefined;
  }, timeoutMs, 250);
}

/** Waits until the deployment's Progressing condition has `reason`. */
export async function waitProgressing(cp: ControlPlane, ns: string, name: string, reason: string, timeoutMs = 90_000): Promise<DeploymentStatus> {
  return waitFor(`deployment ${ns}/${name} Progressing=${reason}`, async () => {
    const d = await getDeployment(cp, ns, name);
    return d.status?.conditions?.find((c) => c.type === 'Progressing')?.reason === reason ? d : undefined;
  }, timeoutMs, 250);
}

/** `kubectl rollout undo`: the template of the previous revision. */
export function rollback(cp: ControlPlane, ns: string, name: string): void {
  cp.kubectlOk(['-n', ns, 'rollout', 'undo', `deployment/${name}`]);
}
