import { Counter, Histogram, type Registry } from 'prom-client';
import type { KubeObject } from '../kube/types.ts';
import type { ObjectLookup } from './event_lookup.ts';
import { ReportWindow } from './report_window.ts';
import { clampType, globMatch, normalizeComponent } from './event_match.ts';
import type { EventOccurrence, EventSink } from './observation.ts';

/**
 * The Prometheus metrics derived from Event occurrences (span-and-metric-model.md §1), on the
 * agent's one registry. Label values are bounded (§1.2): components normalised and capped, types
 * clamped, reasons capped per component, namespaces filtered, and label sets not incremented for
 * `seriesTtlMs` removed, so deleted namespaces and classes stop being exported.
 */

export const IMAGE_PULL_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

export interface EventMetricsOptions {
  includeNamespaces: readonly string[];
  excludeNamespaces: readonly string[];
  maxReasonsPerComponent: number;
  maxComponents: number;
  seriesTtlMs: number;
  lookup: ObjectLookup;
  /**
   * The leader's report window: a pod counts as Unschedulable once, at the first FailedScheduling
   * Event about it, so a takeover does not count the pods its predecessor counted. Default: every pod, at once.
   */
  window?: ReportWindow;
  /**
   * The first occurrence time of the earliest FailedScheduling Event about a pod that the API still
   * holds (the source keeps this index from its watch): the pod's one transition time, whatever
   * later Event objects the scheduler writes about it. Default: the occurrence's own first time.
   */
  firstFailedScheduling?: (podUid: string) => number | undefined;
  now?: () => number;
}

/** A metric another part (the node-local pod tracker) may register too: one instance per registry. */
export function sharedCounter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter<L>({ name, help, labelNames, registers: [registry] });
}

function sharedHistogram(registry: Registry, name: string, help: string, buckets: number[]): Histogram {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Histogram;
  return new Histogram({ name, help, buckets, registers: [registry] });
}

const MAX_CLASSES = 50;
const SWEEP_EVERY_MS = 60_000;

type Labels = Record<string, string>;

export class EventMetrics implements EventSink {
  readonly eventsTotal: Counter<'namespace' | 'kind' | 'reason' | 'type' | 'component'>;
  readonly imagePull: Histogram;
  readonly startupFailures: Counter<'owner_kind' | 'reason'>;
  readonly pvcFailures: Counter<'storage_class' | 'provisioner'>;
  readonly mountFailures: Counter<'namespace' | 'volume_type' | 'stage'>;
  readonly disruptions: Counter<'namespace' | 'reason'>;
  private readonly o: Required<EventMetricsOptions>;
  private readonly reasons = new Map<string, Set<string>>();
  private readonly components = new Set<string>();
  private readonly kinds = new Set<string>();
  private readonly classes = new Set<string>();
  /** Pods already counted as Unschedulable: once per pod. */
  private readonly unschedulable = new Set<string>();
  private readonly touched = new Map<string, { counter: Counter<string>; labels: Labels; at: number }>();
  private lastSweep = 0;
  /** Lookups in flight, so tests and shutdown can wait for the increments they lead to. */
  private pending = new Set<Promise<void>>();

  constructor(registry: Registry, options: EventMetricsOptions) {
    this.o = { now: Date.now, window: new ReportWindow({ throughMs: 0, keys: [] }, { hold: false }), firstFailedScheduling: () => undefined, ...options };
    this.eventsTotal = sharedCounter(
      registry,
      'k8s_events_total',
      'Occurrences of Kubernetes Events (count/series deltas, each counted once cluster-wide by the lease holder), by involved kind, reason, type and normalised reporting component. Unlike kube-state-metrics there is one series per kind of event, not per object.',
      ['namespace', 'kind', 'reason', 'type', 'component'],
    );
    this.imagePull = sharedHistogram(
      registry,
      'k8s_image_pull_duration_seconds',
      'Image pull time parsed from kubelet Pulled events, cluster-wide from one scrape target (kubelet exports its own per-node histogram; cached images are not observed).',
      IMAGE_PULL_BUCKETS,
    );
    this.startupFailures = sharedCounter(
      registry,
      'k8s_pod_startup_failures_total',
      'Pod startups that ended in error, once per pod, by owner kind and reason; Unschedulable (pods the scheduler could not place at least once: a FailedScheduling Event) comes from the lease holder, the rest from each node. Not the scheduler SLI: every failure reason end to end.',
      ['owner_kind', 'reason'],
    );
    this.pvcFailures = sharedCounter(
      registry,
      'k8s_pvc_provisioning_failures_total',
      'ProvisioningFailed occurrences for PersistentVolumeClaims, by storage class and provisioner (kube-state-metrics only shows the phase).',
      ['storage_class', 'provisioner'],
    );
    this.mountFailures = sharedCounter(
      registry,
      'k8s_volume_mount_failures_total',
      'FailedMount / FailedMapVolume occurrences, by namespace, volume type (from the pod spec) and stage; cluster-wide, unlike the kubelet storage operation metrics per node.',
      ['namespace', 'volume_type', 'stage'],
    );
    this.disruptions = sharedCounter(
      registry,
      'k8s_pod_disruptions_total',
      'Pod disruptions by namespace and DisruptionTarget reason; DeletionByTaintManager is counted by the lease holder from TaintManagerEviction events, since the failed node agent is usually down.',
      ['namespace', 'reason'],
    );
  }

