import type { Logger } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';
import type { KubeRequester } from './connection.ts';
import { ListWatch, type ListWatchOptions } from './list_watch.ts';
import { needsOwnerLookup, OwnerCache, type OwnerCacheOptions } from './owner_cache.ts';
import type { ContainerStateSummary, ContainerStatusSummary, ContainerSummary, KubeObject, OwnerReference, Pod, PodConditionSummary } from './types.ts';

/**
 * The pods of this node, for log enrichment, read synchronously and never waited for.
 *
 * - One list+watch of `/api/v1/pods?fieldSelector=spec.nodeName=<node>`: API load is O(pods on this
 *   node). Pods are slimmed on receipt (metadata, container names and images, container statuses).
 * - Indexed by uid and by namespace/name. A static pod's log directory carries the kubelet's uid for
 *   it, which is the config hash; the API shows its mirror pod (another uid) with annotations
 *   `kubernetes.io/config.mirror` / `kubernetes.io/config.hash` = that hash, so mirror pods are
 *   indexed by the hash too.
 * - A deleted pod stays findable for `deletedGraceMs` (default 5 min): its last log lines are read
 *   after the API has forgotten it.
 * - Workload owners: Deployment via the pod's ReplicaSet and CronJob via its Job come from
 *   `OwnerCache` (one metadata-only GET per ReplicaSet/Job this node's pods reference);
 *   StatefulSet and DaemonSet are the pod's own controller.
 * - Namespace labels (optional, `namespaceMetadata`): a metadata-only list+watch of all namespaces,
 *   the one cluster-wide watch here, O(namespaces).
 *
 * `version` grows on every change (pod, owner answer, namespace labels), so a consumer may cache what
 * it derived from a pod until the version moves.
 */

export const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';
export const CONFIG_HASH_ANNOTATION = 'kubernetes.io/config.hash';

export interface PodCacheOptions {
  connection: KubeRequester;
  nodeName: string;
  log?: Logger;
  /** How long a deleted pod stays findable; default 5 min. */
  deletedGraceMs?: number;
  /** Look up ReplicaSet -> Deployment and Job -> CronJob; default true. */
  resolveOwners?: boolean;
  /** Watch namespaces (metadata only) for `namespaceLabels`; default false. */
  namespaceMetadata?: boolean;
  /** Timing of the list+watch loops (tests shorten these). */
  watch?: Partial<Pick<ListWatchOptions<Pod>, 'pageSize' | 'watchTimeoutSeconds' | 'idleTimeoutMs' | 'backoff' | 'random' | 'initialListFromCache'>>;
  /** Timing of owner lookups. */
  ownerLookups?: Partial<Pick<OwnerCacheOptions, 'concurrency' | 'retry' | 'idleTimeoutMs'>>;
  now?: () => number;
}

/** Workload names in OpenTelemetry terms (`k8s.deployment.name` ...), from the pod's controller chain. */
export interface WorkloadOwners {
  /** The pod's own controller as the pod names it (ReplicaSet, Job, StatefulSet, DaemonSet, Node for mirror pods, or another kind). */
  controller?: { kind: string; name: string; uid: string };
  deployment?: string;
  replicaset?: string;
  statefulset?: string;
  daemonset?: string;
  job?: string;
  cronjob?: string;
}

/** A namespace as watched: metadata only. */
export type NamespaceMeta = KubeObject;

interface Deleted {
  pod: Pod;
  expiresAt: number;
}

export class PodCache {
  readonly nodeName: string;
  /** The underlying loop (connected, resourceVersion, subscribe). */
  readonly pods: ListWatch<Pod>;
  readonly namespaces: ListWatch<NamespaceMeta> | undefined;
  readonly owners: OwnerCache | undefined;

  private readonly graceMs: number;
  private readonly now: () => number;
  private readonly live = new Map<string, Pod>();
  private readonly mirrors = new Map<string, string>(); // config hash -> live uid
  private readonly deleted = new Map<string, Deleted>();
  private readonly deletedByName = new Map<string, string>(); // ns/name -> uid
  private readonly deletedMirrors = new Map<string, string>(); // config hash -> deleted uid
  private sweepTimer: NodeJS.Timeout | undefined;
  private changes = 0;

