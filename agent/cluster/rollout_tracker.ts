import type { Attributes } from '@opentelemetry/api';
import type { KubeObject } from '../kube/types.ts';
import { BoundedState } from './bounded_state.ts';
import { LabelCap } from './cluster_metrics.ts';
import { condition, createdMs, timeMs, type Condition } from './object_time.ts';
import type { EventOccurrence, EventSink } from './observation.ts';
import { spanPoint } from './span_events.ts';
import type { SpanPoint, SpanResult } from './span_export.ts';
import type { TrackerOptions } from './tracker_options.ts';
import type { TraceKey } from './span_ids.ts';

/**
 * Deployment rollouts (span-and-metric-model.md §2.3): a rollout is a new value of the
 * `deployment.kubernetes.io/revision` annotation (a template change or `kubectl rollout undo`; a
 * scale is not one). It ends complete (kubectl rollout status rules, at the Progressing condition's
 * NewReplicaSetAvailable update), at ProgressDeadlineExceeded, superseded by the next revision, or
 * with the deployment's deletion. ScalingReplicaSet events become `replicaset.scale` children.
 */

export interface Deployment extends KubeObject {
  metadata: KubeObject['metadata'] & { generation?: number };
  spec?: { replicas?: number; paused?: boolean; progressDeadlineSeconds?: number; strategy?: { type?: string } };
  status?: { observedGeneration?: number; replicas?: number; updatedReplicas?: number; availableReplicas?: number; conditions?: Condition[] };
}

export interface ReplicaSet extends KubeObject {
  spec?: { replicas?: number };
  status?: { replicas?: number; availableReplicas?: number };
}

interface Scale {
  rs: string;
  from: number;
  to: number;
  startMs: number;
  events: SpanPoint[];
}

interface Rollout {
  revision: string;
  /** undefined until the new ReplicaSet (or the condition naming it) is seen. */
  startMs?: number;
  /** Progressing lastUpdateTime while it said ReplicaSetUpdated/FoundNewReplicaSet: a revived ReplicaSet's start. */
  progressingMs?: number;
  ended: boolean;
  namespace: string;
  name: string;
  strategy?: string;
  events: SpanPoint[];
  scales: Scale[];
}

export interface RolloutTrackerOptions extends TrackerOptions {
  /** Added to progressDeadlineSeconds for the span's own timeout. */
  timeoutGraceMs: number;
}

const REVISION = 'deployment.kubernetes.io/revision';
const MAX_EVENTS = 64;

export function rolloutTraceKey(deploymentUid: string, revision: string): TraceKey {
  return { rootKind: 'Deployment', rootUid: deploymentUid, discriminator: `revision-${revision}` };
}

export class RolloutTracker implements EventSink {
  private readonly o: RolloutTrackerOptions;
  private readonly state = new BoundedState<Rollout>(20_000);
  private readonly namespaces = new LabelCap(200);
  private readonly replicaSets = new Map<string, ReplicaSet>();
  private readonly clock: () => number;

  constructor(o: RolloutTrackerOptions) {
    this.o = o;
    this.clock = o.clock ?? Date.now;
  }

  onReplicaSet(rs: ReplicaSet): void {
    const owner = rs.metadata.ownerReferences?.find((r) => r.kind === 'Deployment');
    if (!owner || !rs.metadata.uid) return;
    this.replicaSets.set(rs.metadata.uid, rs);
    const ro = this.state.get(owner.uid);
    if (ro && !ro.ended) {
      if (ro.startMs === undefined && rs.metadata.annotations?.[REVISION] === ro.revision) ro.startMs = rolloutStart(rs, ro.progressingMs);
      this.endScales(owner.uid, ro, rs, this.clock(), false);
    }
  }

  onReplicaSetDeleted(rs: ReplicaSet): void {
    if (rs.metadata.uid) this.replicaSets.delete(rs.metadata.uid);
  }

