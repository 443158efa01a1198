import type { SelfMetrics } from './metrics.ts';
import type { OutputRunner } from './output_runner.ts';
import { BatchAck, type Acknowledger, type LogRecord } from './record.ts';
import { describeGraph, readersByPort, topologicalOrder, type GraphConfig, type PipelineGraph } from './transforms/graph.ts';
import type { TransformNode } from './transforms/transform_node.ts';

/**
 * Travels with a batch against the data flow, like its acknowledgement: a stage downstream (a
 * throttle with `when_exceeded: pause`) asks whoever read the batch to read that origin (for
 * container_logs, the file) no sooner than `ms` from now. Sources that cannot pace per origin
 * leave it out; the stage then holds the source's emit for that long instead.
 */
export interface ReadPace {
  holdFor(ms: number): void;
  /**
   * The batch weighs `bytes` more than what was read for it (enrichment put pod metadata on every
   * record): a source that bounds what it has in flight by bytes counts them too, until the batch
   * is accepted. Optional: sources that do not bound by bytes leave it out.
   */
  weigh?(bytes: number): void;
}

/** What a source sees of the pipeline: hand over records, learn when to slow down. */
export interface Emitter {
  /**
   * Routes records to every transform and output that reads the source. `onAccepted` fires once
   * all of them accepted (each output per its buffer: disk, durably written; memory, delivered;
   * a transform once what it passed on was accepted, or at once for what it dropped). The
   * returned promise resolves when every buffer took the records: a full buffer with
   * `when_full: block` keeps it pending, and the source reads no further meanwhile.
   */
  emit(records: LogRecord[], bytes: number, onAccepted: () => void, pace?: ReadPace): Promise<void>;
}

/** Whatever reads a port of the graph: an output's runner or a transform's node. */
export interface Reader {
  push(records: LogRecord[], bytes: number, ack: Acknowledger, pace?: ReadPace): Promise<void>;
}

/**
 * The running graph: source -> transforms -> outputs, by `inputs`; acknowledgements come back
 * through each batch's BatchAck, counted once per reader at every fan-out. Readers are looked up
 * per batch, so a config reload can swap outputs and transforms under running sources.
 */
export class Pipeline {
  readonly runners = new Map<string, OutputRunner>();
  readonly transforms = new Map<string, TransformNode>();
  private readers = new Map<string, Reader[]>();
  private config: GraphConfig = { sources: {}, transforms: {}, outputs: {} };
  private readonly metrics: SelfMetrics;

  constructor(metrics: SelfMetrics) {
    this.metrics = metrics;
  }

  /** Installs outputs, transforms and who reads which port (the config's `inputs`). */
  setGraph(runners: Map<string, OutputRunner>, transforms: Map<string, TransformNode>, config: GraphConfig): void {
    this.runners.clear();
    for (const [name, r] of runners) this.runners.set(name, r);
    this.transforms.clear();
    for (const [name, t] of transforms) this.transforms.set(name, t);
    const readers = new Map<string, Reader[]>();
    for (const [port, names] of readersByPort(config)) {
      readers.set(port, names.map((n) => (transforms.get(n) ?? runners.get(n))!).filter((r) => r !== undefined));
    }
    this.readers = readers;
    this.config = config;
  }

  readersOf(port: string): readonly Reader[] {
    return this.readers.get(port) ?? [];
  }

  emitterFor(source: string): Emitter {
    const records = this.metrics.sourceRecords.labels({ source });
    return {
      emit: (batchRecords, bytes, onAccepted, pace) => {
        const targets = this.readers.get(source) ?? [];
        records.inc(batchRecords.length);
        const ack = new BatchAck(targets.length, onAccepted);
        if (targets.length === 1) return targets[0]!.push(batchRecords, bytes, ack, pace);
        return Promise.all(targets.map((t) => t.push(batchRecords, bytes, ack, pace))).then(() => undefined);
      },
    };
  }

  /** Components and edges as configured now: for the status page and `top`. */
  graph(): PipelineGraph {
    return describeGraph(this.config);
  }

  /** Transforms pass on what they hold (dedupe's open runs), upstream ones first: before a drain. */
  flushTransforms(): void {
    for (const name of topologicalOrder(this.config)) this.transforms.get(name)?.flush();
  }

  /** Waits for every output to accept what it holds (see OutputRunner.drain), up to `timeoutMs` in all. */
  async drain(timeoutMs: number): Promise<boolean> {
    const results = await Promise.all([...this.runners.values()].map((r) => r.drain(timeoutMs)));
    return results.every(Boolean);
  }
}
