import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Reasons an output's records are dropped, pre-created per output (see declareOutput). */
const DROP_REASONS = {
  output: ['buffer_full', 'undeliverable', 'rejected_by_receiver'],
  disk: ['volume_full'],
} as const;

/** Why the HTTP server closed a connection itself (agent/server.ts). */
export const SERVER_CLOSE_REASONS = ['max_connections', 'timeout', 'bad_request', 'request_body'] as const;

const STATE_KINDS = new Set(['checkpoints', 'buffers', 'dead_letter']);

/** Bytes of the files under `dir`, by its top-level folder (a few dozen files: cheap at scrape time). */
function stateBytes(dir: string): Record<string, number> {
  const out: Record<string, number> = { checkpoints: 0, buffers: 0, dead_letter: 0, other: 0 };
  const walk = (path: string, kind: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(path);
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(path, name);
      try {
        const st = statSync(p);
        const k = depth === 0 ? (STATE_KINDS.has(name) ? name : 'other') : kind;
        if (st.isDirectory()) {
          if (depth < 3) walk(p, k, depth + 1);
        } else out[k] = (out[k] ?? 0) + st.size;
      } catch {
        // removed since the listing
      }
    }
  };
  walk(dir, 'other', 0);
  return out;
}

/**
 * The agent's own metrics: the names of design.md are product surface (dashboards and alerts
 * depend on them), so they are declared here once and handed to every component.
 */
export class SelfMetrics {
  readonly registry = new Registry();

