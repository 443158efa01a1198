import { z } from 'zod';
import { clusterSignalsConfig } from '../../cluster/cluster_config.ts';
import { duration, interval } from '../../config/types.ts';

/** Labels a user counter may carry: all bounded (never names, uids or messages). */
export const RULE_LABELS = ['namespace', 'kind', 'reason', 'type', 'component'] as const;

const glob = z.string().min(1);
const metricName = z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, { message: 'expected a Prometheus metric name like rook_osd_failures_total' });

/** One user rule: Events matching all given globs become a counter increment and/or span events. */
export const eventRule = z
  .strictObject({
    /** Glob on the involved object's kind (`CephCluster`), default any. */
    kind: glob.default('*'),
    /** Glob on the reason (`Failed*`), default any. */
    reason: glob.default('*'),
    /** Glob on the (normalised) reporting component (`rook-ceph-*`), default any. */
    component: glob.default('*'),
    /** Glob on `Normal` / `Warning`, default any. */
    type: glob.default('*'),
    counter: z
      .strictObject({
        name: metricName,
        help: z.string().min(1).default('Kubernetes Events matched by a user rule (kubernetes_events rules).'),
        labels: z.array(z.enum(RULE_LABELS)).default([]),
      })
      .optional(),
    /** Hand matching occurrences to the span trackers as span events on the involved object's span. */
    span_event: z.boolean().default(false),
  })
  .refine((r) => r.counter !== undefined || r.span_event, { message: 'a rule needs a counter, span_event: true, or both' });
export type EventRule = z.infer<typeof eventRule>;

export const kubernetesEventsConfig = z.strictObject({
  type: z.literal('kubernetes_events'),
  /**
   * `false`: no Lease and no Event watch; only the trackers that follow this node's pods run
   * (`pod_startup`). For the node agents when a cluster agent does the cluster-scoped work.
   */
  watch_events: z.boolean().default(true),
  /** `auto`: events.k8s.io/v1, falling back to core/v1 when the group is not served (404). */
  api: z.enum(['auto', 'events.k8s.io', 'core']).default('auto'),
  /**
   * Who watches: `true` (DaemonSet) makes one agent at a time do it, the holder of the Lease; `false`
   * is for the single-replica Deployment, which does it unconditionally (never run two of those).
   */
  leader_election: z.boolean().default(true),
  lease_name: z.string().min(1).default('telemetry-agent-cluster'),
  /** Default: the agent's own namespace (POD_NAMESPACE, else the service account's), else `default`. */
  lease_namespace: z.string().min(1).optional(),
  /** Holder identity; default POD_NAME, else the node name. */
  identity: z.string().min(1).optional(),
  lease_duration: duration('15s').default(15_000),
  renew_deadline: duration('10s').default(10_000),
  retry_period: interval('2s').default(2000),
  /** Event uids remembered for counting deltas (LRU); the API keeps about an hour of events. */
  max_tracked_events: z.number().int().min(100).default(100_000),
  /** How long a deleted Event's count is remembered, for a recorder that re-creates it (API event TTL + margin). */
  tombstone_ttl: duration('2h').default(2 * 3600_000),
  /** The API server's `--event-ttl`: an ADDED Event first seen longer ago counts as one new occurrence. */
  event_ttl: duration('1h').default(3600_000),
  checkpoint_interval: interval('1s').default(1000),
  /** Namespaces counted in k8s_events_total (globs; empty: all). Cluster-scoped objects have namespace "". */
  include_namespaces: z.array(glob).default([]),
  exclude_namespaces: z.array(glob).default([]),
  /** Distinct reasons kept per component in k8s_events_total; further ones are counted as `other`. */
  max_reasons_per_component: z.number().int().min(1).default(100),
  /** Distinct components kept; further ones are `other`. */
  max_components: z.number().int().min(1).default(100),
  /** A label set of an event metric not incremented for this long is removed from /metrics. */
  series_ttl: duration('24h').default(24 * 3600_000),
  /** Event log records waiting for the outputs; beyond it they are dropped and counted. */
  max_pending_records: z.number().int().min(1).default(10_000),
  rules: z.array(eventRule).default([]),
  /** Duration metrics and spans from object transitions (agent/cluster/ trackers). */
  signals: clusterSignalsConfig.prefault({}),
}).superRefine((c, ctx) => {
  if (!c.watch_events) {
    const leaderOnly = c.signals.trackers.filter((t) => t !== 'pod_startup');
    if (leaderOnly.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['signals', 'trackers'], message: `${leaderOnly.join(', ')} follow cluster objects and Events, which watch_events: false does not watch; only pod_startup runs without them` });
    }
    if (c.rules.length > 0) ctx.addIssue({ code: 'custom', path: ['rules'], message: 'rules match Events, which watch_events: false does not watch' });
  }
  // client-go's rules: a leader must give up before others may take over, and retry within its deadline
  if (c.renew_deadline >= c.lease_duration) ctx.addIssue({ code: 'custom', path: ['renew_deadline'], message: 'must be shorter than lease_duration' });
  if (c.retry_period >= c.renew_deadline) ctx.addIssue({ code: 'custom', path: ['retry_period'], message: 'must be shorter than renew_deadline' });
});
export type KubernetesEventsConfig = z.infer<typeof kubernetesEventsConfig>;
