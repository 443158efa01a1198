import type { KubeObject } from '../kube/types.ts';
import { BoundedState } from './bounded_state.ts';
import { condition, timeMs, type Condition } from './object_time.ts';
import type { EventOccurrence, EventSink } from './observation.ts';
import { spanPoint } from './span_events.ts';
import type { SpanPoint } from './span_export.ts';
import type { TrackerOptions } from './tracker_options.ts';
import type { TraceKey } from './span_ids.ts';

/**
 * Node failures (span-and-metric-model.md §2.6): one trace per (node uid, time Ready left True).
 * `node.not_ready` spans the outage; each TaintManagerEviction of a pod on the node is a
 * `pod.eviction` child, exported when the eviction is seen (so a leader that changes mid-outage
 * neither repeats nor loses the ones before it).
 */

export interface Node extends KubeObject {
  status?: { conditions?: Condition[] };
}

interface Outage {
  name: string;
  sinceMs: number;
  events: SpanPoint[];
}

export interface NodeReadinessTrackerOptions extends TrackerOptions {
  /** Which node a pod runs on (the eviction event does not say); the leader asks the API. */
  podNode?: (namespace: string, name: string) => Promise<string | undefined>;
}

const MAX_EVENTS = 128;

export function nodeTraceKey(nodeUid: string, sinceMs: number): TraceKey {
  return { rootKind: 'Node', rootUid: nodeUid, discriminator: `not-ready-${new Date(sinceMs).toISOString()}` };
}

export class NodeReadinessTracker implements EventSink {
  private readonly o: NodeReadinessTrackerOptions;
  private readonly outages = new BoundedState<Outage>(5_000);
  /** node name -> uid, for events that name the node. */
  private readonly uids = new Map<string, string>();

  constructor(o: NodeReadinessTrackerOptions) {
    this.o = o;
  }

  onNode(node: Node): void {
    const uid = node.metadata.uid;
    const name = node.metadata.name ?? '';
    if (!uid) return;
    this.uids.set(name, uid);
    const ready = condition(node.status, 'Ready');
    const since = timeMs(ready?.lastTransitionTime);
    if (!ready || since === undefined) return;
    let outage = this.outages.get(uid);
    if (ready.status !== 'True') {
      if (!outage || outage.sinceMs !== since) this.outages.set(uid, { name, sinceMs: since, events: outage?.sinceMs === since ? outage.events : [] });
      this.o.window.opened(`node/${uid}`, since);
      return;
    }
    if (!outage) {
      // Ready, and no outage seen here: the previous reporter may have handed one over that ended meanwhile
      const handed = this.o.window.openedBefore(`node/${uid}`);
      if (handed === undefined || handed > since) return;
      outage = { name, sinceMs: handed, events: [] };
    }
    this.outages.delete(uid);
    this.o.window.closed(`node/${uid}`);
    this.o.window.report(`node/${uid}/${outage.sinceMs}`, since, () => this.ready(uid, name, outage, since));
  }

  private ready(uid: string, name: string, outage: Outage, since: number): void {
    this.o.metrics.nodeNotReady.observe(Math.max(0, since - outage.sinceMs) / 1000);
    this.o.spans?.emit({
      trace: nodeTraceKey(uid, outage.sinceMs),
      name: 'node.not_ready',
      objectUid: uid,
      startMs: outage.sinceMs,
      endMs: since,
      result: 'ok',
      attributes: { 'k8s.node.name': name, 'k8s.node.uid': uid, 'kta.result': 'ready' },
      events: outage.events,
      component: 'kube-controller-manager',
    });
  }

  onNodeDeleted(node: Node): void {
    const uid = node.metadata.uid;
    const outage = uid ? this.outages.get(uid) : undefined;
    if (uid) this.o.window.closed(`node/${uid}`);
    if (!uid || !outage) return;
    this.outages.delete(uid);
    this.uids.delete(node.metadata.name ?? '');
    const end = timeMs(node.metadata.deletionTimestamp) ?? Date.now();
    this.o.window.report(`node/${uid}/${outage.sinceMs}`, end, () => this.o.spans?.emit({
      trace: nodeTraceKey(uid, outage.sinceMs),
      name: 'node.not_ready',
      objectUid: uid,
      startMs: outage.sinceMs,
      endMs: end,
      result: 'error',
      message: 'node deleted while not Ready',
      attributes: { 'k8s.node.name': outage.name, 'k8s.node.uid': uid, 'kta.result': 'deleted' },
      events: outage.events,
      component: 'kube-controller-manager',
    }));
  }

  onEvent(ev: EventOccurrence): void {
    if (ev.regarding.kind === 'Node') {
      const uid = this.uids.get(ev.regarding.name);
      const outage = uid ? this.outages.get(uid) : undefined;
      if (outage && outage.events.length < MAX_EVENTS) outage.events.push(spanPoint(ev));
      return;
    }
    if (ev.regarding.kind === 'Pod' && ev.reason === 'TaintManagerEviction' && /^Marking for deletion/.test(ev.note)) {
      void this.eviction(ev);
    }
  }

  private async eviction(ev: EventOccurrence): Promise<void> {
    const nodeName = await this.nodeOf(ev).catch(() => undefined);
    const uid = nodeName ? this.uids.get(nodeName) : undefined;
    const outage = uid ? this.outages.get(uid) : undefined;
    if (!uid || !outage) return;
    const attrs = { 'k8s.namespace.name': ev.namespace, 'k8s.pod.name': ev.regarding.name, 'k8s.node.name': outage.name, 'kta.time.source': 'event' };
    if (outage.events.length < MAX_EVENTS) outage.events.push(spanPoint(ev));
    this.o.spans?.emit({
      trace: nodeTraceKey(uid, outage.sinceMs),
      name: 'pod.eviction',
      objectUid: uid,
      subKey: `${ev.namespace}/${ev.regarding.name}`,
      parent: { name: 'node.not_ready', objectUid: uid },
      startMs: ev.firstSeenMs,
      endMs: ev.lastSeenMs,
      result: 'ok',
      attributes: attrs,
      events: [spanPoint(ev)],
      component: 'taint-eviction-controller',
    });
  }

  private async nodeOf(ev: EventOccurrence): Promise<string | undefined> {
    // one node out: the pods evicted now are its pods (the common case, no API call)
    const down = [...this.outages.entries()];
    if (down.length === 1) return down[0][1].name;
    return this.o.podNode?.(ev.namespace, ev.regarding.name);
  }
}
