import type { LogRecord } from '../record.ts';
import type { EventOccurrence } from './observation.ts';

/**
 * One log record per occurrence delta (span-and-metric-model.md §3), with the names of the
 * OpenTelemetry Collector's k8seventsreceiver so existing dashboards keep working.
 */

const SEMCONV_KIND: Record<string, string> = {
  Pod: 'pod',
  Node: 'node',
  Deployment: 'deployment',
  ReplicaSet: 'replicaset',
  StatefulSet: 'statefulset',
  DaemonSet: 'daemonset',
  Job: 'job',
  CronJob: 'cronjob',
  PersistentVolumeClaim: 'persistentvolumeclaim',
  PersistentVolume: 'persistentvolume',
};

export function eventRecord(o: EventOccurrence, clusterName: string | undefined, now = Date.now()): LogRecord {
  const r = o.regarding;
  const resource: Record<string, string> = {
    'k8s.object.kind': r.kind,
    'k8s.object.name': r.name,
  };
  if (clusterName) resource['k8s.cluster.name'] = clusterName;
  if (r.uid) resource['k8s.object.uid'] = r.uid;
  if (r.fieldPath) resource['k8s.object.fieldpath'] = r.fieldPath;
  if (r.apiVersion) resource['k8s.object.api_version'] = r.apiVersion;
  const semconv = SEMCONV_KIND[r.kind];
  if (semconv) {
    resource[`k8s.${semconv}.name`] = r.name;
    // kubelet's Node events carry the node name as uid (kubernetes-events.md §2)
    if (r.uid && r.uid !== r.name) resource[`k8s.${semconv}.uid`] = r.uid;
  }
  const warning = o.type === 'Warning';
  return {
    timestamp: iso(o.lastSeenMs),
    observedTimestamp: iso(now),
    severityText: o.type || 'Normal',
    severityNumber: warning ? 13 : 9,
    body: o.note,
    attributes: {
      'k8s.event.reason': o.reason,
      ...(o.action ? { 'k8s.event.action': o.action } : {}),
      'k8s.event.start_time': iso(o.firstSeenMs),
      'k8s.event.name': o.name,
      'k8s.event.uid': o.uid,
      'k8s.event.count': o.occurrences,
      'k8s.namespace.name': o.namespace,
      'kta.event.component': o.component,
      'kta.event.delta': o.delta,
    },
    resource,
  };
}

/** Event times are whole seconds and repeat across records: formatting them once each is most of the cost saved. */
const isoCache = new Map<number, string>();

function iso(ms: number): string {
  let s = isoCache.get(ms);
  if (s === undefined) {
    if (isoCache.size >= 4096) isoCache.clear();
    s = new Date(ms).toISOString().replace(/Z$/, '000000Z');
    isoCache.set(ms, s);
  }
  return s;
}