  readonly sourceRecords = this.counter('telemetry_agent_source_records_total', 'Records produced by a source.', ['source']);
  readonly sourceBytes = this.counter('telemetry_agent_source_bytes_total', 'Raw bytes read by a source.', ['source']);
  readonly outputRecords = this.counter('telemetry_agent_output_records_total', 'Records handled by an output, by outcome.', ['output', 'status']);
  readonly outputBytes = this.counter('telemetry_agent_output_bytes_total', 'Encoded bytes an output wrote or sent.', ['output']);
  readonly outputRetries = this.counter('telemetry_agent_output_retries_total', 'Batches an output tried again after a failure.', ['output']);
  readonly outputRetriedRecords = this.counter('telemetry_agent_output_retried_records_total', 'Records an output sent again after a failed or partly refused request.', ['output']);
  readonly deadLetterRecords = this.counter(
    'telemetry_agent_output_dead_letter_records_total',
    'Records a receiver refused for good, written to the output\'s dead-letter file.',
    ['output'],
  );
  readonly outputTruncatedRecords = this.counter(
    'telemetry_agent_output_truncated_records_total',
    'Records an output cut to fit its protocol\'s message size (syslog max_message_bytes), sent cut.',
    ['output'],
  );
  readonly outputRequestDuration = this.histogram(
    'telemetry_agent_output_request_duration_seconds',
    'Time an output took to accept one batch.',
    ['output'],
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );
  readonly outputLastSuccess = this.gauge(
    'telemetry_agent_output_last_success_timestamp_seconds',
    'When an output last had a batch accepted by its receiver (Unix seconds); set to when the output was created until then. Alert on time() minus it while its buffer holds records.',
    ['output'],
  );
  readonly bufferBytes = this.gauge('telemetry_agent_buffer_bytes', 'Bytes waiting in an output buffer.', ['output', 'type']);
  readonly bufferRecords = this.gauge('telemetry_agent_buffer_records', 'Records waiting in an output buffer.', ['output', 'type']);
  private readonly declaredOutputs = new Set<string>();
  /** Filled at scrape time from every buffer's stats (see trackBufferAge). */
  private readonly bufferAges = new Map<string, { type: string; oldestMs: () => number | undefined }>();
  readonly bufferOldestAge = new Gauge<'output' | 'type'>({
    name: 'telemetry_agent_buffer_oldest_record_age_seconds',
    help: 'Age of the oldest record an output buffer holds unacknowledged (0 when empty): how far an output is behind.',
    labelNames: ['output', 'type'],
    registers: [this.registry],
    collect: () => {
      this.bufferOldestAge.reset();
      const now = Date.now();
      for (const [output, { type, oldestMs }] of this.bufferAges) {
        const oldest = oldestMs();
        this.bufferOldestAge.set({ output, type }, oldest === undefined ? 0 : Math.max(0, now - oldest) / 1000);
      }
    },
  });
  readonly droppedRecords = this.counter('telemetry_agent_dropped_records_total', 'Records dropped on purpose, by reason.', ['component', 'reason']);
  readonly parseErrors = this.counter('telemetry_agent_parse_errors_total', 'Lines a parser could not parse (kept as raw records).', ['source', 'parser']);
  readonly truncatedRecords = this.counter('telemetry_agent_truncated_records_total', 'Lines cut at max_line_bytes (kept, marked truncated).', ['source']);
  readonly multilineGroups = this.counter(
    'telemetry_agent_multiline_groups_total',
    'Multiline groups (stack traces) emitted as one record, by what closed them.',
    ['source', 'reason'],
  );
  readonly filesTailed = this.gauge('telemetry_agent_files_tailed', 'Files a source is tailing.', ['source']);
  readonly openFiles = this.gauge('telemetry_agent_open_files', 'File descriptors a source holds open.', ['source']);
  readonly tailLagBytes = this.gauge('telemetry_agent_tail_lag_bytes', 'Bytes on disk a source has not read yet.', ['source']);
  readonly unackedBytes = this.gauge('telemetry_agent_source_unacked_bytes', 'Bytes read but not yet accepted by every output.', ['source']);
  readonly checkpointWrites = this.counter('telemetry_agent_checkpoint_writes_total', 'Checkpoint files written.', ['source']);
  readonly checkpointErrors = this.counter('telemetry_agent_checkpoint_errors_total', 'Checkpoint writes that failed (retried on the next interval).', ['source']);
  readonly fileErrors = this.counter('telemetry_agent_file_errors_total', 'Files a source could not open, stat or read, by reason.', ['source', 'reason']);
  readonly fileTruncations = this.counter(
    'telemetry_agent_file_truncations_total',
    'Files found no longer holding what was read from them (copytruncate: shrunk, rewritten in place, or changed against the checkpoint while the agent was down), read again from byte 0.',
    ['source', 'reason'],
  );
  readonly checkpointInvalid = this.counter(
    'telemetry_agent_checkpoint_invalid_total',
    'Checkpoints found unusable at start (reason=unreadable: the whole file; bad_entry: entries dropped; lease_handover: the handover annotation on the Lease at a takeover). Never a reason to skip data: what they covered is read again.',
    ['source', 'reason'],
  );
  readonly rereadBytes = this.counter(
    'telemetry_agent_source_reread_bytes_total',
    'Bytes a source reads again because the checkpoint that covered them was unusable: records in them may be delivered twice.',
    ['source', 'reason'],
  );
  readonly sourceRestarts = this.counter(
    'telemetry_agent_source_restarts_total',
    'Times a source restarted its reader (journalctl) or its read position, by reason.',
    ['source', 'reason'],
  );
  readonly kubeWatchRestarts = this.counter('telemetry_agent_kube_watch_restarts_total', 'Kubernetes watches restarted, by reason.', ['resource', 'reason']);
  readonly podMetadataDroppedKeys = this.counter(
    'telemetry_agent_pod_metadata_dropped_keys_total',
    'Pod labels, annotations and namespace labels left off a pod\'s records because they went past kubernetes_metadata.max_keys or max_bytes, counted once per pod (and again after an update of it).',
    ['source', 'kind'],
  );
  readonly unenrichedRecords = this.counter(
    'telemetry_agent_unenriched_records_total',
    'Container records sent without (all) pod metadata from the API, by reason (api_unavailable, pod_unknown, owner_unknown, wait_buffer_full).',
    ['source', 'reason'],
  );
  readonly transformRecords = this.counter(
    'telemetry_agent_transform_records_total',
    'Records a transform received (direction="in") and passed on (direction="out"; a record sent to two routes counts twice).',
    ['transform', 'direction'],
  );
  readonly transformErrors = this.counter(
    'telemetry_agent_transform_errors_total',
    'Records on which a transform\'s expression failed at run time (missing field, type mismatch), by the expression\'s key; on_error decides their fate.',
    ['transform', 'expression'],
  );
  readonly redactions = this.counter('telemetry_agent_redactions_total', 'Secrets a redact transform replaced, by pattern.', ['transform', 'pattern']);
  readonly logMetricOverflow = this.counter(
    'telemetry_agent_log_metric_overflow_records_total',
    'Records a log_to_metric metric counted in its "other" series because it already had max_series label sets.',
    ['transform', 'metric'],
  );
  readonly throttleExceeded = this.counter(
    'telemetry_agent_throttle_exceeded_records_total',
    'Records over their key\'s budget in a throttle: dropped (when_exceeded="drop") or passed with their file read more slowly (when_exceeded="pause").',
    ['transform', 'when_exceeded'],
  );
  readonly throttleKeys = this.gauge('telemetry_agent_throttle_keys', 'Keys a throttle holds a budget for (at most its max_keys).', ['transform']);
  readonly configReloads = this.counter('telemetry_agent_config_reloads_total', 'Config reloads, by result.', ['result']);
  readonly serverConnections = this.gauge('telemetry_agent_server_connections', 'Connections open to the agent\'s HTTP server (/metrics, probes, tap, status).', []);
  readonly serverConnectionsClosed = this.counter(
    'telemetry_agent_server_connections_closed_total',
    'Connections the HTTP server closed to stay bounded: max_connections reached (the longest idle closed, or the new one when all are busy), headers or request not complete in time, a request with a body.',
    ['reason'],
  );
  readonly leader = this.gauge('telemetry_agent_leader', '1 on the agent that leads cluster-scoped work.', []);
  readonly leaderCandidate = this.gauge(
    'telemetry_agent_leader_candidate',
    '1 on an agent that runs a kubernetes_events source: it competes for (or, without leader election, does) cluster-scoped work.',
    [],
  );
  readonly buildInfo = this.gauge('telemetry_agent_build_info', 'Always 1; labels carry the version.', ['version', 'node_version']);