  onEvent(o: EventOccurrence): void {
    const now = this.o.now();
    const component = this.bounded(this.components, normalizeComponent(o.component), this.o.maxComponents);
    if (this.namespaceCounted(o.namespace)) {
      let reasons = this.reasons.get(component);
      if (!reasons) this.reasons.set(component, (reasons = new Set()));
      this.inc(
        this.eventsTotal,
        {
          namespace: o.namespace,
          kind: this.bounded(this.kinds, o.regarding.kind || 'other', this.o.maxComponents),
          reason: this.bounded(reasons, o.reason || 'other', this.o.maxReasonsPerComponent),
          type: clampType(o.type),
          component,
        },
        o.delta,
        now,
      );
    }
    switch (o.reason) {
      case 'Pulled': {
        const seconds = pulledSeconds(o.note);
        if (seconds !== undefined) for (let i = 0; i < o.delta; i++) this.imagePull.observe(seconds);
        break;
      }
      case 'FailedScheduling':
        // once per pod: on an Event's first occurrence (a series growing is the same pod), once per
        // process for further Event objects, and across processes by the report window (the pod's
        // first FailedScheduling time)
        if (o.regarding.kind === 'Pod' && o.occurrences === o.delta) this.track(this.failedScheduling(o));
        break;
      case 'ProvisioningFailed':
        if (o.regarding.kind === 'PersistentVolumeClaim') this.track(this.provisioningFailed(o, component));
        break;
      case 'FailedMount':
      case 'FailedMapVolume':
        if (o.regarding.kind === 'Pod') this.track(this.mountFailed(o));
        break;
      case 'TaintManagerEviction':
        if (o.regarding.kind === 'Pod' && o.note.startsWith('Marking for deletion')) {
          this.inc(this.disruptions, { namespace: o.namespace, reason: 'DeletionByTaintManager' }, o.delta, now);
        }
        break;
    }
    if (now - this.lastSweep >= SWEEP_EVERY_MS) this.sweep(now);
  }

