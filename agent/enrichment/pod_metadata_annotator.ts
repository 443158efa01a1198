import type { PodCache } from '../kube/pod_cache.ts';
import type { ContainerStatusSummary, ContainerSummary, Pod } from '../kube/types.ts';
import type { Attributes } from '../record.ts';
import type { PodMetadataConfig } from './config.ts';
import { KeyFilter } from './key_filter.ts';
import { steeringFor, type Steering } from './pod_annotations.ts';

/**
 * Turns a container's path-derived resource (agent/sources/container_logs/path_metadata.ts) into
 * the pod's full resource, with OpenTelemetry semantic-convention names, from the node's PodCache.
 *
 * The tailer shares one resource object between all records of a file, so the answer is cached
 * per input object and recomputed only when the cache's version moves: per record, enrichment is
 * one identity comparison and a WeakMap lookup, and every record of a container shares the same
 * (immutable) output object, which the NDJSON encoder serialises once.
 */

export interface Annotation {
  resource: Attributes;
  steering: Steering;
  /** The pod is known to the cache (false: the input resource is returned as it was). */
  known: boolean;
  /** Known, and no workload owner lookup is still under way. */
  complete: boolean;
}

interface Cached {
  version: number;
  annotation: Annotation;
}

/** What a pod's metadata budget left out: keys by kind, and their bytes. */
export interface MetadataCut {
  pod: Pod;
  /** Keys copied, and their bytes. */
  kept: number;
  keptBytes: number;
  /** Keys left out by kind (`label`, `annotation`, `namespace_label`), and their bytes altogether. */
  dropped: Record<MetadataKind, number>;
  droppedBytes: number;
}

export type MetadataKind = 'label' | 'annotation' | 'namespace_label';

/** The remaining budget while one pod's resource is built. */
interface Budget {
  keys: number;
  bytes: number;
  cut: MetadataCut;
}

export class PodMetadataAnnotator {
  private readonly cache: PodCache;
  private readonly labels: KeyFilter;
  private readonly annotations: KeyFilter;
  private readonly namespaceLabels: KeyFilter;
  private readonly maxKeys: number;
  private readonly maxBytes: number;
  private readonly onCut: (cut: MetadataCut) => void;
  /** Pods (objects: an update is a new one) whose cut was reported. */
  private readonly reported = new WeakSet<Pod>();
  private readonly memo = new WeakMap<Attributes, Cached>();

  /** `onCut`: once per pod (object) whose labels and annotations went past the budget. */
  constructor(cache: PodCache, config: PodMetadataConfig, onCut: (cut: MetadataCut) => void = () => {}) {
    this.cache = cache;
    this.maxKeys = config.max_keys;
    this.maxBytes = config.max_bytes;
    this.onCut = onCut;
    this.labels = new KeyFilter(config.pod_labels.include, config.pod_labels.exclude);
    this.annotations = new KeyFilter(config.pod_annotations.include, config.pod_annotations.exclude);
    this.namespaceLabels = new KeyFilter(config.namespace_labels.include, config.namespace_labels.exclude);
  }

  /** Never waits: answers from memory, `known: false` when the pod is not (yet) in the cache. */
  annotate(input: Attributes): Annotation {
    const version = this.cache.version;
    const hit = this.memo.get(input);
    if (hit && hit.version === version) return hit.annotation;
    const pod = this.findPod(input);
    const annotation: Annotation = pod
      ? {
          resource: this.resourceOf(input, pod),
          steering: steeringFor(pod.metadata.annotations, str(input['k8s.container.name'])),
          known: true,
          complete: !this.cache.ownersPending(pod),
        }
      : { resource: input, steering: steeringFor(undefined, undefined), known: false, complete: false };
    this.memo.set(input, { version, annotation });
    return annotation;
  }

  private findPod(input: Attributes): Pod | undefined {
    const uid = str(input['k8s.pod.uid']);
    if (uid) return this.cache.byUid(uid);
    const ns = str(input['k8s.namespace.name']);
    const name = str(input['k8s.pod.name']);
    return ns && name ? this.cache.byName(ns, name) : undefined;
  }