  /** Filled at scrape time: what the agent's own state takes on disk (see trackDataDir). */
  private dataDirs: string[] = [];
  readonly dataDirBytes = new Gauge<'kind'>({
    name: 'telemetry_agent_data_dir_bytes',
    help: 'Bytes the agent\'s own state takes under data_dir, by kind (checkpoints, buffers: disk-buffer segments, dead_letter, other). Disk buffers are bounded by buffer.max_size, dead-letter files by their rotation.',
    labelNames: ['kind'],
    registers: [this.registry],
    collect: () => {
      this.dataDirBytes.reset();
      for (const dir of this.dataDirs) for (const [kind, bytes] of Object.entries(stateBytes(dir))) this.dataDirBytes.inc({ kind }, bytes);
    },
  });

  constructor(version: string) {
    collectDefaultMetrics({ register: this.registry });
    // Gauges named *_total break Prometheus naming rules (promtool rejects them); the counts are in
    // nodejs_active_handles / nodejs_active_requests / nodejs_active_resources as well.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(name);
    }
    this.buildInfo.set({ version, node_version: process.version }, 1);
    this.leader.set(0);
    this.leaderCandidate.set(0);
    this.configReloads.inc({ result: 'success' }, 0);
    this.configReloads.inc({ result: 'failure' }, 0);
    for (const reason of SERVER_CLOSE_REASONS) this.serverConnectionsClosed.inc({ reason }, 0);
  }

  /**
   * Label sets alerts watch, present at 0 from the output's creation: `increase()` over a series
   * that appears at its first increment misses that increment, so the first failure or drop would
   * not fire an alert.
   */
  declareOutput(output: string, bufferType: string): void {
    for (const status of ['sent', 'failed', 'dropped']) this.outputRecords.inc({ output, status }, 0);
    this.outputBytes.inc({ output }, 0);
    this.outputRetries.inc({ output }, 0);
    this.outputRetriedRecords.inc({ output }, 0);
    this.deadLetterRecords.inc({ output }, 0);
    for (const reason of DROP_REASONS.output) this.droppedRecords.inc({ component: output, reason }, 0);
    if (bufferType === 'disk') for (const reason of DROP_REASONS.disk) this.droppedRecords.inc({ component: output, reason }, 0);
    // A reload that replaces the output keeps what its predecessor last achieved.
    if (!this.declaredOutputs.has(output)) this.outputLastSuccess.set({ output }, Date.now() / 1000);
    this.declaredOutputs.add(output);
  }

  /** The same for a source's counters. */
  declareSource(source: string): void {
    this.sourceRecords.inc({ source }, 0);
    this.sourceBytes.inc({ source }, 0);
    this.checkpointWrites.inc({ source }, 0);
    this.checkpointErrors.inc({ source }, 0);
  }

  /** The buffer an output uses now (a reload may replace it); `untrackBufferAge` when the output goes. */
  trackBufferAge(output: string, type: string, oldestMs: () => number | undefined): void {
    this.bufferAges.set(output, { type, oldestMs });
  }

  /** The data_dir whose size `telemetry_agent_data_dir_bytes` reports. */
  trackDataDir(dir: string): void {
    this.dataDirs = [dir];
  }

  untrackBufferAge(output: string): void {
    this.bufferAges.delete(output);
  }

  private counter<L extends string>(name: string, help: string, labelNames: L[]) {
    return new Counter<L>({ name, help, labelNames, registers: [this.registry] });
  }
  private gauge<L extends string>(name: string, help: string, labelNames: L[]) {
    return new Gauge<L>({ name, help, labelNames, registers: [this.registry] });
  }
  private histogram<L extends string>(name: string, help: string, labelNames: L[], buckets: number[]) {
    return new Histogram<L>({ name, help, labelNames, buckets, registers: [this.registry] });
  }
}