  constructor(options: PodCacheOptions, metrics: SelfMetrics) {
    this.nodeName = options.nodeName;
    this.graceMs = options.deletedGraceMs ?? 5 * 60_000;
    this.now = options.now ?? Date.now;
    this.pods = new ListWatch<Pod>(
      {
        ...options.watch,
        connection: options.connection,
        path: '/api/v1/pods',
        resource: 'pods',
        fieldSelector: `spec.nodeName=${options.nodeName}`,
        transform: slimPod,
        log: options.log,
      },
      metrics,
    );
    this.pods.subscribe({
      onAdd: (pod) => this.added(pod),
      onUpdate: (old, pod) => this.updated(old, pod),
      onDelete: (pod) => this.removed(pod),
    });
    if (options.resolveOwners ?? true) {
      this.owners = new OwnerCache({
        ...options.ownerLookups,
        connection: options.connection,
        log: options.log,
        onResolved: () => this.changes++,
        random: options.watch?.random,
      });
    }
    if (options.namespaceMetadata) {
      this.namespaces = new ListWatch<NamespaceMeta>(
        {
          ...options.watch,
          connection: options.connection,
          path: '/api/v1/namespaces',
          resource: 'namespaces',
          metadataOnly: true,
          transform: (o) => ({ metadata: o.metadata }),
          log: options.log,
        },
        metrics,
      );
      const bump = () => void this.changes++;
      this.namespaces.subscribe({ onAdd: bump, onUpdate: bump, onDelete: bump });
    }
  }

  start(): void {
    this.pods.start();
    this.namespaces?.start();
    if (!this.sweepTimer) {
      this.sweepTimer = setInterval(() => this.sweep(), Math.max(50, Math.min(this.graceMs / 2, 30_000)));
      this.sweepTimer.unref();
    }
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.owners?.stop();
    await Promise.all([this.pods.stop(), this.namespaces?.stop()]);
  }

  /** The first LIST of this node's pods is done (and of namespaces, when watched). */
  get synced(): boolean {
    return this.pods.synced && (this.namespaces?.synced ?? true);
  }

  get connected(): boolean {
    return this.pods.connected;
  }

  /**
   * A reader found no pod for a record: while no watch is open (a watch that keeps answering 410, a
   * backoff) list again now rather than at the end of the backoff, at most once a second.
   */
  refresh(): void {
    this.pods.resync(1000);
  }

  async whenSynced(): Promise<void> {
    await Promise.all([this.pods.whenSynced(), this.namespaces?.whenSynced()]);
  }

  /** Grows whenever anything a lookup returns may have changed. */
  get version(): number {
    return this.changes;
  }

  /** Live pods. */
  get size(): number {
    return this.live.size;
  }

  /**
   * A pod by its uid, or by the config hash a static pod's log directory carries; live or deleted
   * less than the grace period ago. undefined at once when unknown (never waits for the API).
   */
  byUid(uid: string): Pod | undefined {
    const live = this.live.get(uid) ?? this.live.get(this.mirrors.get(uid) ?? '');
    if (live) return live;
    return this.deletedPod(uid) ?? this.deletedPod(this.deletedMirrors.get(uid));
  }

  byName(namespace: string, name: string): Pod | undefined {
    return this.pods.getByName(namespace, name) ?? this.deletedPod(this.deletedByName.get(`${namespace}/${name}`));
  }

  /** When a pod (by uid or config hash) was seen deleted; undefined if live, unknown or forgotten. */
  deletedAt(uid: string): number | undefined {
    const id = this.deleted.has(uid) ? uid : this.deletedMirrors.get(uid);
    const d = id === undefined ? undefined : this.deleted.get(id);
    if (!d || d.expiresAt <= this.now()) return undefined;
    return d.expiresAt - this.graceMs;
  }