  private resourceOf(input: Attributes, pod: Pod): Attributes {
    const out: Record<string, Attributes[string]> = { ...input };
    const m = pod.metadata;
    if (m.uid) out['k8s.pod.uid'] = m.uid;
    if (m.name) out['k8s.pod.name'] = m.name;
    if (m.namespace) out['k8s.namespace.name'] = m.namespace;
    const node = pod.spec?.nodeName;
    if (node) out['k8s.node.name'] = node;

    const owners = this.cache.ownersOf(pod);
    if (owners.deployment) out['k8s.deployment.name'] = owners.deployment;
    if (owners.replicaset) out['k8s.replicaset.name'] = owners.replicaset;
    if (owners.statefulset) out['k8s.statefulset.name'] = owners.statefulset;
    if (owners.daemonset) out['k8s.daemonset.name'] = owners.daemonset;
    if (owners.cronjob) out['k8s.cronjob.name'] = owners.cronjob;
    if (owners.job) out['k8s.job.name'] = owners.job;

    const container = str(input['k8s.container.name']);
    const image = container ? imageOf(pod, container) : undefined;
    if (image) {
      const { name, tag } = splitImage(image);
      out['container.image.name'] = name;
      if (tag) out['container.image.tags'] = [tag];
    }

    // One budget for all three, in this order: labels identify a workload; annotations and
    // namespace labels, when asked for, come after.
    const cut: MetadataCut = { pod, kept: 0, keptBytes: 0, dropped: { label: 0, annotation: 0, namespace_label: 0 }, droppedBytes: 0 };
    const budget: Budget = { keys: this.maxKeys, bytes: this.maxBytes, cut };
    copyKeys(out, 'k8s.pod.label.', m.labels, this.labels, budget, 'label');
    copyKeys(out, 'k8s.pod.annotation.', m.annotations, this.annotations, budget, 'annotation');
    if (!this.namespaceLabels.none && m.namespace) copyKeys(out, 'k8s.namespace.label.', this.cache.namespaceLabels(m.namespace), this.namespaceLabels, budget, 'namespace_label');
    if (cut.droppedBytes > 0 || cut.dropped.label + cut.dropped.annotation + cut.dropped.namespace_label > 0) {
      out['kta.k8s.metadata.truncated'] = true;
      if (!this.reported.has(pod)) {
        this.reported.add(pod);
        this.onCut(cut);
      }
    }
    return Object.freeze(out);
  }
}

function str(v: Attributes[string] | undefined): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** Copies what `filter` keeps while the budget lasts; what it does not cover is counted, not copied. */
function copyKeys(
  out: Record<string, Attributes[string]>,
  prefix: string,
  from: Readonly<Record<string, string>> | undefined,
  filter: KeyFilter,
  budget: Budget,
  kind: MetadataKind,
): void {
  if (!from || filter.none) return;
  for (const k in from) {
    if (!filter.keeps(k)) continue;
    const v = from[k]!;
    const size = Buffer.byteLength(prefix) + Buffer.byteLength(k) + Buffer.byteLength(v);
    if (budget.keys > 0 && size <= budget.bytes) {
      out[prefix + k] = v;
      budget.keys--;
      budget.bytes -= size;
      budget.cut.kept++;
      budget.cut.keptBytes += size;
    } else {
      budget.cut.dropped[kind]++;
      budget.cut.droppedBytes += size;
    }
  }
}

/** The image the container was created from: the spec's (what the user asked for), else the status's. */
function imageOf(pod: Pod, container: string): string | undefined {
  const find = <T extends ContainerSummary | ContainerStatusSummary>(lists: (T[] | undefined)[]) => {
    for (const list of lists) for (const c of list ?? []) if (c.name === container && c.image) return c.image;
    return undefined;
  };
  return (
    find([pod.spec?.containers, pod.spec?.initContainers, pod.spec?.ephemeralContainers]) ??
    find([pod.status?.containerStatuses, pod.status?.initContainerStatuses, pod.status?.ephemeralContainerStatuses])
  );
}

/**
 * `registry:5000/team/app:1.4@sha256:…` -> name `registry:5000/team/app`, tag `1.4`. A `:` before the
 * last `/` is a registry port, not a tag; a digest is not a tag.
 */
export function splitImage(image: string): { name: string; tag?: string } {
  const at = image.indexOf('@');
  const ref = at < 0 ? image : image.slice(0, at);
  const colon = ref.lastIndexOf(':');
  if (colon > ref.lastIndexOf('/')) return { name: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { name: ref };
}
