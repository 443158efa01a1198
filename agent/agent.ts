import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import type { AgentConfig } from './config/schema.ts';
import { parserFromConfig } from './enrichment/body_parser.ts';
import { podMetadataConfig } from './enrichment/config.ts';
import { EnrichStage } from './enrichment/enrich_stage.ts';
import { SharedPodCache } from './enrichment/shared_pod_cache.ts';
import { KubeAccess } from './kube/kube_access.ts';
import { createLogger, type Level, type LogFormat, type Logger } from './log.ts';
import { SelfMetrics } from './metrics.ts';
import { DISK_BUFFER_DEFAULT_BYTES, MEMORY_BUFFER_DEFAULT_BYTES, openBuffer } from './buffers/open_buffer.ts';
import type { RecordBuffer } from './buffers/buffer.ts';
import { DeadLetterFile } from './dead_letter.ts';
import { autoUnackedWindow } from './flow_window.ts';
import { OutputRunner } from './output_runner.ts';
import { Pipeline } from './pipeline.ts';
import { outputsFedBy, type PipelineGraph } from './transforms/graph.ts';
import { sameTransform, type TransformConfig } from './transforms/registry.ts';
import { TransformNode } from './transforms/transform_node.ts';
import { AgentServer, type ReadinessCheck } from './server.ts';
import type { ComponentNode, PipelineView } from './status/components.ts';
import { StatusRoutes } from './status/routes.ts';
import { SpanLog } from './status/span_log.ts';
import { TapHub, type ComponentKind } from './tap.ts';
import type { Emitter } from './pipeline.ts';
import { createSource } from './sources/create.ts';
import type { Source } from './sources/source.ts';
import { VERSION } from './version.ts';
import { NdjsonEncoder } from '../outputs/ndjson.ts';
import { createOutput, type OutputConfig } from '../outputs/registry.ts';

/** Keys a running agent cannot take over without a restart (checkpoints and identity live there). */
const RESTART_ONLY = ['data_dir', 'kubernetes'] as const;

export class ReloadRejected extends Error {}

/**
 * The whole process: outputs first (so nothing is read before it has somewhere to go), then the
 * server, then sources. Stopping runs the other way, and checkpoints are written last, when they
 * reflect every acknowledgement that arrived. A reload changes only what changed: untouched
 * sources keep reading where they are, a changed output hands its unsent batches to its successor.
 */
export class Agent {
  config: AgentConfig;
  readonly metrics = new SelfMetrics(VERSION);
  readonly log: Logger;
  /** Live copies of records at any component, for `tap`, `top` and the status page. */
  readonly taps = new TapHub();
  /** The latest finished cluster spans, for the status page. */
  readonly spanLog = new SpanLog();
  private readonly setLevel: (level: Level) => void;
  private readonly setFormat: (format: LogFormat) => void;
  private readonly pipeline: Pipeline;
  private readonly kube: KubeAccess;
  private readonly sources = new Map<string, Source>();
  private readonly podCache: SharedPodCache;
  private readonly stages = new Map<string, EnrichStage>();
  /** Outputs a reload removed that are still delivering what they hold, by name. */
  private readonly removing = new Map<string, Promise<void>>();
  private server: AgentServer;
  private stopping = false;
  private reloading: Promise<void> = Promise.resolve();
  address: AddressInfo | undefined;

