import type { WatchHandlers } from './list_watch.ts';

/**
 * The slices of Kubernetes API objects the agent reads. Hand-written rather than the generated
 * client models: those are classes with Date fields built by a deserialiser, while the watch loop
 * works on the plain JSON the server sends (minus `managedFields`).
 */

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  managedFields?: unknown[];
  continue?: string;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

export interface KubeList<T = KubeObject> {
  apiVersion?: string;
  kind?: string;
  metadata?: { resourceVersion?: string; continue?: string; remainingItemCount?: number };
  items: T[];
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchEvent {
  type: WatchEventType;
  object: KubeObject | Status;
}

/** meta/v1 Status: the body of every API error and of watch ERROR events. */
export interface Status {
  kind?: 'Status';
  apiVersion?: string;
  status?: 'Success' | 'Failure';
  code?: number;
  reason?: string;
  message?: string;
  details?: { causes?: { reason?: string; message?: string; field?: string }[]; retryAfterSeconds?: number };
}

export interface ContainerSummary {
  name: string;
  image?: string;
}

export interface ContainerStatusSummary {
  name: string;
  containerID?: string;
  image?: string;
  imageID?: string;
  restartCount?: number;
  /** The timestamps and reasons only (the pod startup tracker's stages and failures), no messages. */
  state?: ContainerStateSummary;
  lastState?: ContainerStateSummary;
}

export interface ContainerStateSummary {
  running?: { startedAt?: string };
  waiting?: { reason?: string };
  terminated?: { startedAt?: string; finishedAt?: string; reason?: string };
}

export interface PodConditionSummary {
  type: string;
  status: string;
  reason?: string;
  lastTransitionTime?: string;
}

/**
 * What the pod cache keeps of a Pod (see `slimPod`): enough for log enrichment and for the pod
 * startup tracker, which reads the same watch; not the spec.
 */
export interface Pod extends KubeObject {
  spec?: {
    nodeName?: string;
    serviceAccountName?: string;
    containers?: ContainerSummary[];
    initContainers?: ContainerSummary[];
    ephemeralContainers?: ContainerSummary[];
  };
  status?: {
    phase?: string;
    podIP?: string;
    hostIP?: string;
    startTime?: string;
    conditions?: PodConditionSummary[];
    containerStatuses?: ContainerStatusSummary[];
    initContainerStatuses?: ContainerStatusSummary[];
    ephemeralContainerStatuses?: ContainerStatusSummary[];
  };
}

/**
 * This node's pods as the agent's one node-filtered list+watch sees them, for a reader besides log
 * enrichment (agent/enrichment/shared_pod_cache.ts).
 */
export interface NodePods {
  follow(handlers: WatchHandlers<Pod>): () => void;
  values(): Iterable<Pod>;
}

/** `namespace/name` for namespaced objects, `name` for cluster-scoped ones (client-go's key). */
export function objectKey(obj: KubeObject): string {
  const { namespace, name } = obj.metadata;
  return namespace ? `${namespace}/${name ?? ''}` : (name ?? '');
}
