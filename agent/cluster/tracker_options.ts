import type { ClusterMetrics } from './cluster_metrics.ts';
import type { SpanExport } from './span_export.ts';

/** What every tracker is given. */
export interface TrackerOptions {
  metrics: ClusterMetrics;
  /** Absent: spans are off (metrics only). */
  spans?: SpanExport;
  /** The agent's start: transitions that ended before it are not observed again (object_time.ts ObservationWindow). */
  startedAtMs: number;
  /** The time used for timeouts and for ends no object records; default Date.now. */
  clock?: () => number;
}