  constructor(config: AgentConfig, log?: Logger) {
    this.config = config;
    // A logger handed in (demo, tests) keeps its own level; the agent's own follows log_level.
    const own = log ? undefined : createLogger(config.log_level, undefined, config.log_format);
    this.log = log ?? own!;
    this.setLevel = (l) => own?.setLevel(l);
    this.setFormat = (f) => own?.setFormat(f);
    this.pipeline = new Pipeline(this.metrics);
    this.metrics.trackDataDir(config.data_dir);
    this.kube = new KubeAccess(
      { mode: config.kubernetes.mode, kubeconfig: config.kubernetes.kubeconfig, context: config.kubernetes.context },
      this.log,
    );
    // `kubernetes` is restart-only, so the namespace watch is decided once, from the first config.
    this.podCache = new SharedPodCache({
      kube: this.kube,
      nodeName: config.node_name,
      deletedGraceMs: config.kubernetes.pod_grace_period,
      namespaceMetadata: Object.values(config.sources).some(
        (s) => s.type === 'container_logs' && s.kubernetes_metadata.enabled && s.kubernetes_metadata.namespace_labels.include.length > 0,
      ),
      metrics: this.metrics,
      log: this.log,
    });
    const runners = new Map<string, OutputRunner>();
    for (const [name, outCfg] of Object.entries(config.outputs)) runners.set(name, this.runner(name, outCfg));
    const transforms = new Map<string, TransformNode>();
    for (const [name, tCfg] of Object.entries(config.transforms)) transforms.set(name, this.transformNode(name, tCfg));
    this.pipeline.setGraph(runners, transforms, config);
    for (const r of runners.values()) r.start();
    for (const [name, srcCfg] of Object.entries(config.sources)) this.sources.set(name, this.source(name, srcCfg, config));
    this.server = this.newServer();
  }

  /** An output with its buffer (a new one, or `buffer` taken over from the output it replaces); started by the caller. */
  private runner(name: string, outCfg: OutputConfig, buffer?: RecordBuffer): OutputRunner {
    const dataDir = this.config.data_dir;
    const output = createOutput(outCfg, {
      name,
      metrics: this.metrics,
      log: (level, msg) => this.log[level](`output ${name}: ${msg}`),
      dataDir,
    });
    const buf = buffer ?? openBuffer(name, outCfg.buffer, { dataDir, metrics: this.metrics, log: this.log });
    this.metrics.trackBufferAge(name, buf.type, () => buf.stats().oldestMs);
    this.metrics.declareOutput(name, buf.type);
    return new OutputRunner(output, {
      buffer: buf,
      batch: { maxBytes: outCfg.batch.max_bytes, maxEvents: outCfg.batch.max_events, timeoutMs: outCfg.batch.timeout },
      retry: { initialMs: outCfg.retry.initial, maxMs: outCfg.retry.max },
      concurrency: outCfg.concurrency,
      deadLetter: outCfg.dead_letter.enabled
        ? new DeadLetterFile({ output: name, dataDir, maxBytes: outCfg.dead_letter.max_size, encoder: new NdjsonEncoder() })
        : undefined,
      metrics: this.metrics,
      log: this.log,
      tap: this.taps.point(name, 'output'),
    });
  }

  private transformNode(name: string, tCfg: TransformConfig): TransformNode {
    return new TransformNode(name, tCfg, {
      metrics: this.metrics,
      log: this.log,
      readers: (port) => this.pipeline.readersOf(port),
      tap: this.taps.point(name, 'transform'),
    });
  }

  /** The pipeline as configured now: components and the edges between them (read-only). */
  graph(): PipelineGraph {
    return this.pipeline.graph();
  }

  private source(name: string, srcCfg: AgentConfig['sources'][string], config: AgentConfig): Source {
    this.metrics.declareSource(name);
    return createSource(name, srcCfg, {
      nodeName: config.node_name,
      dataDir: config.data_dir,
      metrics: this.metrics,
      log: this.log,
      emitter: this.emitter(name, srcCfg),
      kube: this.kube,
      unackedWindow: () => autoUnackedWindow(outputsFedBy(this.config, name).map((o) => this.config.outputs[o]!)),
      spanLog: this.spanLog,
    });
  }

