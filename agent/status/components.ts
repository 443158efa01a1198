import type { BufferStats } from '../buffers/buffer.ts';
import type { SelfMetrics } from '../metrics.ts';
import type { OutputHealth } from '../output_runner.ts';
import type { ComponentKind } from '../tap.ts';

/**
 * What `GET /components` answers, and what the status page and `telemetry-agent top` draw: every
 * component of the running pipeline as a graph (each names its inputs) with cumulative counts,
 * readiness, buffer fill and tail lag. Counts are cumulative, like Prometheus counters: a reader
 * takes two snapshots and divides the difference by the time between them for a rate.
 */

export interface ComponentNode {
  name: string;
  kind: ComponentKind;
  /** The plugin type: `container_logs`, `filter`, `loki`. */
  type: string;
  /** Components it reads from (sources have none). */
  inputs: readonly string[];
}

export interface BufferStatus {
  type: string;
  bytes: number;
  records: number;
  maxBytes: number;
  /** 0 when empty. */
  oldestAgeSeconds: number;
}

export interface ComponentStatus extends ComponentNode {
  ready: boolean;
  notReadyReason?: string;
  /** Records a source produced, a transform passed on (a record sent to two routes counts twice), an output had accepted (sent). */
  records: number;
  /** Bytes a source read, an output sent. */
  bytes: number;
  /** Source: parse, file and checkpoint errors. Transform: expressions that failed at run time. Output: failed attempts (retries) and records refused for good. */
  errors: number;
  /** dropped_records_total of the component, every reason. */
  dropped: number;
  /** Sources that tail files. */
  tailLagBytes?: number;
  files?: number;
  buffer?: BufferStatus;
  /** Outputs. */
  lastSuccessSeconds?: number;
  failingSinceSeconds?: number;
  lastError?: string;
  /** Taps open on it now. */
  listeners: number;
}

export interface StatusSnapshot {
  /** Epoch ms the snapshot was taken (the divisor of rates). */
  time: number;
  node: string;
  version: string;
  ready: boolean;
  components: ComponentStatus[];
  /** Spans kept for the status page (0 when no cluster signals run). */
  spans: number;
}

/** What the running agent tells the snapshot about itself. */
export interface PipelineView {
  readonly nodeName: string;
  readonly version: string;
  components(): ComponentNode[];
  readiness(kind: ComponentKind, name: string): { ready: boolean; reason?: string };
  buffer(output: string): { stats: BufferStats; type: string; maxBytes: number } | undefined;
  outputHealth(output: string): OutputHealth | undefined;
  listeners(kind: ComponentKind, name: string): number;
  spans(): number;
  ready(): boolean;
}

type Values = { labels: Record<string, string | number>; value: number }[];

async function values(metrics: SelfMetrics, name: string): Promise<Values> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) return [];
  return (await metric.get()).values as Values;
}

function sum(vals: Values, match: Record<string, string>): number {
  let total = 0;
  for (const v of vals) {
    let ok = true;
    for (const [k, want] of Object.entries(match)) if (v.labels[k] !== want) ok = false;
    if (ok) total += v.value;
  }
  return total;
}

export async function snapshot(view: PipelineView, metrics: SelfMetrics): Promise<StatusSnapshot> {
  const [srcRecords, srcBytes, parseErrors, fileErrors, checkpointErrors, lag, files, outRecords, outBytes, retries, dropped, tRecords, tErrors] = await Promise.all(
    [
      'telemetry_agent_source_records_total',
      'telemetry_agent_source_bytes_total',
      'telemetry_agent_parse_errors_total',
      'telemetry_agent_file_errors_total',
      'telemetry_agent_checkpoint_errors_total',
      'telemetry_agent_tail_lag_bytes',
      'telemetry_agent_files_tailed',
      'telemetry_agent_output_records_total',
      'telemetry_agent_output_bytes_total',
      'telemetry_agent_output_retries_total',
      'telemetry_agent_dropped_records_total',
      'telemetry_agent_transform_records_total',
      'telemetry_agent_transform_errors_total',
    ].map((n) => values(metrics, n)),
  );
  const components: ComponentStatus[] = [];
  for (const node of view.components()) {
    const { ready, reason } = view.readiness(node.kind, node.name);
    const c: ComponentStatus = {
      ...node,
      inputs: [...node.inputs],
      ready,
      ...(reason ? { notReadyReason: reason } : {}),
      records: 0,
      bytes: 0,
      errors: 0,
      dropped: sum(dropped!, { component: node.name }),
      listeners: view.listeners(node.kind, node.name),
    };
    if (node.kind === 'source') {
      const s = { source: node.name };
      c.records = sum(srcRecords!, s);
      c.bytes = sum(srcBytes!, s);
      c.errors = sum(parseErrors!, s) + sum(fileErrors!, s) + sum(checkpointErrors!, s);
      if (files!.some((v) => v.labels.source === node.name)) {
        c.files = sum(files!, s);
        c.tailLagBytes = sum(lag!, s);
      }
    } else if (node.kind === 'transform') {
      c.records = sum(tRecords!, { transform: node.name, direction: 'out' });
      c.errors = sum(tErrors!, { transform: node.name });
    } else if (node.kind === 'output') {
      const o = { output: node.name };
      c.records = sum(outRecords!, { ...o, status: 'sent' });
      c.bytes = sum(outBytes!, o);
      c.errors = sum(retries!, o) + sum(outRecords!, { ...o, status: 'failed' });
      const b = view.buffer(node.name);
      if (b) {
        c.buffer = {
          type: b.type,
          bytes: b.stats.bytes,
          records: b.stats.records,
          maxBytes: b.maxBytes,
          oldestAgeSeconds: b.stats.oldestMs === undefined ? 0 : Math.max(0, Date.now() - b.stats.oldestMs) / 1000,
        };
      }
      const h = view.outputHealth(node.name);
      if (h?.lastSuccessMs !== undefined) c.lastSuccessSeconds = h.lastSuccessMs / 1000;
      if (h?.failingSince !== undefined) {
        c.failingSinceSeconds = h.failingSince / 1000;
        c.lastError = h.lastError;
      }
    }
    components.push(c);
  }
  return { time: Date.now(), node: view.nodeName, version: view.version, ready: view.ready(), components, spans: view.spans() };
}

/** Records per second between two snapshots of one component (0 when it was not in the earlier one). */
export function rate(prev: StatusSnapshot | undefined, next: StatusSnapshot, kind: ComponentKind, name: string, field: 'records' | 'bytes' | 'errors' | 'dropped'): number {
  if (!prev) return 0;
  const a = prev.components.find((c) => c.kind === kind && c.name === name);
  const b = next.components.find((c) => c.kind === kind && c.name === name);
  const dt = (next.time - prev.time) / 1000;
  if (!a || !b || dt <= 0) return 0;
  return Math.max(0, b[field] - a[field]) / dt;
}
