import type { EventOccurrence } from './observation.ts';
import { EVENT_MESSAGE_BYTES, truncateUtf8, type SpanPoint } from './span_export.ts';

/** An Event occurrence as a span event (span-and-metric-model.md §2.1): name = reason, time = last seen. */
export function spanPoint(ev: EventOccurrence): SpanPoint {
  return {
    name: ev.reason,
    timeMs: ev.lastSeenMs,
    attributes: {
      'k8s.event.reason': ev.reason,
      'k8s.event.count': ev.occurrences,
      'k8s.event.uid': ev.uid,
      'kta.event.type': ev.type,
      'kta.event.component': ev.component,
      'kta.event.message': truncateUtf8(ev.note, EVENT_MESSAGE_BYTES),
    },
  };
}