  /** source -> enrich -> parse -> pipeline, for container sources that enrich or parse (journald: parse only). */
  private emitter(name: string, srcCfg: AgentConfig['sources'][string]) {
    // A source's tap shows its records as they leave it: parsed and enriched.
    const routed = this.pipeline.emitterFor(name);
    const tap = this.taps.point(name, 'source');
    const plain: Emitter = {
      emit: (records, bytes, onAccepted, pace) => {
        if (tap.active) tap.publish(records);
        return routed.emit(records, bytes, onAccepted, pace);
      },
    };
    this.stages.delete(name);
    if (srcCfg.type !== 'container_logs' && srcCfg.type !== 'journald') return plain;
    const enrich = srcCfg.type === 'container_logs' && srcCfg.kubernetes_metadata.enabled && this.kube.enabled;
    // journald has its PRIORITY; container lines always pass the stage, which reads a text line's level.
    if (srcCfg.type === 'journald' && srcCfg.parser === 'none') return plain;
    const stage = new EnrichStage({
      source: name,
      inner: plain,
      pods: enrich ? this.podCache : undefined,
      metadata: srcCfg.type === 'container_logs' ? srcCfg.kubernetes_metadata : podMetadataConfig.parse({}),
      parser: parserFromConfig(srcCfg.parser, `sources.${name}.parser`),
      timestampFromBody: srcCfg.timestamp_from_body,
      metrics: this.metrics,
      log: this.log,
    });
    this.stages.set(name, stage);
    return stage;
  }

  private newServer(): AgentServer {
    const routes = new StatusRoutes(this.pipelineView(), this.metrics, this.taps, this.spanLog, () => ({
      statusPage: this.config.server.status_page,
      tap: { enabled: this.config.server.tap.enabled, tokenFile: this.config.server.tap.token_file },
    }));
    return new AgentServer(this.metrics, { live: () => true, readiness: () => this.readiness() }, routes);
  }

  /** /readyz: the agent itself (stopping), then every source, each with why it is not ready. */
  readiness(): ReadinessCheck[] {
    const checks: ReadinessCheck[] = [{ component: 'agent', ready: !this.stopping, ...(this.stopping ? { reason: 'stopping' } : {}) }];
    for (const [name, s] of this.sources) {
      checks.push({ component: `source ${name}`, ready: s.ready, ...(s.ready ? {} : { reason: s.notReadyReason ?? 'starting' }) });
    }
    return checks;
  }

  /** The pipeline as its components and their state, for /components, `top` and the status page. */
  components(): ComponentNode[] {
    const { components, edges } = this.graph();
    return components.map((c) => ({ ...c, inputs: edges.filter((e) => e.to === c.name && c.kind !== 'source').map((e) => e.from) }));
  }

  /** What /components, `top` and the status page read about the running pipeline. */
  pipelineView(): PipelineView {
    return {
      nodeName: this.config.node_name,
      version: VERSION,
      components: () => this.components(),
      readiness: (kind: ComponentKind, name: string) => {
        if (kind !== 'source') return { ready: !this.stopping, ...(this.stopping ? { reason: 'stopping' } : {}) };
        const s = this.sources.get(name);
        if (!s) return { ready: false, reason: 'not running' };
        return { ready: s.ready, ...(s.ready ? {} : { reason: s.notReadyReason ?? 'starting' }) };
      },
      buffer: (output) => {
        const r = this.pipeline.runners.get(output);
        const cfg = this.config.outputs[output];
        if (!r || !cfg) return undefined;
        const maxBytes = cfg.buffer.max_size ?? (r.buffer.type === 'disk' ? DISK_BUFFER_DEFAULT_BYTES : MEMORY_BUFFER_DEFAULT_BYTES);
        return { stats: r.buffer.stats(), type: r.buffer.type, maxBytes };
      },
      outputHealth: (output) => this.pipeline.runners.get(output)?.health(),
      listeners: (kind, name) => this.taps.point(name, kind).listeners(),
      spans: () => this.spanLog.count,
      ready: () => this.readiness().every((c) => c.ready),
    };
  }

