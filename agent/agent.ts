import type { AddressInfo } from 'node:net';
import type { AgentConfig } from './config/schema.ts';
import { createLogger, type Logger } from './log.ts';
import { SelfMetrics } from './metrics.ts';
import { OutputRunner, Pipeline } from './pipeline.ts';
import { AgentServer } from './server.ts';
import { createSource } from './sources/create.ts';
import type { Source } from './sources/source.ts';
import { VERSION } from './version.ts';
import { createOutput } from '../outputs/registry.ts';

/** Per output, what may wait in memory before its sources are paused. */
const OUTPUT_QUEUE_BYTES = 2 * 1024 * 1024;

/**
 * The whole process: outputs first (so nothing is read before it has somewhere to go), then the
 * server, then sources. Stopping runs the other way, and checkpoints are written last, when they
 * reflect every acknowledgement that arrived.
 */
export class Agent {
  readonly config: AgentConfig;
  readonly metrics = new SelfMetrics(VERSION);
  readonly log: Logger;
  private readonly pipeline: Pipeline;
  private readonly sources: Source[];
  private readonly server: AgentServer;
  private stopping = false;
  address: AddressInfo | undefined;

  constructor(config: AgentConfig, log: Logger = createLogger(config.log_level)) {
    this.config = config;
    this.log = log;
    const runners = new Map<string, OutputRunner>();
    const routes = new Map<string, string[]>();
    for (const [name, outCfg] of Object.entries(config.outputs)) {
      const output = createOutput(outCfg, {
        name,
        metrics: this.metrics,
        log: (level, msg) => log[level](`output ${name}: ${msg}`),
      });
      runners.set(name, new OutputRunner(output, this.metrics, log, { maxQueuedBytes: OUTPUT_QUEUE_BYTES }));
      for (const input of outCfg.inputs) routes.set(input, [...(routes.get(input) ?? []), name]);
    }
    this.pipeline = new Pipeline(runners, routes, this.metrics);
    this.sources = Object.entries(config.sources).map(([name, srcCfg]) =>
      createSource(name, srcCfg, {
        nodeName: config.node_name,
        dataDir: config.data_dir,
        metrics: this.metrics,
        log,
        emitter: this.pipeline.emitterFor(name),
      }),
    );
    this.server = new AgentServer(this.metrics, {
      live: () => true,
      ready: () => !this.stopping && this.sources.every((s) => s.ready),
    });
  }

  async start(): Promise<void> {
    this.address = await this.server.listen(this.config.server.listen);
    for (const source of this.sources) await source.start();
    this.log.info(
      `telemetry-agent ${VERSION} on node ${this.config.node_name}: ${this.sources.length} sources, ` +
        `${this.pipeline.runners.size} outputs, serving http://${this.address.address}:${this.address.port}/metrics`,
    );
  }

  /** Stop reading, let outputs accept what they hold (within shutdown_timeout), save checkpoints. */
  async stop(): Promise<{ drained: boolean }> {
    if (this.stopping) return { drained: false };
    this.stopping = true;
    const deadline = Date.now() + this.config.shutdown_timeout;
    await Promise.all(this.sources.map((s) => s.stopReading()));
    const drained = await this.pipeline.drain(Math.max(0, deadline - Date.now()));
    if (!drained) {
      this.log.warn(`shutdown_timeout (${this.config.shutdown_timeout} ms) reached with records not yet accepted; they are read again on the next start`);
      for (const r of this.pipeline.runners.values()) r.abandon();
    }
    await Promise.all(this.sources.map((s) => s.close()));
    await Promise.all([...this.pipeline.runners.values()].map((r) => r.output.close().catch(() => undefined)));
    await this.server.close();
    return { drained };
  }
}
