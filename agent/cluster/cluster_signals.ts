import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Registry } from 'prom-client';
import type { KubeRequester } from '../kube/connection.ts';
import type { KubeAccess } from '../kube/kube_access.ts';
import { ListWatch } from '../kube/list_watch.ts';
import type { KubeObject, NodePods } from '../kube/types.ts';
import type { Logger } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';
import type { ClusterSignalsConfig, TrackerName } from './cluster_config.ts';
import { ClusterMetrics } from './cluster_metrics.ts';
import { ImagePullTracker } from './image_pull_tracker.ts';
import { NodeReadinessTracker, type Node } from './node_readiness_tracker.ts';
import type { EventOccurrence, EventSink } from './observation.ts';
import { PodStartupTracker, type Pod } from './pod_startup_tracker.ts';
import { PvcProvisioningTracker, type Pv, type Pvc, type StorageClass } from './pvc_provisioning_tracker.ts';
import { ReportWindow } from './report_window.ts';
import { RolloutTracker, type Deployment, type ReplicaSet } from './rollout_tracker.ts';
import { SpanExport, spansWanted } from './span_export.ts';
import type { SpanLog } from '../status/span_log.ts';
import { VolumeAttachTracker, type VolumeAttachment } from './volume_attach_tracker.ts';

/**
 * The trackers and the watches that feed them, in two roles (span-and-metric-model.md §0.3):
 * `nodeLocal` (every agent: the pods on its node) and `leaderOnly` (started while this agent holds
 * the Lease: deployments, replicasets, claims, volumes, storage classes, attachments, nodes).
 * `sink` takes the Event occurrences of the kubernetes_events source (span events, image pulls,
 * scale steps, evictions).
 */

export interface Worker {
  /** Resolves once the watches run and the trackers take events (not when they are synced). */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterSignalsContext {
  nodeName: string;
  metrics: SelfMetrics;
  log: Logger;
  kube: KubeAccess;
  /** Finished spans are also kept here for the status page. */
  spanLog?: SpanLog;
  /**
   * The agent's pod watch of this node, which the pod startup tracker follows; without it (tests,
   * replays) the tracker opens its own node-filtered watch.
   */
  nodePods?: NodePods;
}

export interface ClusterSignalsOptions {
  /**
   * The windows of the two roles (report_window.ts). Default: both start now and report at once;
   * the kubernetes_events source passes held windows that start where the predecessor stopped.
   */
  nodeWindow?: ReportWindow;
  leaderWindow?: ReportWindow;
  clock?: () => number;
  /** Default: OTLP/HTTP through a BatchSpanProcessor. */
  spanProcessor?: SpanProcessor;
  /** How often open work is checked against its timeout; default 10 s. */
  sweepIntervalMs?: number;
  watch?: { backoff?: { initialMs: number; maxMs: number }; idleTimeoutMs?: number };
}

/** prom-client refuses a second metric of one name: a reloaded source reuses the first set. */
const metricsByRegistry = new WeakMap<Registry, ClusterMetrics>();

export class ClusterSignals {
  readonly nodeLocal: Worker;
  readonly leaderOnly: Worker;
  readonly sink: EventSink;
  /** What the node-local trackers (pods of this node) report, and from where. */
  readonly nodeWindow: ReportWindow;
  /** What the leader-only trackers report: reset at each start of leadership. */
  readonly leaderWindow: ReportWindow;
  private readonly config: ClusterSignalsConfig;
  private readonly ctx: ClusterSignalsContext;
  private readonly o: ClusterSignalsOptions;
  private readonly metrics: ClusterMetrics;
  private spans: Promise<SpanExport | undefined> | undefined;
  private readonly sinks = new Set<EventSink>();
  private readonly watches = new Map<string, ListWatch<KubeObject>>();

  constructor(config: ClusterSignalsConfig, ctx: ClusterSignalsContext, o: ClusterSignalsOptions = {}) {
    this.config = config;
    this.ctx = ctx;
    this.o = o;
    this.nodeWindow = o.nodeWindow ?? new ReportWindow(ReportWindow.startingAt(Date.now()), { hold: false });
    this.leaderWindow = o.leaderWindow ?? new ReportWindow(ReportWindow.startingAt(Date.now()), { hold: false });
    const registry = ctx.metrics.registry;
    let metrics = metricsByRegistry.get(registry);
    if (!metrics) {
      metrics = new ClusterMetrics(registry, config.histogram_namespace_label);
      metricsByRegistry.set(registry, metrics);
    }
    this.metrics = metrics;
    this.sink = { onEvent: (ev: EventOccurrence) => this.sinks.forEach((s) => s.onEvent(ev)) };
    this.nodeLocal = this.worker('node-local', (conn, spans) => this.nodeWatches(conn, spans));
    this.leaderOnly = this.worker('leader', (conn, spans) => this.leaderWatches(conn, spans));
  }

