import type { EventOccurrence, ObjectRef } from '../../cluster/observation.ts';
import { parseKubeTime } from '../../kube/micro_time.ts';
import type { KubeObject } from '../../kube/types.ts';

/**
 * One Event, whichever API it was read from (core/v1 or events.k8s.io/v1), reduced to what counting,
 * metrics and log records use (kubernetes-events.md §1). It keeps `metadata` so the list+watch cache
 * can hold it instead of the whole object: 50,000 cached events stay a few tens of MiB.
 */
export interface NormalizedEvent extends KubeObject, Omit<EventOccurrence, 'delta'> {}

/** Notes are advised to stay under 1 kB but may reach 64 kB; what is kept of them. */
export const MAX_NOTE_BYTES = 4096;

type Raw = KubeObject & Record<string, unknown>;

export function normalizeEvent(raw: KubeObject): NormalizedEvent {
  const e = raw as Raw;
  const v1 = 'regarding' in e || 'note' in e || 'deprecatedCount' in e;
  const source = (e.source ?? e.deprecatedSource ?? {}) as { component?: string; host?: string };
  const series = e.series as { count?: number; lastObservedTime?: string } | undefined | null;
  const count = num(v1 ? e.deprecatedCount : e.count);
  const created = time(raw.metadata.creationTimestamp) ?? 0;
  const eventTime = time(e.eventTime);
  const firstTs = time(v1 ? e.deprecatedFirstTimestamp : e.firstTimestamp);
  const lastTs = time(v1 ? e.deprecatedLastTimestamp : e.lastTimestamp);
  const regarding = ref((v1 ? e.regarding : e.involvedObject) as Record<string, unknown> | undefined);
  const related = e.related ? ref(e.related as Record<string, unknown>) : undefined;
  const note = str(v1 ? e.note : e.message);
  return {
    metadata: {
      name: raw.metadata.name,
      namespace: raw.metadata.namespace,
      uid: raw.metadata.uid,
      resourceVersion: raw.metadata.resourceVersion,
      creationTimestamp: raw.metadata.creationTimestamp,
    },
    uid: raw.metadata.uid ?? `${raw.metadata.namespace}/${raw.metadata.name}`,
    namespace: regarding.namespace ?? '',
    name: raw.metadata.name ?? '',
    reason: str(e.reason),
    type: str(e.type),
    note: note.length > MAX_NOTE_BYTES ? note.slice(0, MAX_NOTE_BYTES) : note,
    component: source.component || str(e.reportingController ?? e.reportingComponent),
    instance: source.host || str(e.reportingInstance) || undefined,
    action: str(e.action) || undefined,
    regarding,
    related,
    occurrences: series && num(series.count) > 0 ? num(series.count) : count > 0 ? count : 1,
    firstSeenMs: firstTs ?? eventTime ?? created,
    lastSeenMs: time(series?.lastObservedTime) ?? lastTs ?? eventTime ?? created,
  };
}

function ref(o: Record<string, unknown> | undefined): ObjectRef {
  return {
    kind: str(o?.kind),
    apiVersion: str(o?.apiVersion) || undefined,
    namespace: str(o?.namespace) || undefined,
    name: str(o?.name),
    uid: str(o?.uid) || undefined,
    fieldPath: str(o?.fieldPath) || undefined,
  };
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** Epoch ms (µs as the fraction, so events.k8s.io times keep their order) of a metav1.Time / MicroTime. */
const time = parseKubeTime;