  async start(): Promise<void> {
    this.address = await this.server.listen(this.config.server.listen);
    for (const source of this.sources.values()) await source.start();
    this.log.info(
      `telemetry-agent ${VERSION} on node ${this.config.node_name}: ${this.sources.size} sources, ` +
        `${this.pipeline.transforms.size} transforms, ${this.pipeline.runners.size} outputs, serving http://${this.address.address}:${this.address.port}/metrics`,
    );
  }

  /**
   * Applies a new, already validated config. Reloads run one at a time. Throws ReloadRejected
   * (the running config stays) when a restart-only key changed.
   */
  reload(next: AgentConfig): Promise<void> {
    const run = this.reloading.then(() => this.apply(next));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async apply(next: AgentConfig): Promise<void> {
    if (this.stopping) throw new ReloadRejected('the agent is stopping');
    const prev = this.config;
    for (const key of RESTART_ONLY) {
      if (!isDeepStrictEqual(prev[key], next[key])) {
        throw new ReloadRejected(`${key} changed (${JSON.stringify(prev[key])} -> ${JSON.stringify(next[key])}): restart the agent to apply it`);
      }
    }
    for (const [name, outCfg] of Object.entries(next.outputs)) {
      const before = prev.outputs[name];
      if (before && !isDeepStrictEqual(before.buffer, outCfg.buffer)) {
        throw new ReloadRejected(`outputs.${name}.buffer changed: a buffer holds records in flight, restart the agent to apply it`);
      }
    }
    const deadline = () => Math.max(1000, next.shutdown_timeout);
    const changed: string[] = [];
    this.setLevel(next.log_level);
    this.setFormat(next.log_format);

    // Sources that change or go away stop first and settle their in-flight batches, so their
    // checkpoints hold exactly what was accepted when the replacement resumes from them.
    const sameNode = prev.node_name === next.node_name;
    const stale = [...this.sources.keys()].filter((n) => !sameNode || !isDeepStrictEqual(prev.sources[n], next.sources[n]));
    await Promise.all(
      stale.map(async (name) => {
        const source = this.sources.get(name)!;
        await source.stopReading();
        this.stages.get(name)?.flush();
        this.stages.delete(name);
        await source.settled(deadline());
        await source.close();
        this.sources.delete(name);
        changed.push(`source ${name} ${next.sources[name] ? 'changed' : 'removed'}`);
      }),
    );

    // Outputs: keep unchanged ones; a replaced output's successor takes over its buffer (the
    // buffer config is the same, see above) and the batches it had read but not delivered; a
    // removed output finishes what it holds (bounded by shutdown_timeout).
    const runners = new Map<string, OutputRunner>();
    const handOver: Promise<void>[] = [];
    // An output removed by an earlier reload and named again now: its buffer (a disk buffer's
    // folder) must be closed before a new one opens.
    await Promise.all(Object.keys(next.outputs).map((name) => this.removing.get(name)));
    for (const [name, outCfg] of Object.entries(next.outputs)) {
      const old = this.pipeline.runners.get(name);
      if (old && isDeepStrictEqual(prev.outputs[name], outCfg)) {
        runners.set(name, old);
        continue;
      }
      const fresh = this.runner(name, outCfg, old?.buffer);
      runners.set(name, fresh);
      if (old) {
        changed.push(`output ${name} changed`);
        handOver.push(
          old.detach().then(async (unfinished) => {
            fresh.start(unfinished);
            await old.output.close().catch((err: Error) => this.log.warn(`output ${name}: close failed: ${err.message}`));
          }),
        );
      } else {
        fresh.start();
        changed.push(`output ${name} added`);
      }
    }
    const removed = [...this.pipeline.runners].filter(([name]) => !next.outputs[name]);

    // Transforms: keep unchanged ones (their state: buckets, open dedupe runs); a changed or
    // removed one first passes on what it holds into the graph as it is now, then goes.
    const transforms = new Map<string, TransformNode>();
    for (const [name, tCfg] of Object.entries(next.transforms)) {
      const old = this.pipeline.transforms.get(name);
      if (old && sameTransform(prev.transforms[name], tCfg)) transforms.set(name, old);
      else {
        transforms.set(name, this.transformNode(name, tCfg));
        changed.push(`transform ${name} ${old ? 'changed' : 'added'}`);
      }
    }
    for (const [name, old] of this.pipeline.transforms) {
      if (transforms.get(name) === old) continue;
      old.flush();
      old.close();
      if (!next.transforms[name]) changed.push(`transform ${name} removed`);
    }
    this.pipeline.setGraph(runners, transforms, next);
    await Promise.all(handOver);
    for (const [name, old] of removed) {
      changed.push(`output ${name} removed`);
      this.metrics.untrackBufferAge(name);
      const gone = old.drain(deadline()).then(async (drained) => {
        const held = old.buffer.stats().records;
        if (!drained && old.buffer.type === 'memory') {
          const records = await old.discard();
          this.metrics.droppedRecords.inc({ component: name, reason: 'output_removed' }, records);
          this.metrics.outputRecords.inc({ output: name, status: 'dropped' }, records);
          this.log.warn(`output ${name}: removed from the config with ${records} records it could not deliver in time; dropped`);
        } else if (held > 0) {
          this.log.warn(`output ${name}: removed from the config; its disk buffer keeps ${held} records it could not deliver, sent if the output is configured again`);
        }
        await old.close().catch(() => undefined);
      });
      this.removing.set(name, gone);
      void gone.then(() => {
        if (this.removing.get(name) === gone) this.removing.delete(name);
      });
    }

    if (prev.server.listen !== next.server.listen) {
      const server = this.newServer();
      this.address = await server.listen(next.server.listen);
      const old = this.server;
      this.server = server;
      await old.close();
      changed.push(`server now on ${next.server.listen}`);
    }

    this.config = next;
    for (const [name, srcCfg] of Object.entries(next.sources)) {
      if (this.sources.has(name)) continue;
      const source = this.source(name, srcCfg, next);
      this.sources.set(name, source);
      await source.start();
      if (!prev.sources[name]) changed.push(`source ${name} added`);
    }
    this.log.info(`config reloaded: ${changed.length ? changed.join(', ') : 'nothing that needs a restart of any part changed'}`);
  }

  /** Stop reading, let outputs accept what they hold (within shutdown_timeout), save checkpoints. */
  async stop(): Promise<{ drained: boolean }> {
    if (this.stopping) return { drained: false };
    this.stopping = true;
    await this.reloading;
    const deadline = Date.now() + this.config.shutdown_timeout;
    const sources = [...this.sources.values()];
    await Promise.race([Promise.all(sources.map((s) => s.stopReading())), sleep(this.config.shutdown_timeout)]);
    for (const stage of this.stages.values()) stage.flush();
    this.pipeline.flushTransforms();
    const drained = await this.pipeline.drain(Math.max(0, deadline - Date.now()));
    if (!drained) {
      this.log.warn(`shutdown_timeout (${this.config.shutdown_timeout} ms) reached with records not yet accepted; they are read again on the next start`);
      for (const r of this.pipeline.runners.values()) r.abandon();
    }
    await Promise.all(sources.map((s) => s.close()));
    // An output's close may wait on its receiver (syslog waits for the server to confirm what it
    // read): that too stays within shutdown_timeout, with a second to spare for the close itself.
    const closing = Promise.all([...this.pipeline.runners.values()].map((r) => r.close().catch(() => undefined)));
    await Promise.race([closing, sleep(Math.max(1000, deadline - Date.now()))]);
    for (const t of this.pipeline.transforms.values()) t.close();
    await this.podCache.stop();
    await this.kube.close();
    await this.server.close();
    return { drained };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
