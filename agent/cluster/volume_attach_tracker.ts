import type { KubeObject } from '../kube/types.ts';
import { BoundedState } from './bounded_state.ts';
import { LabelCap } from './cluster_metrics.ts';
import { createdMs, timeMs } from './object_time.ts';
import type { EventOccurrence, EventSink } from './observation.ts';
import { spanPoint } from './span_events.ts';
import { EVENT_MESSAGE_BYTES, outcomeAttributes, truncateUtf8, type SpanPoint } from './span_export.ts';
import type { TrackerOptions } from './tracker_options.ts';
import type { TraceKey } from './span_ids.ts';

/**
 * CSI volume attach (span-and-metric-model.md §2.5): VolumeAttachment creation -> `status.attached`.
 * The status carries no time, so the end is the earliest SuccessfulAttachVolume event for that PV,
 * else the observation. Each distinct `attachError.time` counts one failure.
 */

export interface VolumeAttachment extends KubeObject {
  spec?: { attacher?: string; nodeName?: string; source?: { persistentVolumeName?: string } };
  status?: { attached?: boolean; attachError?: { time?: string; message?: string } };
}

interface Attach {
  driver: string;
  node: string;
  pv: string;
  createdMs: number;
  done: boolean;
  seenDetached: boolean;
  errorTimes: Set<string>;
  events: SpanPoint[];
  lastError?: string;
}

export interface VolumeAttachTrackerOptions extends TrackerOptions {
  timeoutMs: number;
}

const MAX_EVENTS = 64;

export function attachTraceKey(vaUid: string): TraceKey {
  return { rootKind: 'VolumeAttachment', rootUid: vaUid, discriminator: 'attach' };
}

export class VolumeAttachTracker implements EventSink {
  private readonly o: VolumeAttachTrackerOptions;
  private readonly attaches = new BoundedState<Attach>(20_000);
  /** Earliest SuccessfulAttachVolume per PV name (the event names the volume, not the attachment). */
  private readonly attachedAt = new BoundedState<number>(20_000);
  private readonly drivers = new LabelCap(50);
  private readonly clock: () => number;

  constructor(o: VolumeAttachTrackerOptions) {
    this.o = o;
    this.clock = o.clock ?? Date.now;
  }

  onAttachment(va: VolumeAttachment): void {
    const uid = va.metadata.uid;
    const created = createdMs(va);
    if (!uid || created === undefined) return;
    const a = this.attaches.getOrCreate(uid, () => ({
      driver: va.spec?.attacher ?? 'unknown',
      node: va.spec?.nodeName ?? '',
      pv: va.spec?.source?.persistentVolumeName ?? '',
      createdMs: created,
      done: false,
      seenDetached: false,
      errorTimes: new Set(),
      events: [],
    }));
    const err = va.status?.attachError;
    if (err?.time && !a.errorTimes.has(err.time)) {
      a.errorTimes.add(err.time);
      const at = timeMs(err.time);
      if (at !== undefined && this.o.window.observes(at)) {
        const driver = this.drivers.value(a.driver);
        this.o.window.report(`attach-error/${uid}/${err.time}`, at, () => this.o.metrics.volumeAttachFailures.inc({ driver }));
        if (a.events.length < MAX_EVENTS) a.events.push({ name: 'AttachError', timeMs: at, attributes: { 'kta.event.message': truncateUtf8(err.message ?? '', EVENT_MESSAGE_BYTES) } });
      }
      a.lastError = `AttachError: ${err.message ?? ''}`;
    }
    if (a.done) return;
    if (!va.status?.attached) {
      a.seenDetached = true;
      return;
    }
    a.done = true;
    const eventTime = this.attachedAt.get(a.pv);
    // no time in the status: an attachment already attached when first seen was reported before
    if (eventTime === undefined && !a.seenDetached) return;
    const end = eventTime ?? this.clock();
    const driver = this.drivers.value(a.driver);
    this.o.window.report(`attach/${uid}`, end, () => {
      this.o.metrics.volumeAttach.observe({ driver }, Math.max(0, end - a.createdMs) / 1000);
      this.emit(uid, a, end, 'ok', undefined, eventTime === undefined);
    });
  }

  onAttachmentDeleted(va: VolumeAttachment): void {
    const uid = va.metadata.uid;
    const a = uid ? this.attaches.get(uid) : undefined;
    if (!uid || !a) return;
    this.attaches.delete(uid);
    const end = timeMs(va.metadata.deletionTimestamp) ?? this.clock();
    if (!a.done) this.o.window.report(`attach/${uid}`, end, () => this.emit(uid, a, end, 'error', a.lastError ?? 'deleted before attached', false));
  }

  sweep(): void {
    const now = this.clock();
    for (const [uid, a] of this.attaches.entries()) {
      if (a.done || now < a.createdMs + this.o.timeoutMs) continue;
      a.done = true;
      const end = a.createdMs + this.o.timeoutMs;
      this.o.window.report(`attach/${uid}`, end, () => this.emit(uid, a, end, 'error', a.lastError ?? 'not attached before the timeout', false, true));
    }
  }

  onEvent(ev: EventOccurrence): void {
    if (ev.regarding.kind !== 'Pod') return;
    if (ev.reason !== 'SuccessfulAttachVolume' && ev.reason !== 'FailedAttachVolume') return;
    const pv = /volume "([^"]+)"/.exec(ev.note)?.[1];
    if (!pv) return;
    if (ev.reason === 'SuccessfulAttachVolume') {
      const prev = this.attachedAt.get(pv);
      if (prev === undefined || ev.lastSeenMs < prev) this.attachedAt.set(pv, ev.lastSeenMs);
    }
    for (const [, a] of this.attaches.entries()) if (a.pv === pv && !a.done && a.events.length < MAX_EVENTS) a.events.push(spanPoint(ev));
  }

  private emit(uid: string, a: Attach, endMs: number, result: 'ok' | 'error', message: string | undefined, observed: boolean, timedOut = false): void {
    this.o.spans?.emit({
      trace: attachTraceKey(uid),
      name: 'volume.attach',
      objectUid: uid,
      startMs: a.createdMs,
      endMs,
      result,
      message,
      attributes: {
        'k8s.persistentvolume.name': a.pv,
        'k8s.node.name': a.node,
        'container.csi.plugin.name': a.driver,
        ...outcomeAttributes(result === 'ok' ? 'attached' : 'failed', timedOut, observed ? 'observed' : undefined),
      },
      events: a.events,
      component: a.driver,
    });
  }
}
