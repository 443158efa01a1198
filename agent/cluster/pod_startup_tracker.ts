import type { Attributes } from '@opentelemetry/api';
import type { KubeObject, Pod } from '../kube/types.ts';
import { BoundedState } from './bounded_state.ts';
import { LabelCap } from './cluster_metrics.ts';
import { condition, conditionSince, createdMs, timeMs } from './object_time.ts';
import type { EventOccurrence, EventSink } from './observation.ts';
import { spanPoint } from './span_events.ts';
import { outcomeAttributes, type FinishedSpan, type SpanPoint } from './span_export.ts';
import type { TrackerOptions } from './tracker_options.ts';
import type { TraceKey } from './span_ids.ts';

/**
 * Pod startup on this node (span-and-metric-model.md §2.2), from the node-filtered pod watch:
 * creation -> scheduled -> ready to start containers -> init containers -> containers started ->
 * Ready. When Ready first turns True the whole startup is known from the pod's own timestamps, so
 * the stage histograms and the pod's spans are produced then, once. Also container restarts and
 * disruption conditions of the pods here.
 */

/** The pod as the agent's node-filtered watch keeps it (kube/pod_cache.ts `slimPod`): the same type either way. */
export type { Pod } from '../kube/types.ts';

interface PodState {
  done: boolean;
  failureCounted: boolean;
  /** restartCount per container at the last sighting; from the first sighting for pods older than the agent. */
  restarts: Map<string, number>;
  disruption?: string;
  events: SpanPoint[];
  lastWarning?: string;
}

export interface PodStartupTrackerOptions extends TrackerOptions {
  nodeName: string;
  timeoutMs: number;
  namespaceOnHistograms: boolean;
  maxPods?: number;
}

const MAX_EVENTS_PER_SPAN = 32;
export const POD_STARTUP_DISCRIMINATOR = 'startup';

export function podTraceKey(podUid: string): TraceKey {
  return { rootKind: 'Pod', rootUid: podUid, discriminator: POD_STARTUP_DISCRIMINATOR };
}

export class PodStartupTracker implements EventSink {
  private readonly o: PodStartupTrackerOptions;
  private readonly state: BoundedState<PodState>;
  private readonly namespaces = new LabelCap(200);
  private readonly clock: () => number;

  constructor(o: PodStartupTrackerOptions) {
    this.o = o;
    this.state = new BoundedState(o.maxPods ?? 10_000);
    this.clock = o.clock ?? Date.now;
  }

  get tracked(): number {
    return this.state.size;
  }

  onPod(pod: Pod): void {
    const uid = pod.metadata.uid;
    const created = createdMs(pod);
    if (!uid || created === undefined) return;
    const fresh = this.o.window.observes(created);
    const st = this.state.getOrCreate(uid, () => ({ done: false, failureCounted: !fresh, restarts: baselineRestarts(pod, fresh), events: [] }));
    this.countRestarts(pod, st);
    this.countDisruption(pod, st);
    if (st.done) return;
    const ready = conditionSince(pod.status, 'Ready');
    if (ready !== undefined) {
      st.done = true;
      this.o.window.report(`pod/${uid}`, ready, () => this.startupEnded(pod, st, ready, 'ok'));
      return;
    }
    const failure = startupFailure(pod);
    if (failure && !st.failureCounted) {
      st.failureCounted = true;
      this.o.window.report(`pod-failure/${uid}`, created, () => this.o.metrics.podStartupFailures.inc({ owner_kind: ownerKind(pod), reason: failure }));
    }
    if (pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded') {
      // ran to its end without ever being Ready (a Job's pod, a pod that failed): no startup to measure
      st.done = true;
      const now = this.clock();
      if (pod.status.phase === 'Failed') this.o.window.report(`pod/${uid}`, now, () => this.startupEnded(pod, st, now, 'error', 'pod Failed', 'observed'));
    }
  }

  onPodDeleted(pod: Pod): void {
    const uid = pod.metadata.uid;
    if (!uid) return;
    const st = this.state.get(uid);
    this.state.delete(uid);
    if (!st || st.done) return;
    const end = timeMs(pod.metadata.deletionTimestamp) ?? this.clock();
    this.o.window.report(`pod/${uid}`, end, () => this.startupEnded(pod, st, end, 'error', 'deleted before Ready', pod.metadata.deletionTimestamp ? undefined : 'observed'));
  }

