import { join } from 'node:path';
import { AlwaysLeader, LeaderElector } from '../../cluster/leader_election.ts';
import { ApiObjectLookup, type ObjectLookup } from '../../cluster/event_lookup.ts';
import { eventRecord } from '../../cluster/event_logs.ts';
import { EventMetrics } from '../../cluster/event_metrics.ts';
import { EventRules } from '../../cluster/event_rules.ts';
import { ClusterSignals } from '../../cluster/cluster_signals.ts';
import type { ClusterWorker, EventOccurrence, EventSink, Leadership, SpanEventSink } from '../../cluster/observation.ts';
import type { KubeConnection } from '../../kube/connection.ts';
import { ListWatch } from '../../kube/list_watch.ts';
import { RateLimitedLog } from '../../log.ts';
import type { LogRecord } from '../../record.ts';
import type { Source, SourceContext } from '../source.ts';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.ts';
import type { KubernetesEventsConfig } from './config.ts';
import { EventCounter } from './event_counter.ts';
import { normalizeEvent, type NormalizedEvent } from './normalize.ts';

const EMIT_BATCH = 500;
/** On the Lease: the leader's high-water mark (epoch ms), for a successor that has no checkpoint of its own. */
export const HIGH_WATER_ANNOTATION = 'telemetry-agent.io/events-high-water';

/**
 * Source `kubernetes_events`: the cluster's Events, counted once cluster-wide.
 *
 * The lease holder (or the single-replica Deployment) lists+watches Events (events.k8s.io/v1,
 * core/v1 where that group is not served), turns count/series growth into EventOccurrences with
 * EventCounter and hands each to every EventSink: the event metrics, the user rules, the event
 * log records, and whatever else is added.
 *
 * HOOK for span trackers (and any other cluster-scoped consumer), before `start()`:
 * - `source.sinks.push(sink)`: receives every EventOccurrence (leader only; never history, never twice);
 * - `source.spanEventSinks.push(sink)`: receives occurrences a user rule marked `span_event: true`;
 * - `source.clusterWorkers.push(worker)`: `start()` when this agent becomes leader, `stop()` when it
 *   loses the Lease or shuts down (the node-local role needs no Lease and does not belong here);
 * - `source.leadership`: who leads, with change notifications.
 */
export class KubernetesEventsSource implements Source {
  readonly name: string;
  readonly sinks: EventSink[] = [];
  readonly spanEventSinks: SpanEventSink[] = [];
  readonly clusterWorkers: ClusterWorker[] = [];
  readonly metrics: EventMetrics;
  /** Span and duration trackers: node-local on every agent, the rest as a cluster worker. */
  readonly signals: ClusterSignals;
  leadership: Leadership = new AlwaysLeader();
  private readonly config: KubernetesEventsConfig;
  private readonly ctx: SourceContext;
  private readonly counter: EventCounter;
  private readonly checkpointPath: string;
  private readonly warnings: RateLimitedLog;
  private elector: LeaderElector | undefined;
  private connection: KubeConnection | undefined;
  private watch: ListWatch<NormalizedEvent> | undefined;
  private watching: Promise<void> = Promise.resolve();
  private started = false;
  private stopping = false;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  /** Records not yet handed to the pipeline, and those handed over but not yet accepted. */
  private queue: LogRecord[] = [];
  private readonly unacked = new Map<number, LogRecord[]>();
  private batchSeq = 0;
  private emitting = false;
  private idleWaiters: (() => void)[] = [];

  constructor(name: string, config: KubernetesEventsConfig, ctx: SourceContext, lookup?: ObjectLookup) {
    this.name = name;
    this.config = config;
    this.ctx = ctx;
    this.warnings = new RateLimitedLog(ctx.log);
    this.checkpointPath = join(ctx.dataDir, 'checkpoints', `${name}.events.json`);
    this.counter = new EventCounter({
      maxTracked: config.max_tracked_events,
      tombstoneTtlMs: config.tombstone_ttl,
      eventTtlMs: config.event_ttl,
      onBackwards: (e, before) =>
        this.warnings.warn('backwards', `source ${name}: event ${e.namespace}/${e.name} (uid ${e.uid}) went from ${before} to ${e.occurrences} occurrences; counted as 0`),
    });
    this.metrics = new EventMetrics(ctx.metrics.registry, {
      includeNamespaces: config.include_namespaces,
      excludeNamespaces: config.exclude_namespaces,
      maxReasonsPerComponent: config.max_reasons_per_component,
      maxComponents: config.max_components,
      seriesTtlMs: config.series_ttl,
      lookup: lookup ?? new ApiObjectLookup(() => ctx.kube.connection()),
    });
    this.sinks.push(this.metrics, new EventRules(config.rules, ctx.metrics.registry, this.spanEventSinks));
    this.signals = new ClusterSignals(config.signals, ctx);
    // every occurrence already reaches the trackers here, so rule-marked ones (spanEventSinks) would be twice
    this.sinks.push(this.signals.sink);
    this.clusterWorkers.push(this.signals.leaderOnly);
  }

