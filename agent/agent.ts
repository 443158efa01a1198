import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import type { AgentConfig } from './config/schema.ts';
import { checkTarget } from './config/target_check.ts';
import type { EarlyPort } from './early_port.ts';
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
import { AgentServer, listenProblem, type ReadinessCheck, type ServerLimits } from './server.ts';
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

/** Parts of the config that cannot be built on this node: one line per problem, each naming its key. */
export class StartupError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('; '));
    this.problems = problems;
  }
}

interface BuiltSource {
  source: Source;
  stage?: EnrichStage;
}

/** What a reload built before touching what runs; `discard` releases it when the reload is abandoned. */
interface Prepared {
  problems: string[];
  runners: Map<string, OutputRunner>;
  transforms: Map<string, TransformNode>;
  server: { server: AgentServer; address: AddressInfo } | undefined;
  sources: Map<string, BuiltSource>;
  discard(): Promise<void>;
}

/**
 * The whole process: the server first (so /healthz answers while the rest starts), then outputs
 * (so nothing is read before it has somewhere to go), transforms, sources. Stopping runs the other way, and checkpoints are written last, when they
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
  private readonly earlyPort: EarlyPort | undefined;
  /** Outputs, transforms and sources are built and registered (sources may still be starting). */
  private built = false;
  /** Sources registered but not started yet: a stop during start does not stop or close them (nor write their checkpoints). */
  private readonly unstarted = new Set<string>();
  private starting: Promise<void> = Promise.resolve();
  private stopping = false;
  private reloading: Promise<void> = Promise.resolve();
  /** Sources whose start() threw, with why: not ready until a reload replaces them. */
  private readonly failedSources = new Map<string, string>();
  address: AddressInfo | undefined;

  /** `port`: the config's port, bound already (agent/early_port.ts): start takes it over rather than binding. */
  constructor(config: AgentConfig, log?: Logger, opts: { port?: EarlyPort } = {}) {
    this.config = config;
    this.earlyPort = opts.port?.listen === config.server.listen ? opts.port : undefined;
    if (opts.port && !this.earlyPort) opts.port.close();
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
    this.server = this.newServer();
  }

  /**
   * An output with its buffer (a new one, or `buffer` taken over from the output it replaces), not
   * started. Throws what the output's or buffer's construction throws: the caller names the output.
   */
  private runner(name: string, outCfg: OutputConfig, buffer?: RecordBuffer): OutputRunner {
    const dataDir = this.config.data_dir;
    const output = createOutput(outCfg, {
      name,
      metrics: this.metrics,
      log: (level, msg) => this.log[level](`output ${name}: ${msg}`),
      dataDir,
    });
    let buf: RecordBuffer;
    try {
      buf = buffer ?? openBuffer(name, outCfg.buffer, { dataDir, metrics: this.metrics, log: this.log });
    } catch (err) {
      void output.close().catch(() => undefined);
      throw err;
    }
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

  /** Its metrics' label sets, so alerts see them from zero; once the output runs. */
  private declareOutput(name: string, runner: OutputRunner): void {
    this.metrics.trackBufferAge(name, runner.buffer.type, () => runner.buffer.stats().oldestMs);
    this.metrics.declareOutput(name, runner.buffer.type);
  }

  /**
   * The source's default `max_unacked_bytes`, from the outputs it feeds now: asked before every read,
   * so worked out once per config (a reload swaps `this.config`).
   */
  private unackedWindowOf(name: string): () => number {
    let memo: { config: AgentConfig; bytes: number } | undefined;
    return () => {
      if (memo?.config !== this.config) memo = { config: this.config, bytes: autoUnackedWindow(outputsFedBy(this.config, name).map((o) => this.config.outputs[o]!)) };
      return memo.bytes;
    };
  }

  /** A source and the enrich stage in front of it (if any), not started and not yet registered. */
  private source(name: string, srcCfg: AgentConfig['sources'][string], config: AgentConfig): BuiltSource {
    const { emitter, stage } = this.emitter(name, srcCfg);
    const source = createSource(name, srcCfg, {
      nodeName: config.node_name,
      dataDir: config.data_dir,
      metrics: this.metrics,
      log: this.log,
      emitter,
      kube: this.kube,
      unackedWindow: this.unackedWindowOf(name),
      spanLog: this.spanLog,
      nodePods: this.kube.enabled ? this.podCache : undefined,
    });
    return { source, stage };
  }

  /** source -> enrich -> parse -> pipeline, for container sources that enrich or parse (journald: parse only). */
  private emitter(name: string, srcCfg: AgentConfig['sources'][string]): { emitter: Emitter; stage?: EnrichStage } {
    // A source's tap shows its records as they leave it: parsed and enriched.
    const routed = this.pipeline.emitterFor(name);
    const tap = this.taps.point(name, 'source');
    const plain: Emitter = {
      emit: (records, bytes, onAccepted, pace) => {
        if (tap.active) tap.publish(records);
        return routed.emit(records, bytes, onAccepted, pace);
      },
    };
    if (srcCfg.type !== 'container_logs' && srcCfg.type !== 'journald') return { emitter: plain };
    const enrich = srcCfg.type === 'container_logs' && srcCfg.kubernetes_metadata.enabled && this.kube.enabled;
    // journald has its PRIORITY; container lines always pass the stage, which reads a text line's level.
    if (srcCfg.type === 'journald' && srcCfg.parser === 'none') return { emitter: plain };
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
    return { emitter: stage, stage };
  }

  private newServer(limits: ServerLimits = this.config.server): AgentServer {
    const routes = new StatusRoutes(this.pipelineView(), this.metrics, this.taps, this.spanLog, () => ({
      statusPage: this.config.server.status_page,
      tap: { enabled: this.config.server.tap.enabled, tokenFile: this.config.server.tap.token_file },
    }));
    return new AgentServer(this.metrics, { live: () => true, readiness: () => this.readiness() }, routes, limits);
  }

  /** /readyz: the agent itself (stopping), then every source, each with why it is not ready. */
  readiness(): ReadinessCheck[] {
    const agent = this.stopping ? 'stopping' : this.built ? undefined : 'starting';
    const checks: ReadinessCheck[] = [{ component: 'agent', ready: agent === undefined, ...(agent ? { reason: agent } : {}) }];
    for (const [name, s] of this.sources) {
      const failed = this.failedSources.get(name);
      const ready = s.ready && failed === undefined;
      checks.push({ component: `source ${name}`, ready, ...(ready ? {} : { reason: failed ?? s.notReadyReason ?? 'starting' }) });
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

  /**
   * Binds the server first, so /healthz answers while outputs recover their buffers and sources
   * make their first scan; then checks what the node must provide and builds outputs, transforms
   * and sources. Whatever cannot be built (a file named in the config that cannot be read, a
   * data_dir that cannot be written, a port in use) is a StartupError naming each problem's key,
   * and nothing is left running. A stop() that arrives meanwhile ends the start early.
   */
  start(): Promise<void> {
    this.starting = this.startParts();
    return this.starting;
  }

  private async startParts(): Promise<void> {
    const listen = this.config.server.listen;
    try {
      this.address = this.earlyPort ? this.server.adopt(this.earlyPort.release()) : await this.server.listen(listen);
    } catch (err) {
      throw new StartupError([`server.listen: ${listenProblem(err, listen)}`]);
    }
    // Files the parts read and paths they write, checked before anything is built so each problem
    // is named by its key rather than by a stack.
    const { problems } = await checkTarget(this.config, { scope: 'start' });
    const runners = new Map<string, OutputRunner>();
    const transforms = new Map<string, TransformNode>();
    const built = new Map<string, BuiltSource>();
    if (problems.length === 0) {
      for (const [name, outCfg] of Object.entries(this.config.outputs)) {
        try {
          runners.set(name, this.runner(name, outCfg));
        } catch (err) {
          problems.push(problemLine('outputs', name, err));
        }
      }
      for (const [name, tCfg] of Object.entries(this.config.transforms)) {
        try {
          transforms.set(name, this.transformNode(name, tCfg));
        } catch (err) {
          problems.push(problemLine('transforms', name, err));
        }
      }
      for (const [name, srcCfg] of Object.entries(this.config.sources)) {
        try {
          built.set(name, this.source(name, srcCfg, this.config));
        } catch (err) {
          problems.push(problemLine('sources', name, err));
        }
      }
    }
    if (problems.length > 0) {
      await Promise.all([...runners.values()].map((r) => r.close().catch(() => undefined)));
      for (const t of transforms.values()) t.close();
      await this.server.close();
      throw new StartupError(problems);
    }
    this.pipeline.setGraph(runners, transforms, this.config);
    for (const [name, r] of runners) {
      this.declareOutput(name, r);
      r.start();
    }
    for (const [name, { source, stage }] of built) {
      this.metrics.declareSource(name);
      this.sources.set(name, source);
      if (stage) this.stages.set(name, stage);
      this.unstarted.add(name);
    }
    this.built = true;
    for (const [name, { source }] of built) {
      if (this.stopping) return;
      await this.startSource(name, source);
      this.unstarted.delete(name);
      // Let the probes and /metrics in between sources: a large node's first scan takes a while.
      await new Promise((r) => setImmediate(r));
    }
    this.log.info(
      `telemetry-agent ${VERSION} on node ${this.config.node_name}: ${this.sources.size} sources, ` +
        `${this.pipeline.transforms.size} transforms, ${this.pipeline.runners.size} outputs, serving http://${this.address.address}:${this.address.port}/metrics`,
    );
  }

  /**
   * A source's start is not expected to fail (each handles its own I/O problems); if one does
   * anyway, the agent and its other sources go on, and /readyz says which one failed and why.
   */
  private async startSource(name: string, source: Source): Promise<void> {
    try {
      await source.start();
    } catch (err) {
      const why = `start failed: ${(err as Error).message}`;
      this.failedSources.set(name, why);
      this.log.error(`source ${name}: ${why}; the other sources and outputs go on`);
    }
  }

  /**
   * Applies a new, already validated config. Reloads run one at a time. Throws ReloadRejected
   * (the running config stays) when a restart-only key changed or a part of the new config cannot
   * be built.
   */
  reload(next: AgentConfig): Promise<void> {
    const run = this.reloading.then(() => this.apply(next));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async apply(next: AgentConfig): Promise<void> {
    if (this.stopping) throw new ReloadRejected('the agent is stopping');
    await this.starting;
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

    // An output removed by an earlier reload and named again now: its buffer (a disk buffer's
    // folder) must be closed before a new one opens.
    await Promise.all(Object.keys(next.outputs).map((name) => this.removing.get(name)));

    // Check what the node must provide, then build every new part before anything running is
    // touched: a part that cannot be built rejects the reload with the running config intact.
    const sameNode = prev.node_name === next.node_name;
    const stale = [...this.sources.keys()].filter((n) => !sameNode || !isDeepStrictEqual(prev.sources[n], next.sources[n]));
    // What runs unchanged is not checked again (a token file being replaced must not block an unrelated change).
    const rebuilt = (section: 'outputs' | 'sources', name: string) =>
      section === 'outputs' ? !isDeepStrictEqual(prev.outputs[name], next.outputs[name]) : !this.sources.has(name) || stale.includes(name);
    const { problems } = await checkTarget(next, { scope: 'reload', parts: rebuilt });
    if (problems.length > 0) throw new ReloadRejected(problems.join('; '));
    const prepared = await this.prepare(prev, next, stale);
    if (prepared.problems.length > 0) {
      await prepared.discard();
      throw new ReloadRejected(`cannot build: ${prepared.problems.join('; ')}`);
    }
    this.setLevel(next.log_level);
    this.setFormat(next.log_format);

    // Sources that change or go away stop first and settle their in-flight batches, so their
    // checkpoints hold exactly what was accepted when the replacement resumes from them.
    await Promise.all(
      stale.map(async (name) => {
        const source = this.sources.get(name)!;
        await source.stopReading();
        this.stages.get(name)?.flush();
        this.stages.delete(name);
        await source.settled(deadline());
        await source.close();
        this.sources.delete(name);
        this.failedSources.delete(name);
        changed.push(`source ${name} ${next.sources[name] ? 'changed' : 'removed'}`);
      }),
    );

    // Outputs: keep unchanged ones; a replaced output's successor takes over its buffer (the
    // buffer config is the same, see above) and the batches it had read but not delivered; a
    // removed output finishes what it holds (bounded by shutdown_timeout).
    const runners = new Map<string, OutputRunner>();
    const handOver: Promise<void>[] = [];
    for (const name of Object.keys(next.outputs)) {
      const old = this.pipeline.runners.get(name);
      const fresh = prepared.runners.get(name);
      if (!fresh) {
        runners.set(name, old!);
        continue;
      }
      runners.set(name, fresh);
      this.declareOutput(name, fresh);
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
    for (const name of Object.keys(next.transforms)) {
      const old = this.pipeline.transforms.get(name);
      const fresh = prepared.transforms.get(name);
      if (!fresh) transforms.set(name, old!);
      else {
        transforms.set(name, fresh);
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

    if (prepared.server) {
      const old = this.server;
      this.server = prepared.server.server;
      this.address = prepared.server.address;
      await old.close();
      changed.push(`server now on ${next.server.listen}`);
    } else if (!isDeepStrictEqual(serverLimits(prev), serverLimits(next))) {
      this.server.setLimits(next.server);
      changed.push('server limits');
    }

    this.config = next;
    for (const [name, { source, stage }] of prepared.sources) {
      this.metrics.declareSource(name);
      this.sources.set(name, source);
      if (stage) this.stages.set(name, stage);
      await this.startSource(name, source);
      if (!prev.sources[name]) changed.push(`source ${name} added`);
    }
    this.log.info(`config reloaded: ${changed.length ? changed.join(', ') : 'nothing that needs a restart of any part changed'}`);
  }

  /**
   * The parts of `next` that differ from what runs, built but not started: outputs (with their
   * buffers, or the buffer of the output they replace), transforms, a server bound to a new
   * address, sources. Problems name their key.
   */
  private async prepare(prev: AgentConfig, next: AgentConfig, stale: string[]): Promise<Prepared> {
    const problems: string[] = [];
    const runners = new Map<string, OutputRunner>();
    for (const [name, outCfg] of Object.entries(next.outputs)) {
      const old = this.pipeline.runners.get(name);
      if (old && isDeepStrictEqual(prev.outputs[name], outCfg)) continue;
      try {
        runners.set(name, this.runner(name, outCfg, old?.buffer));
      } catch (err) {
        problems.push(problemLine('outputs', name, err));
      }
    }
    const transforms = new Map<string, TransformNode>();
    for (const [name, tCfg] of Object.entries(next.transforms)) {
      const old = this.pipeline.transforms.get(name);
      if (old && sameTransform(prev.transforms[name], tCfg)) continue;
      try {
        transforms.set(name, this.transformNode(name, tCfg));
      } catch (err) {
        problems.push(problemLine('transforms', name, err));
      }
    }
    let server: Prepared['server'];
    if (prev.server.listen !== next.server.listen) {
      const fresh = this.newServer(next.server);
      try {
        server = { server: fresh, address: await fresh.listen(next.server.listen) };
      } catch (err) {
        problems.push(`server.listen: ${listenProblem(err, next.server.listen)}`);
      }
    }
    const sources = new Map<string, BuiltSource>();
    for (const [name, srcCfg] of Object.entries(next.sources)) {
      if (this.sources.has(name) && !stale.includes(name)) continue;
      try {
        sources.set(name, this.source(name, srcCfg, next));
      } catch (err) {
        problems.push(problemLine('sources', name, err));
      }
    }
    const discard = async () => {
      for (const [name, r] of runners) {
        // A replacement shares its predecessor's buffer, which keeps running: close only its output.
        const own = this.pipeline.runners.get(name)?.buffer !== r.buffer;
        await (own ? r.close() : r.output.close()).catch(() => undefined);
      }
      for (const t of transforms.values()) t.close();
      for (const { stage } of sources.values()) stage?.flush();
      await server?.server.close();
    };
    return { problems, runners, transforms, server, sources, discard };
  }

  /** Stop reading, let outputs accept what they hold (within shutdown_timeout), save checkpoints. */
  async stop(): Promise<{ drained: boolean }> {
    if (this.stopping) return { drained: false };
    this.stopping = true;
    // A start in progress ends at its next step (a failed one has already released what it built).
    if (await this.starting.then(() => false, () => true)) return { drained: true };
    await this.reloading;
    const deadline = Date.now() + this.config.shutdown_timeout;
    const sources = [...this.sources].filter(([name]) => !this.unstarted.has(name)).map(([, s]) => s);
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

/** `outputs.loki: <why>`: the message without the "output loki: " its own code may have put in front. */
function problemLine(section: 'outputs' | 'transforms' | 'sources', name: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const own = `${section.slice(0, -1)} ${name}: `;
  return `${section}.${name}: ${message.startsWith(own) ? message.slice(own.length) : message}`;
}

function serverLimits(config: AgentConfig): ServerLimits {
  const { max_connections, header_timeout, request_timeout, idle_timeout } = config.server;
  return { max_connections, header_timeout, request_timeout, idle_timeout };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
