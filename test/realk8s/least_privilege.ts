import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OtlpReceiver } from '../../agent/demo/otlp_receiver.ts';
import { agentNodeFlags } from '../../agent/runtime_flags.ts';
import { agentConfigYaml, criLine, criTime, NodeTree, readRecords } from '../helpers/agent_harness.ts';
import { CLI, freePort, NODE, waitFor } from '../helpers/child_agent.ts';
import type { AuditEntry, ControlPlane, Identity } from './control_plane.ts';
import { FakeKubelet } from './fake_kubelet.ts';
import { applyAgentRbac, clusterAgent, converge, deleteLease, eventsQuiet, leader, teardown } from './scenario.ts';
import { uniqueName, type SuiteControlPlane } from './suite.ts';
import { createDeployment, scaleDeployment, waitRollout } from './workloads.ts';

/**
 * Least privilege, measured (issue 10 item 3): a full scenario for each service account of deploy/
 * (the cluster agent: events, the Lease, object lookups, every tracker; the node agent: enrichment
 * with owners of both kinds), then the API server's audit log of what each used, against what
 * `kubectl auth can-i --list` says each may do. Granted and used must be the same set, and no request
 * may have been refused.
 */

/** Granted by every authenticated user's default roles (system:basic-user, system:discovery), not by deploy/. */
const DEFAULT_RESOURCES = new Set(['selfsubjectaccessreviews.authorization.k8s.io', 'selfsubjectrulesreviews.authorization.k8s.io']);

/** `kubectl auth can-i --list` as the service account (impersonated by admin), as `resource.group|verb[@names]`. */
function grantedTo(cp: ControlPlane, id: Identity, namespace: string): Set<string> {
  const ns = id.user.split(':')[2]!;
  const out = cp.kubectlOk(['auth', 'can-i', '--list', '-n', namespace, `--as=${id.user}`, '--as-group=system:serviceaccounts', `--as-group=system:serviceaccounts:${ns}`, '--as-group=system:authenticated']);
  const rules = new Set<string>();
  for (const line of out.split('\n').slice(1)) {
    if (!line.trim() || line.startsWith(' ')) continue; // non-resource URLs
    const [resource, , names, verbs] = line.trim().split(/\s{2,}/);
    if (!resource || DEFAULT_RESOURCES.has(resource)) continue;
    const named = names && names !== '[]' ? `@${names.slice(1, -1).split(' ').sort().join(',')}` : '';
    for (const v of verbs!.slice(1, -1).split(' ')) rules.add(`${qualified(resource)}|${v}${named}`);
  }
  return rules;
}

/** `pods` -> `pods`, `deployments.apps` -> `deployments.apps`: can-i's spelling, also used for the audit. */
function qualified(resource: string, group?: string): string {
  return group ? `${resource}.${group}` : resource;
}

/** What the audit log shows `user` did since `sinceMs`, in can-i's spelling (a name when the grant names one). */
function usedBy(entries: AuditEntry[], user: string, sinceMs: number, granted: Set<string>): { used: Set<string>; refused: string[] } {
  const used = new Set<string>();
  const refused: string[] = [];
  for (const e of entries) {
    if (e.user.username !== user || Date.parse(e.requestReceivedTimestamp) < sinceMs || !e.objectRef?.resource) continue;
    const resource = qualified(e.objectRef.resource + (e.objectRef.subresource ? `/${e.objectRef.subresource}` : ''), e.objectRef.apiGroup);
    const plain = `${resource}|${e.verb}`;
    const named = e.objectRef.name ? `${plain}@${e.objectRef.name}` : undefined;
    const key = named && granted.has(named) ? named : plain;
    if ((e.responseStatus?.code ?? 0) === 403) refused.push(`${key} ${e.requestURI}`);
    else used.add(key);
  }
  return { used, refused };
}