  /** Ends startups past the timeout (at creation + timeout, so every incarnation computes the same end). */
  sweep(pods: Iterable<Pod>): void {
    const now = this.clock();
    for (const pod of pods) {
      const st = pod.metadata.uid ? this.state.get(pod.metadata.uid) : undefined;
      const created = createdMs(pod);
      if (!st || st.done || created === undefined || now < created + this.o.timeoutMs) continue;
      st.done = true;
      const end = created + this.o.timeoutMs;
      const countFailure = !st.failureCounted;
      st.failureCounted = true;
      this.o.window.report(`pod/${pod.metadata.uid}`, end, () => {
        if (countFailure) this.o.metrics.podStartupFailures.inc({ owner_kind: ownerKind(pod), reason: startupFailure(pod) ?? 'Timeout' });
        this.startupEnded(pod, st, end, 'error', st.lastWarning ?? 'not Ready before the startup timeout', undefined, true);
      });
    }
  }

  /** Events about pods on this node become span events of their startup (kept until it ends). */
  onEvent(ev: EventOccurrence): void {
    if (ev.regarding.kind !== 'Pod' || !ev.regarding.uid) return;
    const st = this.state.get(ev.regarding.uid);
    if (!st || st.done) return;
    if (st.events.length < MAX_EVENTS_PER_SPAN) st.events.push(spanPoint(ev));
    if (ev.type === 'Warning') st.lastWarning = `${ev.reason}: ${ev.note}`;
  }

  private countRestarts(pod: Pod, st: PodState): void {
    for (const cs of pod.status?.containerStatuses ?? []) {
      const now = cs.restartCount ?? 0;
      const before = st.restarts.get(cs.name) ?? 0;
      st.restarts.set(cs.name, now);
      if (now > before) {
        this.o.metrics.containerRestarts.inc(
          { namespace: this.namespaces.value(pod.metadata.namespace), reason: restartReason(cs.lastState?.terminated?.reason) },
          now - before,
        );
      }
    }
  }

  private countDisruption(pod: Pod, st: PodState): void {
    const c = condition(pod.status, 'DisruptionTarget');
    if (!c || c.status !== 'True' || !c.reason || st.disruption === c.reason) return;
    st.disruption = c.reason;
    const at = timeMs(c.lastTransitionTime);
    // DeletionByTaintManager is counted by the leader from TaintManagerEviction events (the node is usually down)
    if (c.reason === 'DeletionByTaintManager' || at === undefined) return;
    const reason = (['PreemptionByScheduler', 'EvictionByEvictionAPI', 'DeletionByPodGC', 'TerminationByKubelet'] as const).find((r) => r === c.reason) ?? 'other';
    const namespace = this.namespaces.value(pod.metadata.namespace);
    this.o.window.report(`disruption/${pod.metadata.uid}/${c.reason}`, at, () => this.o.metrics.podDisruptions.inc({ namespace, reason }));
  }

  private startupEnded(pod: Pod, st: PodState, endMs: number, result: 'ok' | 'error', message?: string, timeSource?: 'observed', timedOut = false): void {
    const created = createdMs(pod)!;
    const b = boundaries(pod);
    const ns = this.o.namespaceOnHistograms ? { namespace: this.namespaces.value(pod.metadata.namespace) } : {};
    if (result === 'ok') {
      this.o.metrics.podStartup.observe({ owner_kind: ownerKind(pod), ...ns }, (endMs - created) / 1000);
      const stage = (name: string, from: number | undefined, to: number | undefined) => {
        if (from !== undefined && to !== undefined && to >= from) this.o.metrics.podStartupStage.observe({ stage: name, ...ns }, (to - from) / 1000);
      };
      stage('scheduling', created, b.scheduled);
      stage('prepare', b.scheduled, b.prepared);
      stage('init_containers', b.prepared, b.initEnd);
      stage('container_start', b.initEnd ?? b.prepared, b.lastStarted);
      stage('readiness', b.lastStarted, endMs);
    }
    if (this.o.spans) this.emitSpans(pod, st, b, created, endMs, result, message, timeSource, timedOut);
  }