  /** Resolves when the increments that wait for an object lookup are done. */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.all(this.pending);
  }

  /** Removes label sets not incremented for seriesTtlMs. */
  sweep(now = this.o.now()): void {
    this.lastSweep = now;
    for (const [key, t] of this.touched) {
      if (now - t.at < this.o.seriesTtlMs) continue;
      t.counter.remove(t.labels);
      this.touched.delete(key);
    }
  }

  private async failedScheduling(o: EventOccurrence): Promise<void> {
    const key = o.regarding.uid || `${o.namespace}/${o.regarding.name}`;
    if (this.unschedulable.has(key)) return;
    this.unschedulable.add(key);
    if (this.unschedulable.size > 100_000) this.unschedulable.delete(this.unschedulable.values().next().value!);
    const since = Math.min(o.firstSeenMs, (o.regarding.uid && this.o.firstFailedScheduling(o.regarding.uid)) || Infinity);
    const pod = await this.o.lookup.get('Pod', o.namespace, o.regarding.name);
    const owner = ownerKind(pod);
    this.o.window.report(`unschedulable/${key}`, since, () => this.inc(this.startupFailures, { owner_kind: owner, reason: 'Unschedulable' }, 1, this.o.now()));
  }

  private async provisioningFailed(o: EventOccurrence, component: string): Promise<void> {
    const pvc = (await this.o.lookup.get('PersistentVolumeClaim', o.namespace, o.regarding.name)) as
      | (KubeObject & { spec?: { storageClassName?: string } })
      | undefined;
    const storageClass = pvc ? pvc.spec?.storageClassName || 'none' : 'unknown';
    const provisioner = pvc?.metadata.annotations?.['volume.kubernetes.io/storage-provisioner'] || pvc?.metadata.annotations?.['volume.beta.kubernetes.io/storage-provisioner'] || component;
    this.inc(
      this.pvcFailures,
      { storage_class: this.bounded(this.classes, storageClass, MAX_CLASSES), provisioner: this.bounded(this.classes, provisioner, MAX_CLASSES) },
      o.delta,
      this.o.now(),
    );
  }

  private async mountFailed(o: EventOccurrence): Promise<void> {
    const stage = mountStage(o.reason, o.note);
    let volumeType = 'other';
    const volume = stage === 'timeout' ? undefined : /volume "([^"]+)"/.exec(o.note)?.[1];
    if (volume) {
      const pod = (await this.o.lookup.get('Pod', o.namespace, o.regarding.name)) as (KubeObject & { spec?: { volumes?: Record<string, unknown>[] } }) | undefined;
      volumeType = volumeTypeOf(pod?.spec?.volumes?.find((v) => v.name === volume));
    }
    this.inc(this.mountFailures, { namespace: o.namespace, volume_type: volumeType, stage }, o.delta, this.o.now());
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private inc<L extends string>(counter: Counter<L>, labels: Record<L, string>, n: number, now: number): void {
    counter.inc(labels, n);
    const key = `${(counter as unknown as { name: string }).name}\0${Object.values(labels).join('\0')}`;
    this.touched.delete(key);
    this.touched.set(key, { counter: counter as unknown as Counter<string>, labels, at: now });
  }

  private namespaceCounted(ns: string): boolean {
    if (this.o.includeNamespaces.length && !this.o.includeNamespaces.some((g) => globMatch(ns, g))) return false;
    return !this.o.excludeNamespaces.some((g) => globMatch(ns, g));
  }

  private bounded(set: Set<string>, value: string, max: number): string {
    if (set.has(value)) return value;
    if (set.size >= max) return 'other';
    set.add(value);
    return value;
  }
}

/** The first Go duration of a `Successfully pulled image "x" in 1.2s (…)` message, in seconds. */
export function pulledSeconds(note: string): number | undefined {
  const m = /^Successfully pulled image .* in ((?:\d+(?:\.\d+)?(?:ms|µs|us|ns|h|m|s))+)/.exec(note);
  if (!m) return undefined;
  let total = 0;
  const units: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 1e-3, µs: 1e-6, us: 1e-6, ns: 1e-9 };
  for (const part of m[1].matchAll(/(\d+(?:\.\d+)?)(ms|µs|us|ns|h|m|s)/g)) total += Number(part[1]) * units[part[2]];
  return total;
}

export function mountStage(reason: string, note: string): 'setup' | 'mount_device' | 'map' | 'timeout' {
  if (note.startsWith('Unable to attach or mount volumes')) return 'timeout';
  if (reason === 'FailedMapVolume' || note.startsWith('MapVolume.')) return 'map';
  if (note.startsWith('MountVolume.MountDevice')) return 'mount_device';
  return 'setup';
}

const VOLUME_TYPES = ['configMap', 'secret', 'projected', 'persistentVolumeClaim', 'csi', 'hostPath', 'emptyDir'];

function volumeTypeOf(volume: Record<string, unknown> | undefined): string {
  if (!volume) return 'other';
  return VOLUME_TYPES.find((t) => t in volume) ?? 'other';
}

/** The workload kind that owns a pod (a ReplicaSet with a pod-template-hash is a Deployment's). */
export function ownerKind(pod: KubeObject | undefined): string {
  if (!pod) return 'unknown';
  const owner = pod.metadata.ownerReferences?.find((r) => r.controller) ?? pod.metadata.ownerReferences?.[0];
  if (!owner) return 'none';
  if (owner.kind === 'ReplicaSet' && pod.metadata.labels?.['pod-template-hash']) return 'Deployment';
  return owner.kind;
}
