import type { ClusterMetrics } from './cluster_metrics.ts';
import type { ReportWindow } from './report_window.ts';
import type { SpanExport } from './span_export.ts';

/** What every tracker is given. */
export interface TrackerOptions {
  metrics: ClusterMetrics;
  /** Absent: spans are off (metrics only). */
  spans?: SpanExport;
  /** Which transitions are this agent's to report, and when reports become visible (report_window.ts). */
  window: ReportWindow;
  /** The time used for timeouts and for ends no object records; default Date.now. */
  clock?: () => number;
}