  private enabled(t: TrackerName): boolean {
    return this.config.trackers.includes(t);
  }

  /** Resolves when every watch started so far has completed its first LIST. */
  async whenSynced(): Promise<void> {
    await Promise.all([...this.watches.values()].map((w) => w.whenSynced()));
  }

  /** The running watch of `resource` has seen `resourceVersion` (or a later one): for tests and diagnostics. */
  seen(resource: string, resourceVersion: string): boolean {
    const rv = this.watches.get(resource)?.resourceVersion;
    return rv !== undefined && /^\d+$/.test(rv) && /^\d+$/.test(resourceVersion) && BigInt(rv) >= BigInt(resourceVersion);
  }

  /** Spans handed to the exporter, flushed. */
  async flush(): Promise<void> {
    await (await this.spans)?.forceFlush();
  }

  /** Stops the watches and hands the ended spans to the exporter, waiting at most `flushTimeoutMs` for it. */
  async close(flushTimeoutMs = 5000): Promise<void> {
    await Promise.all([this.nodeLocal.stop(), this.leaderOnly.stop()]);
    const spans = await this.spans;
    if (!spans) return;
    let timer: NodeJS.Timeout | undefined;
    const shutdown = spans.shutdown().catch((e: unknown) => this.ctx.log.warn(`cluster signals: spans not exported at shutdown: ${e instanceof Error ? e.message : String(e)}`));
    await Promise.race([shutdown, new Promise<void>((r) => (timer = setTimeout(r, flushTimeoutMs)))]);
    clearTimeout(timer);
  }

  private spanExport(conn: KubeRequester): Promise<SpanExport | undefined> {
    this.spans ??= (async () => {
      if (!spansWanted(this.config.spans)) return undefined;
      const clusterUid = (await kubeSystemUid(conn).catch(() => undefined)) ?? (this.config.cluster_name || 'cluster');
      return new SpanExport({ clusterName: this.config.cluster_name, clusterUid, processor: this.o.spanProcessor, recent: this.ctx.spanLog });
    })();
    return this.spans;
  }

  private worker(role: string, watches: (conn: KubeRequester, spans: SpanExport | undefined) => Watched[]): Worker {
    let running: Promise<Watched[]> | undefined;
    let timer: NodeJS.Timeout | undefined;
    return {
      start: async () => {
        running ??= (async () => {
          const conn = await this.ctx.kube.connection().catch((e: unknown) => {
            this.ctx.log.warn(`cluster signals (${role}): ${e instanceof Error ? e.message : String(e)}`);
            return undefined;
          });
          if (!conn) {
            this.ctx.log.warn(`cluster signals (${role}): no Kubernetes API connection, nothing to watch`);
            return [];
          }
          const list = watches(conn, await this.spanExport(conn));
          for (const w of list) w.watch?.start();
          timer = setInterval(() => list.forEach((w) => w.sweep?.()), this.o.sweepIntervalMs ?? 10_000);
          timer.unref();
          return list;
        })();
        await running;
      },
      stop: async () => {
        if (!running) return;
        const list = await running.catch(() => []);
        running = undefined;
        clearInterval(timer);
        for (const w of list) if (w.sink) this.sinks.delete(w.sink);
        await Promise.all(list.map((w) => w.watch?.stop()));
      },
    };
  }

  private watch<T extends KubeObject>(conn: KubeRequester, resource: string, path: string, fieldSelector?: string): ListWatch<T> {
    const w = new ListWatch<T>({ connection: conn, path, resource, fieldSelector, log: this.ctx.log, ...this.o.watch }, this.ctx.metrics);
    this.watches.set(resource, w as unknown as ListWatch<KubeObject>);
    return w;
  }

  private nodeWatches(conn: KubeRequester, spans: SpanExport | undefined): Watched[] {
    if (!this.enabled('pod_startup')) return [];
    const t = new PodStartupTracker({
      metrics: this.metrics,
      spans,
      nodeName: this.ctx.nodeName,
      window: this.nodeWindow,
      timeoutMs: this.config.pod_startup_timeout,
      namespaceOnHistograms: this.config.histogram_namespace_label,
      clock: this.o.clock,
    });
    const handlers = { onAdd: (p: Pod) => t.onPod(p), onUpdate: (_: Pod, p: Pod) => t.onPod(p), onDelete: (p: Pod) => t.onPodDeleted(p) };
    const shared = this.ctx.nodePods;
    if (shared) {
      // one LIST and one WATCH of this node's pods per agent: enrichment's
      let unfollow: (() => void) | undefined;
      const follow = { start: () => void (unfollow ??= shared.follow(handlers)), stop: async () => void unfollow?.() };
      return [this.register({ watch: follow, sweep: () => t.sweep(shared.values()), sink: t })];
    }
    const pods = this.watch<Pod>(conn, 'pods', '/api/v1/pods', `spec.nodeName=${this.ctx.nodeName}`);
    pods.subscribe(handlers);
    return [this.register({ watch: pods, sweep: () => t.sweep(pods.values()), sink: t })];
  }

