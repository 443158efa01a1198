import { randomUUID } from 'node:crypto';
import type { EventOccurrence, ObjectRef } from '../cluster/observation.ts';
import { makePod, type FakeObject } from './kube_api_server.ts';

/**
 * Realistic objects at each step of the sequences the cluster trackers follow (rollouts, pod
 * startups, provisioning, attach, node failure), shaped as the controllers write them, with times
 * given explicitly (whole seconds, as metav1.Time) so a replay asserts exact durations.
 */

export const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

export interface PodTimes {
  created: number;
  scheduled?: number;
  readyToStart?: number;
  initFinished?: number[];
  started?: number;
  ready?: number;
  waiting?: { reason: string; message: string };
  restartCount?: number;
  lastTerminated?: string;
  disruption?: { reason: string; at: number };
}

/** A pod of a Deployment's ReplicaSet on `nodeName`, its status at the step `t` describes. */
export function startupPod(p: { name: string; namespace: string; uid: string; nodeName: string; rs?: { name: string; uid: string }; init?: string[]; t: PodTimes }): FakeObject {
  const pod = makePod({
    name: p.name,
    namespace: p.namespace,
    uid: p.uid,
    nodeName: p.nodeName,
    owner: p.rs ? { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: p.rs.name, uid: p.rs.uid } : undefined,
    labels: { app: p.name.replace(/-[^-]+-[^-]+$/, ''), 'pod-template-hash': 'abc123' },
  });
  pod.metadata.creationTimestamp = iso(p.t.created);
  const spec = pod.spec as { initContainers?: unknown[] };
  if (p.init?.length) spec.initContainers = p.init.map((name) => ({ name, image: `registry.example.com/${p.namespace}/${name}:1.0` }));
  const cond = (type: string, at: number | undefined) => ({ type, status: at === undefined ? 'False' : 'True', lastTransitionTime: iso(at ?? p.t.created) });
  const t = p.t;
  const ready = t.ready;
  const conditions = [
    cond('PodReadyToStartContainers', t.readyToStart),
    cond('Initialized', t.initFinished?.length ? t.initFinished.at(-1) : t.readyToStart),
    cond('Ready', ready),
    cond('ContainersReady', ready),
    cond('PodScheduled', t.scheduled),
  ];
  if (t.disruption) conditions.push({ type: 'DisruptionTarget', status: 'True', lastTransitionTime: iso(t.disruption.at), ...{ reason: t.disruption.reason } } as never);
  const status = pod.status as Record<string, unknown> & { containerStatuses: Record<string, unknown>[] };
  status.phase = t.started !== undefined ? 'Running' : 'Pending';
  status.startTime = t.scheduled !== undefined ? iso(t.scheduled) : undefined;
  status.conditions = conditions;
  if (p.init?.length) {
    status.initContainerStatuses = p.init.map((name, i) => ({
      name,
      ready: t.initFinished?.[i] !== undefined,
      restartCount: 0,
      state:
        t.initFinished?.[i] !== undefined
          ? { terminated: { exitCode: 0, reason: 'Completed', startedAt: iso((t.initFinished[i - 1] ?? t.readyToStart)!), finishedAt: iso(t.initFinished[i]!) } }
          : { waiting: { reason: 'PodInitializing' } },
    }));
  }
  for (const cs of status.containerStatuses) {
    cs.ready = ready !== undefined;
    cs.started = t.started !== undefined;
    cs.restartCount = t.restartCount ?? 0;
    cs.state = t.started !== undefined ? { running: { startedAt: iso(t.started) } } : { waiting: t.waiting ?? { reason: 'ContainerCreating' } };
    if (t.lastTerminated) cs.lastState = { terminated: { exitCode: 137, reason: t.lastTerminated, finishedAt: iso(t.started ?? t.created) } };
  }
  return pod;
}