  onDeployment(d: Deployment): void {
    const uid = d.metadata.uid;
    const revision = d.metadata.annotations?.[REVISION];
    if (!uid || !revision) return;
    let ro = this.state.get(uid);
    if (ro && ro.revision !== revision) {
      const next = this.startOf(d, revision) ?? progressingStart(d);
      if (!ro.ended) this.end(uid, ro, next ?? this.clock(), 'superseded', 'unset');
      this.state.delete(uid);
      ro = undefined;
    }
    ro ??= this.state.getOrCreate(uid, () => ({
      revision,
      startMs: this.startOf(d, revision),
      ended: false,
      namespace: d.metadata.namespace ?? '',
      name: d.metadata.name ?? '',
      strategy: d.spec?.strategy?.type,
      events: [],
      scales: [],
    }));
    if (ro.ended) return;
    const progressing = condition(d.status, 'Progressing');
    if (progressing && (progressing.reason === 'ReplicaSetUpdated' || progressing.reason === 'FoundNewReplicaSet')) ro.progressingMs ??= timeMs(progressing.lastUpdateTime);
    ro.startMs ??= this.startOf(d, revision, ro);
    if (progressing?.status === 'False' && progressing.reason === 'ProgressDeadlineExceeded') {
      this.end(uid, ro, timeMs(progressing.lastUpdateTime) ?? this.clock(), 'progress_deadline_exceeded', 'error', `ProgressDeadlineExceeded: ${progressing.message ?? ''}`);
    } else if (isComplete(d) && progressing?.reason === 'NewReplicaSetAvailable') {
      this.end(uid, ro, timeMs(progressing.lastUpdateTime) ?? this.clock(), 'complete', 'ok');
    }
  }

  onDeploymentDeleted(d: Deployment): void {
    const uid = d.metadata.uid;
    const ro = uid ? this.state.get(uid) : undefined;
    if (!uid || !ro) return;
    if (!ro.ended) this.end(uid, ro, timeMs(d.metadata.deletionTimestamp) ?? this.clock(), 'deleted', 'unset');
    this.state.delete(uid);
  }

  /** Rollouts open longer than progressDeadlineSeconds + grace end in ERROR (paused ones wait: the controller never times them out). */
  sweep(deployments: Iterable<Deployment>): void {
    const now = this.clock();
    for (const d of deployments) {
      const ro = d.metadata.uid ? this.state.get(d.metadata.uid) : undefined;
      if (!ro || ro.ended || ro.startMs === undefined || d.spec?.paused) continue;
      const limit = ro.startMs + (d.spec?.progressDeadlineSeconds ?? 600) * 1000 + this.o.timeoutGraceMs;
      if (now >= limit) this.end(d.metadata.uid!, ro, limit, 'progress_deadline_exceeded', 'error', 'rollout not complete before its timeout', true);
    }
  }

  onEvent(ev: EventOccurrence): void {
    if (ev.regarding.kind !== 'Deployment' || !ev.regarding.uid) return;
    const ro = this.state.get(ev.regarding.uid);
    if (!ro || ro.ended) return;
    if (ro.events.length < MAX_EVENTS) ro.events.push(spanPoint(ev));
    if (ev.reason !== 'ScalingReplicaSet') return;
    const m = /Scaled (?:up|down) replica set (\S+) (?:from (\d+) )?to (\d+)/.exec(ev.note);
    if (!m) return;
    ro.scales.push({ rs: m[1], from: m[2] === undefined ? NaN : Number(m[2]), to: Number(m[3]), startMs: ev.lastSeenMs, events: [] });
    for (const rs of this.replicaSets.values()) if (rs.metadata.name === m[1] && rs.metadata.namespace === ev.namespace) this.endScales(ev.regarding.uid, ro, rs, this.clock(), false);
  }

  private startOf(d: Deployment, revision: string, ro?: Rollout): number | undefined {
    for (const rs of this.replicaSets.values()) {
      const owned = rs.metadata.ownerReferences?.some((r) => r.uid === d.metadata.uid);
      if (owned && rs.metadata.annotations?.[REVISION] === revision) return rolloutStart(rs, ro?.progressingMs ?? progressingStart(d));
    }
    return undefined;
  }

