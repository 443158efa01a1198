import type { SelfMetrics } from './metrics.ts';
import type { OutputRunner } from './output_runner.ts';
import { BatchAck, type LogRecord } from './record.ts';

/** What a source sees of the pipeline: hand over records, learn when to slow down. */
export interface Emitter {
  /**
   * Routes records to every output that lists the source. `onAccepted` fires once all of them
   * accepted (each per its buffer: disk, durably written; memory, delivered). The returned
   * promise resolves when every buffer took the records: a full buffer with `when_full: block`
   * keeps it pending, and the source reads no further meanwhile.
   */
  emit(records: LogRecord[], bytes: number, onAccepted: () => void): Promise<void>;
}

/**
 * source -> route -> output runners; acknowledgements come back through each batch's BatchAck.
 * Routes are looked up per batch, so a config reload can swap outputs under running sources.
 */
export class Pipeline {
  readonly runners = new Map<string, OutputRunner>();
  private routes = new Map<string, OutputRunner[]>();
  private readonly metrics: SelfMetrics;

  constructor(metrics: SelfMetrics) {
    this.metrics = metrics;
  }

  /** Installs the outputs and the source -> outputs routes (`inputs` of each output). */
  setRoutes(runners: Map<string, OutputRunner>, inputsByOutput: Map<string, readonly string[]>): void {
    this.runners.clear();
    for (const [name, r] of runners) this.runners.set(name, r);
    const routes = new Map<string, OutputRunner[]>();
    for (const [output, inputs] of inputsByOutput) {
      for (const source of inputs) routes.set(source, [...(routes.get(source) ?? []), runners.get(output)!]);
    }
    this.routes = routes;
  }

  emitterFor(source: string): Emitter {
    const records = this.metrics.sourceRecords.labels({ source });
    return {
      emit: (batchRecords, bytes, onAccepted) => {
        const targets = this.routes.get(source) ?? [];
        records.inc(batchRecords.length);
        const ack = new BatchAck(targets.length, onAccepted);
        if (targets.length === 1) return targets[0]!.push(batchRecords, bytes, ack);
        return Promise.all(targets.map((t) => t.push(batchRecords, bytes, ack))).then(() => undefined);
      },
    };
  }

  /** Waits for every output to accept what it holds (see OutputRunner.drain), up to `timeoutMs` in all. */
  async drain(timeoutMs: number): Promise<boolean> {
    const results = await Promise.all([...this.runners.values()].map((r) => r.drain(timeoutMs)));
    return results.every(Boolean);
  }
}