  get ready(): boolean {
    return this.started && !this.stopping && this.notReadyReason === undefined;
  }

  /** Why the source is not ready while it runs (the API connection `kubernetes.mode` asks for cannot be made). */
  notReadyReason: string | undefined;

  /** Events uids remembered for counting (bounded by max_tracked_events). */
  get tracked(): number {
    return this.counter.tracked;
  }

  /** The resourceVersion the events watch has reached (undefined while not leading). */
  get resourceVersion(): string | undefined {
    return this.watch?.resourceVersion;
  }

  /** Resolves when every occurrence delivered so far has reached the metrics (object lookups included). */
  metricsSettled(): Promise<void> {
    return this.metrics.settled();
  }

  /** Log records waiting for the outputs (bounded by max_pending_records). */
  get pendingRecords(): number {
    let n = this.queue.length;
    for (const b of this.unacked.values()) n += b.length;
    return n;
  }

  async start(): Promise<void> {
    const saved = loadCheckpoint(this.checkpointPath);
    if (saved.status === 'unreadable') {
      // unreadable state: start as on a first run (seed, count nothing old) rather than not at all
      this.ctx.log.warn(`source ${this.name}: ignoring checkpoint ${this.checkpointPath}: ${saved.problem}`);
      this.ctx.metrics.checkpointInvalid.inc({ source: this.name, reason: 'unreadable' });
    } else if (saved.status === 'ok') {
      if (saved.dropped.length > 0) {
        this.ctx.metrics.checkpointInvalid.inc({ source: this.name, reason: 'bad_entry' }, saved.dropped.length);
        this.ctx.log.warn(`source ${this.name}: checkpoint ${this.checkpointPath}: dropped ${saved.dropped.length} invalid entries (${saved.dropped.slice(0, 5).join('; ')})`);
      }
      this.counter.restore(saved.checkpoint.counter);
      this.queue.push(...saved.checkpoint.records);
    }
    this.started = true;
    this.timer = setInterval(() => this.writeCheckpoint(false), this.config.checkpoint_interval);
    this.timer.unref();
    this.pump();
    try {
      this.connection = await this.ctx.kube.connection();
    } catch (e) {
      // An explicit kubernetes.mode that cannot work (validate --check says so before a rollout):
      // the agent's other sources go on; this one stays not ready, saying why.
      this.notReadyReason = `no Kubernetes API connection: ${(e as Error).message}`;
      this.ctx.log.error(`source ${this.name}: ${this.notReadyReason}; cluster events are not watched`);
      return;
    }
    if (!this.connection) {
      this.ctx.log.warn(`source ${this.name}: no Kubernetes API (kubernetes.mode), cluster events are not watched`);
      return;
    }
    await this.signals.nodeLocal.start(); // the pods on this node: no Lease needed
    if (this.config.leader_election) {
      const elector = new LeaderElector({
        connection: this.connection,
        namespace: this.config.lease_namespace ?? process.env.POD_NAMESPACE ?? this.connection.namespace ?? 'default',
        name: this.config.lease_name,
        identity: this.config.identity ?? (process.env.POD_NAME || this.ctx.nodeName),
        leaseDurationMs: this.config.lease_duration,
        renewDeadlineMs: this.config.renew_deadline,
        retryPeriodMs: this.config.retry_period,
        log: this.ctx.log,
        setGauge: (v) => this.ctx.metrics.leader.set(v),
        annotations: () => ({ [HIGH_WATER_ANNOTATION]: String(this.counter.highWater) }),
      });
      this.elector = elector;
      this.leadership = elector;
      elector.onChange((leading) => {
        this.watching = this.watching.then(() => (leading ? this.lead() : this.follow()));
      });
      elector.start();
    } else {
      this.ctx.metrics.leader.set(1);
      this.watching = this.lead();
    }
  }

  async stopReading(): Promise<void> {
    this.stopping = true;
    await this.elector?.stop(); // releases the Lease: a successor starts at its next retry
    await this.watching;
    await this.follow();
    await this.signals.nodeLocal.stop();
  }

