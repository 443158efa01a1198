/**
 * The seam between the cluster watch (Events counted without double counting, leader election;
 * agent/sources/kubernetes_events/) and what is derived from it (metrics, log records, user
 * rules, span trackers in agent/cluster/). Watchers produce these; consumers never talk to the API.
 */

export interface ObjectRef {
  readonly kind: string;
  readonly apiVersion?: string;
  readonly namespace?: string;
  readonly name: string;
  readonly uid?: string;
  readonly fieldPath?: string;
}

/**
 * New occurrences of one Event: the delta of its count or series since the agent last saw it
 * (kubernetes-events.md §4), so a MODIFIED, a relist, a restart or a new leader never counts twice.
 * History from before the agent started is never delivered as an occurrence.
 */
export interface EventOccurrence {
  /** The Event object's uid. */
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly reason: string;
  /** `Normal` or `Warning` as the Event says (clamping for labels is the consumer's business). */
  readonly type: string;
  /** `note` (events.k8s.io) or `message` (core/v1). */
  readonly note: string;
  /** reportingController, else source.component (e.g. `kubelet`, `default-scheduler`). */
  readonly component: string;
  /** reportingInstance, else source.host. */
  readonly instance?: string;
  readonly action?: string;
  readonly regarding: ObjectRef;
  readonly related?: ObjectRef;
  /** New occurrences this delivery stands for, at least 1. */
  readonly delta: number;
  /** Occurrences the Event object counts in all (count, series.count, or 1). */
  readonly occurrences: number;
  /** Epoch ms of the first and of the latest occurrence (eventTime / series.lastObservedTime / lastTimestamp / firstTimestamp). */
  readonly firstSeenMs: number;
  readonly lastSeenMs: number;
}

export interface EventSink {
  onEvent(occurrence: EventOccurrence): void;
}

/** Who does cluster-scoped work: the holder of the coordination.k8s.io Lease. */
export interface Leadership {
  readonly isLeader: boolean;
  /** Called with true when this agent starts leading, false when it stops; returns an unsubscribe. */
  onChange(listener: (leading: boolean) => void): () => void;
}

/**
 * Leader-only work (span trackers watching Deployments, PVCs, VolumeAttachments, Nodes): started when
 * this agent becomes the Lease holder, stopped when it loses the Lease or shuts down.
 */
export interface ClusterWorker {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** An occurrence a user rule (`rules[].span_event: true`) marked for span trackers to attach as a span event. */
export interface SpanEventSink {
  onSpanEvent(occurrence: EventOccurrence): void;
}