  private leaderWatches(conn: KubeRequester, spans: SpanExport | undefined): Watched[] {
    const out: Watched[] = [];
    const common = { metrics: this.metrics, spans, window: this.leaderWindow, clock: this.o.clock };
    if (this.enabled('image_pull') && spans) {
      const t = new ImagePullTracker({ spans, timeoutMs: this.config.pod_startup_timeout, clock: this.o.clock });
      out.push({ sweep: () => t.sweep(), sink: t });
    }
    if (this.enabled('deployment_rollout')) {
      const t = new RolloutTracker({ ...common, timeoutGraceMs: this.config.rollout_timeout_grace });
      const rs = this.watch<ReplicaSet>(conn, 'replicasets', '/apis/apps/v1/replicasets');
      const d = this.watch<Deployment>(conn, 'deployments', '/apis/apps/v1/deployments');
      rs.subscribe({ onAdd: (o) => t.onReplicaSet(o), onUpdate: (_, o) => t.onReplicaSet(o), onDelete: (o) => t.onReplicaSetDeleted(o) });
      d.subscribe({ onAdd: (o) => t.onDeployment(o), onUpdate: (_, o) => t.onDeployment(o), onDelete: (o) => t.onDeploymentDeleted(o) });
      out.push({ watch: rs }, { watch: d, sweep: () => t.sweep(d.values()), sink: t });
    }
    if (this.enabled('pvc_provisioning')) {
      const t = new PvcProvisioningTracker({ ...common, timeoutMs: this.config.pvc_provisioning_timeout });
      const sc = this.watch<StorageClass>(conn, 'storageclasses', '/apis/storage.k8s.io/v1/storageclasses');
      const pv = this.watch<Pv>(conn, 'persistentvolumes', '/api/v1/persistentvolumes');
      const pvc = this.watch<Pvc>(conn, 'persistentvolumeclaims', '/api/v1/persistentvolumeclaims');
      sc.subscribe({ onAdd: (o) => t.onStorageClass(o), onUpdate: (_, o) => t.onStorageClass(o), onDelete: (o) => t.onStorageClassDeleted(o) });
      pv.subscribe({ onAdd: (o) => t.onVolume(o), onUpdate: (_, o) => t.onVolume(o), onDelete: (o) => t.onVolumeDeleted(o) });
      pvc.subscribe({ onAdd: (o) => t.onClaim(o), onUpdate: (_, o) => t.onClaim(o), onDelete: (o) => t.onClaimDeleted(o) });
      out.push({ watch: sc }, { watch: pv }, { watch: pvc, sweep: () => t.sweep(pvc.values()), sink: t });
    }
    if (this.enabled('volume_attach')) {
      const t = new VolumeAttachTracker({ ...common, timeoutMs: this.config.volume_attach_timeout });
      const va = this.watch<VolumeAttachment>(conn, 'volumeattachments', '/apis/storage.k8s.io/v1/volumeattachments');
      va.subscribe({ onAdd: (o) => t.onAttachment(o), onUpdate: (_, o) => t.onAttachment(o), onDelete: (o) => t.onAttachmentDeleted(o) });
      out.push({ watch: va, sweep: () => t.sweep(), sink: t });
    }
    if (this.enabled('node_readiness')) {
      const t = new NodeReadinessTracker({ ...common, podNode: (ns, name) => podNodeName(conn, ns, name) });
      const nodes = this.watch<Node>(conn, 'nodes', '/api/v1/nodes');
      nodes.subscribe({ onAdd: (o) => t.onNode(o), onUpdate: (_, o) => t.onNode(o), onDelete: (o) => t.onNodeDeleted(o) });
      out.push({ watch: nodes, sink: t });
    }
    for (const w of out) this.register(w);
    return out;
  }

  private register(w: Watched): Watched {
    if (w.sink) this.sinks.add(w.sink);
    return w;
  }
}

interface Watched {
  watch?: { start(): void; stop(): Promise<void> };
  sweep?: () => void;
  sink?: EventSink;
}

async function getJson<T>(conn: KubeRequester, path: string): Promise<T | undefined> {
  const res = await conn.request(path);
  const chunks: Buffer[] = [];
  for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
  if (res.statusCode !== 200) return undefined;
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
}

/** The semconv `k8s.cluster.uid`: the kube-system namespace's uid. */
async function kubeSystemUid(conn: KubeRequester): Promise<string | undefined> {
  return (await getJson<KubeObject>(conn, '/api/v1/namespaces/kube-system'))?.metadata.uid;
}

async function podNodeName(conn: KubeRequester, namespace: string, name: string): Promise<string | undefined> {
  return (await getJson<Pod>(conn, `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`))?.spec?.nodeName;
}