export function deployment(p: { namespace: string; name: string; uid: string; replicas: number; revision: number; progressDeadlineSeconds?: number }): FakeObject {
  return {
    metadata: {
      name: p.name,
      namespace: p.namespace,
      uid: p.uid,
      labels: { app: p.name },
      annotations: { 'deployment.kubernetes.io/revision': String(p.revision) },
    },
    spec: {
      replicas: p.replicas,
      selector: { matchLabels: { app: p.name } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
      progressDeadlineSeconds: p.progressDeadlineSeconds ?? 600,
      revisionHistoryLimit: 10,
      template: { metadata: { labels: { app: p.name } }, spec: { containers: [{ name: 'app', image: `registry.example.com/${p.namespace}/app:1.${p.revision}` }] } },
    },
    status: {},
  };
}

/** The deployment controller's status at a step: counts plus the Progressing/Available conditions. */
export function deploymentStatus(
  generation: number,
  s: { replicas: number; updated: number; available: number; progressing: { reason: string; status?: string; at: number; since?: number; message?: string } },
): Record<string, unknown> {
  return {
    observedGeneration: generation,
    replicas: s.replicas,
    updatedReplicas: s.updated,
    readyReplicas: s.available,
    availableReplicas: s.available,
    unavailableReplicas: Math.max(0, s.replicas - s.available),
    conditions: [
      { type: 'Available', status: s.available > 0 ? 'True' : 'False', reason: 'MinimumReplicasAvailable', lastUpdateTime: iso(s.progressing.at), lastTransitionTime: iso(s.progressing.since ?? s.progressing.at) },
      {
        type: 'Progressing',
        status: s.progressing.status ?? 'True',
        reason: s.progressing.reason,
        message: s.progressing.message ?? `ReplicaSet progress: ${s.progressing.reason}`,
        lastUpdateTime: iso(s.progressing.at),
        lastTransitionTime: iso(s.progressing.since ?? s.progressing.at),
      },
    ],
  };
}

export function replicaSet(p: { namespace: string; name: string; uid: string; deployment: { name: string; uid: string }; revision: number; created: number; replicas: number; available: number; history?: number[] }): FakeObject {
  return {
    metadata: {
      name: p.name,
      namespace: p.namespace,
      uid: p.uid,
      creationTimestamp: iso(p.created),
      labels: { app: p.deployment.name, 'pod-template-hash': p.name.split('-').at(-1)! },
      annotations: {
        'deployment.kubernetes.io/revision': String(p.revision),
        'deployment.kubernetes.io/desired-replicas': String(p.replicas),
        ...(p.history ? { 'deployment.kubernetes.io/revision-history': p.history.join(',') } : {}),
      },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: p.deployment.name, uid: p.deployment.uid, controller: true, blockOwnerDeletion: true }],
    },
    spec: { replicas: p.replicas, selector: { matchLabels: { app: p.deployment.name } } },
    status: { replicas: p.replicas, readyReplicas: p.available, availableReplicas: p.available, fullyLabeledReplicas: p.replicas, observedGeneration: 1 },
  };
}

export function storageClass(name: string, provisioner: string, bindingMode: 'Immediate' | 'WaitForFirstConsumer'): FakeObject {
  return { metadata: { name }, provisioner, reclaimPolicy: 'Delete', volumeBindingMode: bindingMode, allowVolumeExpansion: true, parameters: { type: 'gp3' } };
}

export function claim(p: { namespace: string; name: string; uid: string; storageClass: string; provisioner: string; created: number; phase: 'Pending' | 'Bound'; volumeName?: string; selectedNode?: string }): FakeObject {
  return {
    metadata: {
      name: p.name,
      namespace: p.namespace,
      uid: p.uid,
      creationTimestamp: iso(p.created),
      annotations: {
        'volume.kubernetes.io/storage-provisioner': p.provisioner,
        ...(p.selectedNode ? { 'volume.kubernetes.io/selected-node': p.selectedNode } : {}),
        ...(p.phase === 'Bound' ? { 'pv.kubernetes.io/bind-completed': 'yes', 'pv.kubernetes.io/bound-by-controller': 'yes' } : {}),
      },
    },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } }, storageClassName: p.storageClass, volumeMode: 'Filesystem', volumeName: p.volumeName },
    status: p.phase === 'Bound' ? { phase: 'Bound', accessModes: ['ReadWriteOnce'], capacity: { storage: '10Gi' } } : { phase: 'Pending' },
  };
}