  /** Workload owners; a Deployment or CronJob name appears once its ReplicaSet/Job lookup answered. */
  ownersOf(pod: Pod): WorkloadOwners {
    const ref = controllerRef(pod);
    if (!ref) return {};
    const out: WorkloadOwners = { controller: { kind: ref.kind, name: ref.name, uid: ref.uid } };
    switch (ref.kind) {
      case 'ReplicaSet': {
        out.replicaset = ref.name;
        const up = this.owners?.controllerOf(ref);
        if (up?.kind === 'Deployment') out.deployment = up.name;
        break;
      }
      case 'Job': {
        out.job = ref.name;
        const up = this.owners?.controllerOf(ref);
        if (up?.kind === 'CronJob') out.cronjob = up.name;
        break;
      }
      case 'StatefulSet':
        out.statefulset = ref.name;
        break;
      case 'DaemonSet':
        out.daemonset = ref.name;
        break;
    }
    return out;
  }

  /** A workload owner of `pod` is still being looked up (its Deployment or CronJob name may follow). */
  ownersPending(pod: Pod): boolean {
    const ref = controllerRef(pod);
    return ref !== undefined && this.owners !== undefined && needsOwnerLookup(ref) && this.owners.controllerOf(ref) === undefined;
  }

  /** A namespace's labels (only with `namespaceMetadata`), undefined when unknown. */
  namespaceLabels(namespace: string): Readonly<Record<string, string>> | undefined {
    const ns = this.namespaces?.get(namespace);
    return ns ? (ns.metadata.labels ?? {}) : undefined;
  }

  // ---- events ----

  private added(pod: Pod): void {
    const uid = pod.metadata.uid;
    if (!uid) return;
    this.forgetDeleted(uid);
    this.live.set(uid, pod);
    const hash = mirrorHash(pod);
    if (hash) this.mirrors.set(hash, uid);
    this.retainOwner(pod);
    this.changes++;
  }

  private updated(old: Pod, pod: Pod): void {
    const uid = pod.metadata.uid;
    if (!uid) return;
    this.live.set(uid, pod);
    const oldHash = mirrorHash(old);
    const hash = mirrorHash(pod);
    if (oldHash && oldHash !== hash && this.mirrors.get(oldHash) === uid) this.mirrors.delete(oldHash);
    if (hash) this.mirrors.set(hash, uid);
    const a = controllerRef(old);
    const b = controllerRef(pod);
    if (a?.uid !== b?.uid) {
      this.retainOwner(pod);
      if (a) this.owners?.release(a);
    }
    this.changes++;
  }

  private removed(pod: Pod): void {
    const uid = pod.metadata.uid;
    if (!uid) return;
    const known = this.live.get(uid);
    this.live.delete(uid);
    const last = pod;
    const hash = mirrorHash(last);
    if (hash && this.mirrors.get(hash) === uid) this.mirrors.delete(hash);
    if (!known) this.retainOwner(last); // a DELETED for a pod never seen: hold its owner for the grace period too
    if (known && controllerRef(known)?.uid !== controllerRef(last)?.uid) {
      const a = controllerRef(known);
      if (a) this.owners?.release(a);
      this.retainOwner(last);
    }
    this.forgetDeleted(uid);
    this.deleted.set(uid, { pod: last, expiresAt: this.now() + this.graceMs });
    this.deletedByName.set(`${last.metadata.namespace}/${last.metadata.name}`, uid);
    if (hash) this.deletedMirrors.set(hash, uid);
    this.changes++;
  }

  private retainOwner(pod: Pod): void {
    const ref = controllerRef(pod);
    if (ref && pod.metadata.namespace) this.owners?.retain(pod.metadata.namespace, ref);
  }

  private deletedPod(uid: string | undefined): Pod | undefined {
    if (uid === undefined) return undefined;
    const d = this.deleted.get(uid);
    if (!d) return undefined;
    if (d.expiresAt <= this.now()) {
      this.forgetDeleted(uid);
      return undefined;
    }
    return d.pod;
  }