  async settled(timeoutMs: number): Promise<boolean> {
    const done = (async () => {
      await this.metrics.settled();
      while (this.pendingRecords > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    })();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    const ok = await Promise.race([done.then(() => true), timeout]);
    clearTimeout(timer);
    return ok;
  }

  async close(): Promise<void> {
    await this.signals.close(); // flushes the spans that ended
    clearInterval(this.timer);
    this.dirty = true;
    this.writeCheckpoint(true);
  }

  // ---- leading ----

  private async lead(): Promise<void> {
    if (this.stopping || this.watch || !this.connection) return;
    const from = this.elector?.takenOverFrom;
    if (from) {
      const hw = Number(from.annotations[HIGH_WATER_ANNOTATION]);
      // a later mark than ours: another agent counted after our checkpoint was written
      if (Number.isFinite(hw) && hw > this.counter.highWater) {
        this.counter.handOver(hw);
        this.ctx.log.info(`source ${this.name}: took over from ${from.holder || 'a released lease'}, counting events first seen from ${new Date(hw).toISOString()}`);
      }
    }
    const path = await this.eventsPath(this.connection);
    this.ctx.log.info(`source ${this.name}: watching cluster events at ${path}`);
    const watch = new ListWatch<NormalizedEvent>(
      { connection: this.connection, path, resource: 'events', transform: normalizeEvent, log: this.ctx.log },
      this.ctx.metrics,
    );
    watch.subscribe({
      onAdd: (e, fromList) => this.deliver(e, fromList ? this.counter.listed(e, !watch.synced) : this.counter.added(e)),
      onUpdate: (prev, e) => this.deliver(e, this.counter.modified(e, prev.occurrences)),
      onDelete: (e) => {
        this.counter.deleted(e);
        this.dirty = true;
      },
    });
    this.watch = watch;
    watch.start();
    for (const w of this.clusterWorkers) {
      await w.start().catch((e: Error) => this.ctx.log.warn(`source ${this.name}: a cluster worker failed to start: ${e.message}`));
    }
  }

  private async follow(): Promise<void> {
    const watch = this.watch;
    if (!watch) return;
    this.watch = undefined;
    for (const w of this.clusterWorkers) {
      await w.stop().catch((e: Error) => this.ctx.log.warn(`source ${this.name}: a cluster worker failed to stop: ${e.message}`));
    }
    await watch.stop();
    this.dirty = true;
    this.writeCheckpoint(false);
  }

  /** events.k8s.io/v1 where served (`auto` asks once), else core/v1. */
  private async eventsPath(c: KubeConnection): Promise<string> {
    const v1 = '/apis/events.k8s.io/v1/events';
    if (this.config.api === 'core') return '/api/v1/events';
    if (this.config.api === 'events.k8s.io') return v1;
    for (;;) {
      try {
        const res = await c.request(`${v1}?limit=1`, { signal: AbortSignal.timeout(10_000) });
        res.resume();
        if (res.statusCode === 404) {
          this.ctx.log.info(`source ${this.name}: events.k8s.io/v1 not served, using core/v1 events`);
          return '/api/v1/events';
        }
        return v1;
      } catch (e) {
        if (this.stopping) return v1;
        this.warnings.warn('probe', `source ${this.name}: asking for events.k8s.io/v1 failed (${(e as Error).message}); retrying`);
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }

  // ---- delivering occurrences ----

  private deliver(e: NormalizedEvent, delta: number): void {
    this.dirty = true;
    if (delta <= 0) return;
    const o: EventOccurrence = { ...e, delta };
    for (const s of this.sinks) {
      try {
        s.onEvent(o);
      } catch (err) {
        this.warnings.warn('sink', `source ${this.name}: an event sink failed: ${(err as Error).stack}`);
      }
    }
    if (this.pendingRecords >= this.config.max_pending_records) {
      this.ctx.metrics.droppedRecords.inc({ component: this.name, reason: 'queue_full' });
      return;
    }
    this.queue.push(eventRecord(o, undefined));
    this.pump();
  }

  /** Hands queued records to the pipeline one batch at a time, waiting while the outputs are full. */
  private pump(): void {
    if (this.emitting) return;
    this.emitting = true;
    void (async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, EMIT_BATCH);
        const id = ++this.batchSeq;
        this.unacked.set(id, batch);
        const bytes = batch.reduce((n, r) => n + (r.body as string).length, 0);
        this.ctx.metrics.sourceBytes.inc({ source: this.name }, bytes);
        await this.ctx.emitter.emit(batch, bytes, () => {
          this.unacked.delete(id);
          this.dirty = true;
          if (this.pendingRecords === 0) for (const w of this.idleWaiters.splice(0)) w();
        });
      }
      this.emitting = false;
      if (this.pendingRecords === 0) for (const w of this.idleWaiters.splice(0)) w();
    })();
  }

  private writeCheckpoint(durable: boolean): void {
    if (!this.dirty) return;
    const records: LogRecord[] = [];
    for (const b of this.unacked.values()) records.push(...b);
    records.push(...this.queue);
    try {
      saveCheckpoint(this.checkpointPath, { version: 1, counter: this.counter.snapshot(), records }, durable);
      this.dirty = false;
      this.ctx.metrics.checkpointWrites.inc({ source: this.name });
    } catch (e) {
      this.ctx.metrics.checkpointErrors.inc({ source: this.name });
      this.warnings.warn('checkpoint', `source ${this.name}: writing ${this.checkpointPath} failed: ${(e as Error).message}`);
    }
  }
}