export function volume(p: { name: string; uid: string; driver: string; created: number; claim: { namespace: string; name: string; uid: string }; storageClass: string; boundAt?: number }): FakeObject {
  return {
    metadata: { name: p.name, uid: p.uid, creationTimestamp: iso(p.created), annotations: { 'pv.kubernetes.io/provisioned-by': p.driver } },
    spec: {
      accessModes: ['ReadWriteOnce'],
      capacity: { storage: '10Gi' },
      claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: p.claim.namespace, name: p.claim.name, uid: p.claim.uid },
      csi: { driver: p.driver, volumeHandle: `vol-${p.uid.slice(0, 8)}`, fsType: 'ext4' },
      persistentVolumeReclaimPolicy: 'Delete',
      storageClassName: p.storageClass,
      volumeMode: 'Filesystem',
    },
    status: p.boundAt !== undefined ? { phase: 'Bound', lastPhaseTransitionTime: iso(p.boundAt) } : { phase: 'Pending', lastPhaseTransitionTime: iso(p.created) },
  };
}

export function volumeAttachment(p: { name: string; uid: string; driver: string; node: string; pv: string; created: number; attached: boolean; attachError?: { at: number; message: string } }): FakeObject {
  return {
    metadata: { name: p.name, uid: p.uid, creationTimestamp: iso(p.created) },
    spec: { attacher: p.driver, nodeName: p.node, source: { persistentVolumeName: p.pv } },
    status: {
      attached: p.attached,
      ...(p.attached ? { attachmentMetadata: { devicePath: '/dev/xvdaa' } } : {}),
      ...(p.attachError ? { attachError: { time: iso(p.attachError.at), message: p.attachError.message } } : {}),
    },
  };
}

export function node(p: { name: string; uid: string; created: number; ready: boolean; since: number }): FakeObject {
  return {
    metadata: { name: p.name, uid: p.uid, creationTimestamp: iso(p.created), labels: { 'kubernetes.io/hostname': p.name } },
    spec: p.ready ? {} : { taints: [{ key: 'node.kubernetes.io/unreachable', effect: 'NoExecute', timeAdded: iso(p.since) }] },
    status: {
      conditions: [
        {
          type: 'Ready',
          status: p.ready ? 'True' : 'Unknown',
          reason: p.ready ? 'KubeletReady' : 'NodeStatusUnknown',
          message: p.ready ? 'kubelet is posting ready status' : 'Kubelet stopped posting node status.',
          lastHeartbeatTime: iso(p.since),
          lastTransitionTime: iso(p.since),
        },
      ],
    },
  };
}

/** One new occurrence of an Event, as the kubernetes_events source delivers it. */
export function occurrence(p: { reason: string; type?: string; note: string; component: string; regarding: ObjectRef; at: number; first?: number; count?: number; namespace?: string }): EventOccurrence {
  return {
    uid: randomUUID(),
    namespace: p.namespace ?? p.regarding.namespace ?? 'default',
    name: `${p.regarding.name}.${Math.floor(p.at / 1000).toString(16)}`,
    reason: p.reason,
    type: p.type ?? 'Normal',
    note: p.note,
    component: p.component,
    regarding: p.regarding,
    delta: 1,
    occurrences: p.count ?? 1,
    firstSeenMs: p.first ?? p.at,
    lastSeenMs: p.at,
  };
}