  private forgetDeleted(uid: string): void {
    const d = this.deleted.get(uid);
    if (!d) return;
    this.deleted.delete(uid);
    const key = `${d.pod.metadata.namespace}/${d.pod.metadata.name}`;
    if (this.deletedByName.get(key) === uid) this.deletedByName.delete(key);
    const hash = mirrorHash(d.pod);
    if (hash && this.deletedMirrors.get(hash) === uid) this.deletedMirrors.delete(hash);
    const ref = controllerRef(d.pod);
    if (ref) this.owners?.release(ref);
    this.changes++;
  }

  private sweep(): void {
    const now = this.now();
    for (const [uid, d] of this.deleted) if (d.expiresAt <= now) this.forgetDeleted(uid);
  }
}

export function controllerRef(pod: Pod): OwnerReference | undefined {
  return pod.metadata.ownerReferences?.find((r) => r.controller);
}

/** The config hash a mirror pod stands for (the uid in a static pod's /var/log/pods directory). */
export function mirrorHash(pod: Pod): string | undefined {
  const a = pod.metadata.annotations;
  if (!a?.[MIRROR_ANNOTATION]) return undefined;
  return a[CONFIG_HASH_ANNOTATION] || a[MIRROR_ANNOTATION];
}

/**
 * What the cache keeps of a pod: metadata (without managedFields), container names/images/statuses,
 * and the conditions and container states' times and reasons the pod startup tracker reads (it
 * follows this cache's watch rather than opening a second one).
 */
export function slimPod(raw: KubeObject): Pod {
  const p = raw as Pod & { spec?: Record<string, unknown>; status?: Record<string, unknown> };
  const containers = (list: unknown): ContainerSummary[] | undefined =>
    Array.isArray(list) ? list.map((c: ContainerSummary) => ({ name: c.name, image: c.image })) : undefined;
  const statuses = (list: unknown): ContainerStatusSummary[] | undefined =>
    Array.isArray(list)
      ? list.map((s: ContainerStatusSummary) => ({
          name: s.name,
          containerID: s.containerID,
          image: s.image,
          imageID: s.imageID,
          restartCount: s.restartCount,
          state: slimState(s.state),
          lastState: slimState(s.lastState),
        }))
      : undefined;
  const conditions = (list: unknown): PodConditionSummary[] | undefined =>
    Array.isArray(list)
      ? list.map((c: PodConditionSummary) => ({ type: c.type, status: c.status, reason: c.reason, lastTransitionTime: c.lastTransitionTime }))
      : undefined;
  const { managedFields: _m, ...metadata } = p.metadata;
  return {
    metadata,
    spec: p.spec && {
      nodeName: p.spec.nodeName as string | undefined,
      serviceAccountName: p.spec.serviceAccountName as string | undefined,
      containers: containers(p.spec.containers),
      initContainers: containers(p.spec.initContainers),
      ephemeralContainers: containers(p.spec.ephemeralContainers),
    },
    status: p.status && {
      phase: p.status.phase as string | undefined,
      podIP: p.status.podIP as string | undefined,
      hostIP: p.status.hostIP as string | undefined,
      startTime: p.status.startTime as string | undefined,
      conditions: conditions(p.status.conditions),
      containerStatuses: statuses(p.status.containerStatuses),
      initContainerStatuses: statuses(p.status.initContainerStatuses),
      ephemeralContainerStatuses: statuses(p.status.ephemeralContainerStatuses),
    },
  };
}

function slimState(st: ContainerStateSummary | undefined): ContainerStateSummary | undefined {
  if (!st) return undefined;
  const { running, waiting, terminated } = st;
  return {
    running: running && { startedAt: running.startedAt },
    waiting: waiting && { reason: waiting.reason },
    terminated: terminated && { startedAt: terminated.startedAt, finishedAt: terminated.finishedAt, reason: terminated.reason },
  };
}
