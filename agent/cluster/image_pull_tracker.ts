import { BoundedState } from './bounded_state.ts';
import type { EventOccurrence, EventSink } from './observation.ts';
import { podTraceKey } from './pod_startup_tracker.ts';
import { spanPoint } from './span_events.ts';
import type { SpanExport, SpanPoint } from './span_export.ts';

/**
 * `container.image_pull` spans from the kubelet's Pulling / Pulled / Failed / BackOff events
 * (span-and-metric-model.md §2.2), children of the pod's `pod.startup` (computed from the pod uid:
 * the node agent that emits the parent needs no word with this leader-side tracker).
 */

interface Pull {
  podUid: string;
  namespace: string;
  pod: string;
  container: string;
  image: string;
  startMs: number;
  events: SpanPoint[];
  lastWarning?: string;
}

export interface ImagePullTrackerOptions {
  spans: SpanExport;
  timeoutMs: number;
  clock?: () => number;
}

const MAX_EVENTS = 32;

export class ImagePullTracker implements EventSink {
  private readonly o: ImagePullTrackerOptions;
  private readonly pulls = new BoundedState<Pull>(10_000);
  private readonly clock: () => number;

  constructor(o: ImagePullTrackerOptions) {
    this.o = o;
    this.clock = o.clock ?? Date.now;
  }

  onEvent(ev: EventOccurrence): void {
    const r = ev.regarding;
    if (r.kind !== 'Pod' || !r.uid || ev.component !== 'kubelet') return;
    const container = containerOf(r.fieldPath);
    if (!container) return;
    const key = `${r.uid}/${container}`;
    if (ev.reason === 'Pulling') {
      const image = /Pulling image "([^"]*)"/.exec(ev.note)?.[1] ?? '';
      this.pulls.getOrCreate(key, () => ({ podUid: r.uid!, namespace: ev.namespace, pod: r.name, container, image, startMs: ev.lastSeenMs, events: [] }));
      return;
    }
    const pull = this.pulls.get(key);
    if (!pull) return;
    if (ev.reason === 'Pulled') {
      this.pulls.delete(key);
      if (/already present/.test(ev.note)) return; // no pull happened: no span
      const seconds = pullSeconds(ev.note);
      this.emit(pull, seconds === undefined ? ev.lastSeenMs : pull.startMs + seconds * 1000, 'ok');
    } else if (ev.reason === 'Failed' || ev.reason === 'BackOff' || ev.reason === 'ErrImageNeverPull') {
      if (pull.events.length < MAX_EVENTS) pull.events.push(spanPoint(ev));
      if (ev.type === 'Warning') pull.lastWarning = `${ev.reason}: ${ev.note}`;
    }
  }

  /** Pulls that never succeeded end at their start + the timeout, in ERROR. */
  sweep(): void {
    const now = this.clock();
    for (const [key, pull] of [...this.pulls.entries()]) {
      if (now < pull.startMs + this.o.timeoutMs) continue;
      this.pulls.delete(key);
      this.emit(pull, pull.startMs + this.o.timeoutMs, 'error', true);
    }
  }

  private emit(pull: Pull, endMs: number, result: 'ok' | 'error', timedOut = false): void {
    this.o.spans.emit({
      trace: podTraceKey(pull.podUid),
      name: 'container.image_pull',
      objectUid: pull.podUid,
      subKey: pull.container,
      parent: { name: 'pod.startup', objectUid: pull.podUid },
      startMs: pull.startMs,
      endMs,
      result,
      message: pull.lastWarning ?? (timedOut ? 'image not pulled before the timeout' : undefined),
      attributes: {
        'k8s.namespace.name': pull.namespace,
        'k8s.pod.name': pull.pod,
        'k8s.pod.uid': pull.podUid,
        'k8s.container.name': pull.container,
        'container.image.name': pull.image.replace(/[:@][^/]*$/, ''),
        ...(timedOut ? { 'kta.timeout': true } : {}),
      },
      events: pull.events,
      component: 'kubelet',
    });
  }
}

/** `spec.containers{app}` -> `app`. */
function containerOf(fieldPath: string | undefined): string | undefined {
  return fieldPath ? /\{([^}]+)\}/.exec(fieldPath)?.[1] : undefined;
}

/** The first Go duration of `Successfully pulled image "x" in 1.234s (…)`, in seconds. */
export function pullSeconds(message: string): number | undefined {
  const m = / in ((?:\d+(?:\.\d+)?(?:h|ms|m|s|µs|us|ns))+)/.exec(message);
  if (!m) return undefined;
  let total = 0;
  for (const part of m[1].matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|µs|us|ns)/g)) {
    const unit = { h: 3600, m: 60, s: 1, ms: 1e-3, µs: 1e-6, us: 1e-6, ns: 1e-9 }[part[2] as 'h'];
    total += Number(part[1]) * unit;
  }
  return total;
}