export function leastPrivilegeChecks(plane: SuiteControlPlane): void {
  describe('least privilege of deploy/ RBAC, measured with the audit log', () => {
    it('each service account uses every verb and resource it is granted (audit log of a full scenario), is refused nothing, and kubectl auth can-i --list grants nothing beyond it', async () => {
      const cp = plane.cp;
      applyAgentRbac(cp);
      await deleteLease(cp); // so the cluster agent creates it: `create` is used too
      const since = Date.now() - 1000;
      const root = mkdtempSync(join(tmpdir(), 'kta-realk8s-rbac-'));
      const otlp = await OtlpReceiver.start();
      const ns = uniqueName('rbac');
      await cp.createNamespace(ns);
      const kubelet = new FakeKubelet(cp, uniqueName('node'));
      await kubelet.start();
      const tree = new NodeTree('kta-realk8s-rbac-node-');
      const cluster = clusterAgent(cp, { name: `${ns}-cluster`, root, otlpEndpoint: otlp.url });
      try {
        await cluster.start();
        await leader([cluster]);
        // the cluster agent's reads: pods behind FailedScheduling, claims behind ProvisioningFailed,
        // every tracker's watch, the kube-system namespace for the cluster uid
        await createDeployment(cp, ns, 'web', { replicas: 2, nodeSelector: { 'kubernetes.io/hostname': kubelet.node } });
        await createDeployment(cp, ns, 'stuck', { replicas: 1, nodeSelector: { disk: 'none-such' } });
        await cp.request('POST', '/apis/storage.k8s.io/v1/storageclasses', { apiVersion: 'storage.k8s.io/v1', kind: 'StorageClass', metadata: { name: 'manual' }, provisioner: 'kubernetes.io/no-provisioner', volumeBindingMode: 'Immediate' });
        await cp.must('POST', `/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          metadata: { name: 'data' },
          spec: { storageClassName: 'manual', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
        });
        // the node agent's reads: this node's pods, the owner of a Deployment's pod and of a Job's pod
        await cp.must('POST', `/apis/batch/v1/namespaces/${ns}/jobs`, {
          apiVersion: 'batch/v1',
          kind: 'Job',
          metadata: { name: 'once' },
          spec: { template: { spec: { restartPolicy: 'Never', nodeSelector: { 'kubernetes.io/hostname': kubelet.node }, containers: [{ name: 'app', image: 'registry.example/job:1' }] } } },
        });
        await waitRollout(cp, ns, 'web');
        const pods = await waitFor(
          'the job pod bound',
          async () => {
            const l = await cp.must<{ items: { metadata: { name: string; uid: string }; spec: { nodeName?: string } }[] }>('GET', `/api/v1/namespaces/${ns}/pods`);
            const mine = l.items.filter((p) => p.spec.nodeName === kubelet.node);
            return mine.length === 3 ? mine : undefined;
          },
          60_000,
          250,
        );
        for (const p of pods) tree.container({ namespace: ns, pod: p.metadata.name, uid: p.metadata.uid, container: 'app', content: criLine(`${p.metadata.name} says hello`, { time: criTime(1) }) });
        const port = await freePort();
        const config = join(tree.root, 'agent.yaml');
        // as deploy/base/agent.yaml runs it: container logs enriched, and this node's pod startup spans
        const yaml = agentConfigYaml(tree, { listen: `127.0.0.1:${port}`, kubernetes: { mode: 'kubeconfig', kubeconfig: cp.nodeAgent.kubeconfig } })
          .replace('node_name: test-node', `node_name: ${kubelet.node}`)
          .replace('outputs:\n', '  pods:\n    type: kubernetes_events\n    watch_events: false\n    signals: { trackers: [pod_startup], spans: true }\noutputs:\n');
        writeFileSync(config, yaml);
        const node = spawn(NODE, [...agentNodeFlags(), CLI, 'run', '--config', config], {
          stdio: 'ignore',
          env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_BSP_SCHEDULE_DELAY: '200' },
        });
        try {
          await waitFor('the node agent enriched its pods', () => {
            const r = readRecords(tree.outputPath);
            return r.length === 3 && r.every((x) => x.resource['k8s.deployment.name'] === 'web' || x.resource['k8s.job.name'] === 'once');
          }, 60_000, 200);
          // a pod that starts while it runs: a pod.startup span, whose trace id needs the kube-system uid
          await scaleDeployment(cp, ns, 'web', 3);
          await waitFor('a pod startup span', () => otlp.spans.some((sp) => sp.name === 'pod.startup' && sp.attributes['k8s.namespace.name'] === ns), 60_000, 200);
        } finally {
          const exited = new Promise((r) => node.once('exit', r));
          node.kill('SIGTERM');
          await exited;
        }
        await eventsQuiet(cp, ns);
        const c = await converge(cp, ns, [], [cluster]);
        expect(c.counted).toEqual(c.truth);
        expect(c.truth).toHaveProperty('FailedScheduling');
        expect(c.truth).toHaveProperty('ProvisioningFailed');
      } finally {
        await cluster.stop();
        await otlp.close();
        await teardown(cp, [ns], [kubelet]);
        tree.remove();
        rmSync(root, { recursive: true, force: true });
      }

      const audit = cp.auditEntries();
      for (const id of [cp.clusterAgent, cp.nodeAgent]) {
        const granted = grantedTo(cp, id, 'telemetry-agent');
        const { used, refused } = usedBy(audit, id.user, since, granted);
        expect(refused, `${id.user}: requests refused (403)`).toEqual([]);
        expect([...used].sort(), `${id.user}: used (audit log) vs granted (kubectl auth can-i --list)`).toEqual([...granted].sort());
      }
      // the node agent of deploy/base: one LIST and one WATCH of its node's pods, shared by enrichment
      // and the pod startup tracker
      const podRequests = (verb: string) =>
        new Set(
          audit
            .filter((e) => e.user.username === cp.nodeAgent.user && Date.parse(e.requestReceivedTimestamp) >= since && e.objectRef?.resource === 'pods' && !e.objectRef.subresource && e.verb === verb)
            .map((e) => e.auditID),
        ).size;
      expect({ list: podRequests('list'), watch: podRequests('watch') }, `${cp.nodeAgent.user}: requests for pods`).toEqual({ list: 1, watch: 1 });
    }, 600_000);
  });
}