  /** Scale spans of `rs` that reached their target (or all of them when the rollout ends). */
  private endScales(deploymentUid: string, ro: Rollout, rs: ReplicaSet | undefined, atMs: number, all: boolean): void {
    ro.scales = ro.scales.filter((s) => {
      const reached = rs && s.rs === rs.metadata.name && scaleReached(s, rs);
      if (!all && !reached) return true;
      if (!this.o.spans) return false;
      this.o.spans.emit({
        trace: rolloutTraceKey(deploymentUid, ro.revision),
        name: 'replicaset.scale',
        objectUid: deploymentUid,
        subKey: `${s.rs}/${s.from}/${s.to}/${s.startMs}`,
        parent: { name: 'deployment.rollout', objectUid: deploymentUid },
        startMs: s.startMs,
        endMs: Math.max(atMs, s.startMs),
        result: reached || all ? 'ok' : 'unset',
        attributes: {
          'k8s.namespace.name': ro.namespace,
          'k8s.deployment.name': ro.name,
          'k8s.replicaset.name': s.rs,
          ...(Number.isFinite(s.from) ? { 'kta.scale.from': s.from } : {}),
          'kta.scale.to': s.to,
          'kta.time.source': 'observed',
        },
        component: 'kube-controller-manager',
      });
      return false;
    });
  }

  private end(uid: string, ro: Rollout, endMs: number, result: string, status: SpanResult, message?: string, timedOut = false): void {
    ro.ended = true;
    // ended before the mark of whoever reported before (a restart, a takeover): reported then
    this.o.window.report(`rollout/${uid}/${ro.revision}`, endMs, () => this.report(uid, ro, endMs, result, status, message, timedOut));
  }

  private report(uid: string, ro: Rollout, endMs: number, result: string, status: SpanResult, message: string | undefined, timedOut: boolean): void {
    const start = ro.startMs ?? endMs;
    if (result !== 'deleted') this.o.metrics.rolloutDuration.observe({ result }, (endMs - start) / 1000);
    this.o.metrics.rollouts.inc({ namespace: this.namespaces.value(ro.namespace), result });
    if (!this.o.spans) return;
    this.endScales(uid, ro, undefined, endMs, true);
    const attributes: Attributes = {
      'k8s.namespace.name': ro.namespace,
      'k8s.deployment.name': ro.name,
      'k8s.deployment.uid': uid,
      'kta.revision': ro.revision,
      'kta.result': result,
      ...(ro.strategy ? { 'kta.strategy': ro.strategy } : {}),
      ...(timedOut ? { 'kta.timeout': true } : {}),
      ...(ro.startMs === undefined ? { 'kta.time.source': 'observed' } : {}),
    };
    this.o.spans.emit({
      trace: rolloutTraceKey(uid, ro.revision),
      name: 'deployment.rollout',
      objectUid: uid,
      startMs: start,
      endMs,
      result: status,
      message,
      attributes,
      events: ro.events,
      component: 'kube-controller-manager',
    });
  }
}

/** kubectl rollout status: the controller saw the latest spec and every replica is updated and available. */
function isComplete(d: Deployment): boolean {
  const want = d.spec?.replicas ?? 1;
  const s = d.status ?? {};
  return (
    (s.observedGeneration ?? 0) >= (d.metadata.generation ?? 0) &&
    (s.updatedReplicas ?? 0) >= want &&
    (s.replicas ?? 0) === (s.updatedReplicas ?? 0) &&
    (s.availableReplicas ?? 0) >= (s.updatedReplicas ?? 0)
  );
}

/**
 * A new ReplicaSet's creation; a revived old one (rollback: it carries a revision history) started
 * its rollout when the Progressing condition named it for the new revision.
 */
function rolloutStart(rs: ReplicaSet, progressingMs: number | undefined): number | undefined {
  return rs.metadata.annotations?.['deployment.kubernetes.io/revision-history'] ? progressingMs : createdMs(rs);
}

function progressingStart(d: Deployment): number | undefined {
  const p = condition(d.status, 'Progressing');
  return p && (p.reason === 'ReplicaSetUpdated' || p.reason === 'FoundNewReplicaSet') ? timeMs(p.lastUpdateTime) : undefined;
}

function scaleReached(s: Scale, rs: ReplicaSet): boolean {
  const want = rs.spec?.replicas ?? 0;
  if (want !== s.to) return false;
  return Number.isFinite(s.from) && s.to < s.from ? (rs.status?.replicas ?? 0) <= want : (rs.status?.availableReplicas ?? 0) >= want;
}
