import { Counter, type Registry } from 'prom-client';

import { IntervalCountLog, type Logger } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';
import type { BufferType } from './buffer.ts';

/**
 * The metrics one buffer keeps, bound to its labels once. The gauges and the drop counter are
 * design.md's; the corruption and write-error counters are registered here on the same registry
 * (once per registry) until SelfMetrics declares them.
 */
export class BufferMetrics {
  private readonly bytesGauge;
  private readonly recordsGauge;
  private readonly metrics: SelfMetrics;
  private readonly output: string;
  private readonly corrupt: Counter<'output'>;
  private readonly writeErrors: Counter<'output' | 'code'>;
  private readonly drops: Record<'buffer_full' | 'volume_full', IntervalCountLog> | undefined;

  /** `log`: drops are logged with counts, once per `dropLogIntervalMs` (default 10 s) while they go on. */
  constructor(metrics: SelfMetrics, output: string, type: BufferType, log?: Logger, dropLogIntervalMs = DROP_LOG_INTERVAL_MS) {
    this.metrics = metrics;
    this.output = output;
    this.bytesGauge = metrics.bufferBytes.labels({ output, type });
    this.recordsGauge = metrics.bufferRecords.labels({ output, type });
    this.corrupt = counter(
      metrics.registry,
      'telemetry_agent_buffer_corrupt_bytes_total',
      'Bytes of a disk buffer found torn or corrupt (cut off or skipped when read).',
      ['output'],
    );
    this.writeErrors = counter(
      metrics.registry,
      'telemetry_agent_buffer_write_errors_total',
      'Disk buffer writes or fsyncs that failed, by error code (ENOSPC: the volume is full).',
      ['output', 'code'],
    );
    this.set(0, 0);
    const dropLog = (why: string) =>
      new IntervalCountLog(log!, dropLogIntervalMs, (count, total, seconds) =>
        seconds === undefined
          ? `output ${output}: ${type} buffer ${why}: dropped ${count} records (when_full: drop_newest); counted in telemetry_agent_dropped_records_total`
          : `output ${output}: ${type} buffer ${why}: dropped ${count} more records in the last ${seconds} s (${total} since the agent started)`,
      );
    this.drops = log ? { buffer_full: dropLog('full'), volume_full: dropLog('cannot write, its volume is full') } : undefined;
  }

  set(bytes: number, records: number): void {
    this.bytesGauge.set(bytes);
    this.recordsGauge.set(records);
  }

  dropped(records: number, reason: 'buffer_full' | 'volume_full'): void {
    this.metrics.droppedRecords.inc({ component: this.output, reason }, records);
    this.metrics.outputRecords.inc({ output: this.output, status: 'dropped' }, records);
    this.drops?.[reason].add(records);
  }

  /** Logs the drops not reported yet (the buffer closes). */
  close(): void {
    this.drops?.buffer_full.flush();
    this.drops?.volume_full.flush();
  }

  corruptBytes(bytes: number): void {
    this.corrupt.inc({ output: this.output }, bytes);
  }

  writeError(code: string): void {
    this.writeErrors.inc({ output: this.output, code });
  }
}

const DROP_LOG_INTERVAL_MS = 10_000;

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter<L>({ name, help, labelNames, registers: [registry] });
}