  private emitSpans(pod: Pod, st: PodState, b: Boundaries, created: number, endMs: number, result: 'ok' | 'error', message: string | undefined, timeSource: 'observed' | undefined, timedOut: boolean): void {
    const spans = this.o.spans!;
    const uid = pod.metadata.uid!;
    const trace = podTraceKey(uid);
    const base: Attributes = {
      'k8s.namespace.name': pod.metadata.namespace,
      'k8s.pod.name': pod.metadata.name,
      'k8s.pod.uid': uid,
      'k8s.node.name': pod.spec?.nodeName ?? this.o.nodeName,
      ...ownerAttributes(pod),
    };
    const root = { name: 'pod.startup', objectUid: uid };
    const child = (name: string, startMs: number | undefined, end: number | undefined, extra: Attributes = {}, subKey?: string, component = 'kubelet'): void => {
      if (startMs === undefined || end === undefined || end < startMs) return;
      const s: FinishedSpan = {
        trace,
        name,
        objectUid: uid,
        subKey,
        parent: root,
        startMs,
        endMs: end,
        result: 'ok',
        attributes: { ...base, ...extra },
        component,
        nodeName: component === 'kubelet' ? this.o.nodeName : undefined,
        events: within(st.events, startMs, end),
      };
      spans.emit(s);
    };
    child('pod.schedule', created, b.scheduled, {}, undefined, 'kube-scheduler');
    child('pod.prepare', b.scheduled, b.prepared);
    let prev = b.prepared;
    for (const ic of pod.status?.initContainerStatuses ?? []) {
      const end = timeMs(ic.state?.terminated?.finishedAt);
      child('container.init', prev, end, { 'k8s.container.name': ic.name }, ic.name);
      if (end !== undefined) prev = end;
    }
    for (const cs of pod.status?.containerStatuses ?? []) {
      const started = timeMs(cs.state?.running?.startedAt);
      child('container.start', b.initEnd ?? b.prepared, started, { 'k8s.container.name': cs.name, 'k8s.container.restart_count': cs.restartCount ?? 0 }, cs.name);
    }
    if (result === 'ok') child('pod.readiness', b.lastStarted, endMs);
    spans.emit({
      trace,
      ...root,
      startMs: created,
      endMs,
      result,
      message,
      attributes: { ...base, ...outcomeAttributes(result === 'ok' ? 'ready' : 'failed', timedOut, timeSource) },
      events: st.events,
      component: 'kubelet',
      nodeName: this.o.nodeName,
    });
  }
}

interface Boundaries {
  scheduled?: number;
  prepared?: number;
  initEnd?: number;
  lastStarted?: number;
}

function boundaries(pod: Pod): Boundaries {
  const scheduled = conditionSince(pod.status, 'PodScheduled');
  // PodReadyToStartContainers (1.29+); older kubelets: Initialized when there are no init containers
  const prepared = conditionSince(pod.status, 'PodReadyToStartContainers') ?? (pod.spec?.initContainers?.length ? undefined : conditionSince(pod.status, 'Initialized'));
  const initEnds = (pod.status?.initContainerStatuses ?? []).map((c) => timeMs(c.state?.terminated?.finishedAt));
  const initEnd = initEnds.length > 0 && initEnds.every((t) => t !== undefined) ? Math.max(...(initEnds as number[])) : undefined;
  const starts = (pod.status?.containerStatuses ?? []).map((c) => timeMs(c.state?.running?.startedAt));
  const lastStarted = starts.length > 0 && starts.every((t) => t !== undefined) ? Math.max(...(starts as number[])) : undefined;
  return { scheduled, prepared, initEnd, lastStarted };
}

/** Events of a stage: after its start, up to and including its end (an event at a boundary ends the stage before). */
function within(events: SpanPoint[], from: number, to: number): SpanPoint[] {
  return events.filter((e) => e.timeMs > from && e.timeMs <= to);
}

function baselineRestarts(pod: Pod, fresh: boolean): Map<string, number> {
  // a pod older than the agent: restarts up to now were counted by whoever ran before
  return new Map((pod.status?.containerStatuses ?? []).map((c) => [c.name, fresh ? 0 : (c.restartCount ?? 0)]));
}

/** The bounded owner kind of a pod: a ReplicaSet's pods count as the Deployment's. */
export function ownerKind(pod: KubeObject): string {
  const owner = pod.metadata.ownerReferences?.find((r) => r.controller) ?? pod.metadata.ownerReferences?.[0];
  if (!owner) return 'none';
  if (owner.kind === 'ReplicaSet') return 'Deployment';
  return ['StatefulSet', 'DaemonSet', 'Job', 'Node'].includes(owner.kind) ? owner.kind : 'other';
}

function ownerAttributes(pod: KubeObject): Attributes {
  const owner = pod.metadata.ownerReferences?.find((r) => r.controller);
  const key = owner && { ReplicaSet: 'replicaset', StatefulSet: 'statefulset', DaemonSet: 'daemonset', Job: 'job' }[owner.kind];
  return owner && key ? { [`k8s.${key}.name`]: owner.name, [`k8s.${key}.uid`]: owner.uid } : {};
}

/** Why a startup is failing, from the containers' waiting reasons (first match wins). */
export function startupFailure(pod: Pod): string | undefined {
  for (const cs of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
    switch (cs.state?.waiting?.reason) {
      case 'ErrImagePull':
      case 'ImagePullBackOff':
      case 'InvalidImageName':
      case 'ErrImageNeverPull':
        return 'ImagePull';
      case 'CrashLoopBackOff':
        return 'CrashLoop';
      case 'CreateContainerConfigError':
        return 'CreateContainerConfigError';
      case 'CreateContainerError':
      case 'RunContainerError':
        return 'Other';
    }
  }
  return undefined;
}

function restartReason(r: string | undefined): string {
  return r && ['OOMKilled', 'Error', 'Completed', 'ContainerCannotRun', 'StartError'].includes(r) ? r : 'Other';
}
