import { join } from 'node:path';
import { AlwaysLeader, LeaderElector } from '../../cluster/leader_election.ts';
import { ApiObjectLookup, type ObjectLookup } from '../../cluster/event_lookup.ts';
import { eventRecord } from '../../cluster/event_logs.ts';
import { EventMetrics } from '../../cluster/event_metrics.ts';
import { EventRules } from '../../cluster/event_rules.ts';
import { ClusterSignals } from '../../cluster/cluster_signals.ts';
import { HANDOVER_ANNOTATION, readHandover, writeHandover, type Handover } from '../../cluster/handover.ts';
import { ReportWindow, type ReportMark } from '../../cluster/report_window.ts';
import type { ClusterWorker, EventOccurrence, EventSink, Leadership, SpanEventSink } from '../../cluster/observation.ts';
import type { KubeConnection } from '../../kube/connection.ts';
import { ListWatch } from '../../kube/list_watch.ts';
import { RateLimitedLog } from '../../log.ts';
import type { LogRecord } from '../../record.ts';
import type { Source, SourceContext } from '../source.ts';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.ts';
import type { KubernetesEventsConfig } from './config.ts';
import { EventCounter, type CounterState } from './event_counter.ts';
import { normalizeEvent, type NormalizedEvent } from './normalize.ts';

const EMIT_BATCH = 500;

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
 *
 * Counted occurrences and the leader's tracker reports are held until the state that covers them is
 * written: with leader election at each Lease renewal (the handover annotation), then the
 * checkpoint, then they go to the sinks; without it at each checkpoint. A kill -9 therefore never
 * leaves a report that the next incarnation or leader counts again (README, "Cluster events").
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
  /** Occurrences counted but not yet reported: they go out once a commit covers them. */
  private pending: EventOccurrence[] = [];
  /** The counter's state as of the last commit: what the checkpoint says. */
  private committedCounter: CounterState | undefined;
  /** The node-local trackers' mark as of the last checkpoint. */
  private committedNodeMark: ReportMark;
  /** Without leader election: the leader-only trackers' mark, kept in the checkpoint. */
  private committedLeaderMark: ReportMark | undefined;
  private readonly unacked = new Map<number, LogRecord[]>();
  private batchSeq = 0;
  private emitting = false;
  private idleWaiters: (() => void)[] = [];
  /** Pod uid -> first occurrence of the earliest FailedScheduling Event about it, from the watch (bounded). */
  private readonly failedSchedulingSince = new Map<string, number>();
  /** Resolved after every commit (metricsSettled). */
  private commitWaiters: (() => void)[] = [];

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
    const now = Date.now();
    this.committedNodeMark = ReportWindow.startingAt(now);
    this.signals = new ClusterSignals(config.signals, ctx, {
      nodeWindow: new ReportWindow(this.committedNodeMark),
      leaderWindow: new ReportWindow(ReportWindow.startingAt(now)),
    });
    this.metrics = new EventMetrics(ctx.metrics.registry, {
      includeNamespaces: config.include_namespaces,
      excludeNamespaces: config.exclude_namespaces,
      maxReasonsPerComponent: config.max_reasons_per_component,
      maxComponents: config.max_components,
      seriesTtlMs: config.series_ttl,
      lookup: lookup ?? new ApiObjectLookup(() => ctx.kube.connection()),
      window: this.signals.leaderWindow,
      firstFailedScheduling: (pod) => this.failedSchedulingSince.get(pod),
    });
    this.sinks.push(this.metrics, new EventRules(config.rules, ctx.metrics.registry, this.spanEventSinks));
    // every occurrence already reaches the trackers here, so rule-marked ones (spanEventSinks) would be twice
    this.sinks.push(this.signals.sink);
    this.clusterWorkers.push(this.signals.leaderOnly);
  }

  get ready(): boolean {
    return this.started && !this.stopping && this.notReadyReason === undefined;
  }

  /**
   * Why the source is not ready while it runs: the API connection `kubernetes.mode` asks for cannot
   * be made, or the API refuses or fails what it needs (RBAC removed: 403 on the Lease or the events
   * watch); cleared as soon as a request succeeds again.
   */
  get notReadyReason(): string | undefined {
    if (this.connectionProblem) return this.connectionProblem;
    const watch = this.watch?.problem;
    if (watch) return `cluster events: ${watch}`;
    if (this.elector?.problem) return `leader election: ${this.elector.problem}`;
    return undefined;
  }

  private connectionProblem: string | undefined;

  /** Events uids remembered for counting (bounded by max_tracked_events). */
  get tracked(): number {
    return this.counter.tracked;
  }

  /** The resourceVersion the events watch has reached (undefined while not leading). */
  get resourceVersion(): string | undefined {
    return this.watch?.resourceVersion;
  }

  /** Resolves when every occurrence delivered so far has reached the metrics (object lookups included). */
  async metricsSettled(): Promise<void> {
    for (;;) {
      await this.metrics.settled();
      const held = this.pending.length + this.signals.leaderWindow.pending + this.signals.nodeWindow.pending;
      if (held === 0 || !this.started || this.stopping) return;
      await new Promise<void>((r) => this.commitWaiters.push(r));
    }
  }

  /** Log records waiting for the outputs (bounded by max_pending_records), counted occurrences waiting for a commit included. */
  get pendingRecords(): number {
    let n = this.queue.length + this.pending.length;
    for (const b of this.unacked.values()) n += b.length;
    return n;
  }

  async start(): Promise<void> {
    // A candidate for cluster-scoped work from now on, whether or not it ever gets the Lease (or the API).
    if (this.config.watch_events) this.ctx.metrics.leaderCandidate.set(1);
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
      if (saved.checkpoint.signals) this.committedNodeMark = saved.checkpoint.signals;
      this.committedLeaderMark = saved.checkpoint.leaderSignals;
    }
    this.committedCounter = this.counter.snapshot();
    this.signals.nodeWindow.reset(this.committedNodeMark);
    this.started = true;
    this.timer = setInterval(() => this.commitToCheckpoint(), this.config.checkpoint_interval);
    this.timer.unref();
    this.pump();
    try {
      this.connection = await this.ctx.kube.connection();
    } catch (e) {
      // An explicit kubernetes.mode that cannot work (validate --check says so before a rollout):
      // the agent's other sources go on; this one stays not ready, saying why.
      this.connectionProblem = `no Kubernetes API connection: ${(e as Error).message}`;
      this.ctx.log.error(`source ${this.name}: ${this.connectionProblem}; cluster events are not watched`);
      return;
    }
    if (!this.connection) {
      this.ctx.log.warn(`source ${this.name}: no Kubernetes API (kubernetes.mode), cluster events are not watched`);
      return;
    }
    await this.signals.nodeLocal.start(); // the pods on this node: no Lease needed
    if (!this.config.watch_events) return; // node agents next to a cluster agent: pod startup only
    if (this.config.leader_election) {
      const elector = new LeaderElector({
        connection: this.connection,
        namespace: this.config.lease_namespace ?? process.env.POD_NAMESPACE ?? this.connection.namespace ?? 'default',
        name: this.config.lease_name,
        identity: this.identity,
        leaseDurationMs: this.config.lease_duration,
        renewDeadlineMs: this.config.renew_deadline,
        retryPeriodMs: this.config.retry_period,
        log: this.ctx.log,
        setGauge: (v) => this.ctx.metrics.leader.set(v),
        commit: () => this.commitToLease(),
      });
      this.elector = elector;
      this.leadership = elector;
      elector.onChange((leading) => {
        // synchronously: the state a renewal commits must be this leadership's from the first renewal on
        if (leading) this.beginLeading();
        else this.endLeading();
        this.watching = this.watching.then(() => (leading ? this.lead() : this.follow()));
      });
      elector.start();
    } else {
      this.ctx.metrics.leader.set(1);
      this.beginLeading();
      this.watching = this.lead();
    }
  }

  private get identity(): string {
    return this.config.identity ?? (process.env.POD_NAME || this.ctx.nodeName);
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
    this.ctx.metrics.leaderCandidate.set(0);
    clearInterval(this.timer);
    this.commitToCheckpoint(true);
    await this.signals.close(); // flushes the spans that ended
  }

  // ---- leading ----

  private async lead(): Promise<void> {
    if (this.stopping || this.watch || !this.connection) return;
    const path = await this.eventsPath(this.connection);
    this.ctx.log.info(`source ${this.name}: watching cluster events at ${path}`);
    const watch = new ListWatch<NormalizedEvent>(
      { connection: this.connection, path, resource: 'events', transform: normalizeEvent, log: this.ctx.log },
      this.ctx.metrics,
    );
    watch.subscribe({
      onListStart: () => this.counter.listStart(),
      onListEnd: () => {
        this.counter.listEnd();
        this.dirty = true;
      },
      onAdd: (e, fromList) => {
        this.index(e);
        this.deliver(e, fromList ? this.counter.listed(e) : this.counter.added(e));
      },
      onUpdate: (prev, e) => {
        this.index(e);
        this.deliver(e, this.counter.modified(e, prev.occurrences));
      },
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
    if (!this.elector) {
      // the single leader stops: what it counted so far is committed and reported; anything counted
      // while the watch winds down is not, and is counted again after a restart
      this.commitToCheckpoint();
      this.watch = undefined;
      this.endLeading();
    }
    this.watch = undefined;
    for (const w of this.clusterWorkers) {
      await w.stop().catch((e: Error) => this.ctx.log.warn(`source ${this.name}: a cluster worker failed to stop: ${e.message}`));
    }
    await watch.stop();
    this.dirty = true;
    this.writeCheckpoint(false);
  }

  /**
   * events.k8s.io/v1 where served, else core/v1: `auto` asks discovery once (`/apis/events.k8s.io/v1`,
   * which every authenticated client may read), so the RBAC needs only the one events API the server has.
   */
  private async eventsPath(c: KubeConnection): Promise<string> {
    const v1 = '/apis/events.k8s.io/v1/events';
    if (this.config.api === 'core') return '/api/v1/events';
    if (this.config.api === 'events.k8s.io') return v1;
    for (;;) {
      try {
        const res = await c.request('/apis/events.k8s.io/v1', { signal: AbortSignal.timeout(10_000) });
        const chunks: Buffer[] = [];
        for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
        if (res.statusCode === 404) {
          this.ctx.log.info(`source ${this.name}: events.k8s.io/v1 not served (discovery), using core/v1 events`);
          return '/api/v1/events';
        }
        if (res.statusCode !== 200) throw new Error(`discovery answered HTTP ${res.statusCode}`);
        const list = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resources?: { name?: string }[] };
        if (list.resources?.some((r) => r.name === 'events')) return v1;
        this.ctx.log.info(`source ${this.name}: events.k8s.io/v1 serves no events (discovery), using core/v1 events`);
        return '/api/v1/events';
      } catch (e) {
        if (this.stopping) return v1;
        this.warnings.warn('probe', `source ${this.name}: asking for events.k8s.io/v1 failed (${(e as Error).message}); retrying`);
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }

  // ---- delivering occurrences ----

  /** FailedScheduling per pod: a pod's first one is its Unschedulable time (EventMetrics), whichever Event object comes later. */
  private index(e: NormalizedEvent): void {
    if (e.reason !== 'FailedScheduling' || e.regarding.kind !== 'Pod' || !e.regarding.uid) return;
    const known = this.failedSchedulingSince.get(e.regarding.uid);
    if (known !== undefined && known <= e.firstSeenMs) return;
    this.failedSchedulingSince.set(e.regarding.uid, e.firstSeenMs);
    if (this.failedSchedulingSince.size > this.config.max_tracked_events) this.failedSchedulingSince.delete(this.failedSchedulingSince.keys().next().value!);
  }

  /** Counted: reported once a commit covers it (commitToLease / commitToCheckpoint). */
  private deliver(e: NormalizedEvent, delta: number): void {
    this.dirty = true;
    if (delta <= 0) return;
    this.pending.push({ ...e, delta });
  }

  /** Reports committed occurrences: records queued first (the checkpoint being written holds them), sinks after. */
  private stage(batch: EventOccurrence[]): EventOccurrence[] {
    const out: EventOccurrence[] = [];
    for (const o of batch) {
      if (this.queue.length + this.unackedCount() >= this.config.max_pending_records) {
        this.ctx.metrics.droppedRecords.inc({ component: this.name, reason: 'queue_full' });
      } else {
        this.queue.push(eventRecord(o, undefined));
      }
      out.push(o);
    }
    return out;
  }

  private publish(batch: EventOccurrence[]): void {
    for (const o of batch) {
      for (const s of this.sinks) {
        try {
          s.onEvent(o);
        } catch (err) {
          this.warnings.warn('sink', `source ${this.name}: an event sink failed: ${(err as Error).stack}`);
        }
      }
    }
    this.pump();
  }

  private unackedCount(): number {
    let n = 0;
    for (const b of this.unacked.values()) n += b.length;
    return n;
  }

  // ---- commits: state first, reports after ----

  /** With leader election, at each renewal: the handover goes on the Lease, then the checkpoint, then the reports. */
  private commitToLease(): { annotations: Record<string, string>; committed(): void; abandoned(): void } {
    const snapshot = this.counter.snapshot();
    const events = this.counter.handover();
    const batch = this.pending.splice(0);
    const leader = this.signals.leaderWindow.prepare();
    const handover: Handover = { identity: this.identity, events, signals: leader.mark };
    return {
      annotations: { [HANDOVER_ANNOTATION]: writeHandover(handover) },
      committed: () => {
        this.committedCounter = snapshot;
        const staged = this.stage(batch);
        this.dirty = true;
        this.writeCheckpoint(false);
        this.publish(staged);
        leader.release();
        for (const w of this.commitWaiters.splice(0)) w();
      },
      abandoned: () => {
        this.pending.unshift(...batch);
        leader.abandon();
      },
    };
  }

  /**
   * Every checkpoint_interval (and at close): the node-local trackers' reports, and without leader
   * election the counted occurrences and leader-only reports, go out once the checkpoint covering them is written.
   */
  private commitToCheckpoint(durable = false): void {
    const node = this.signals.nodeWindow.prepare();
    const alone = !this.elector && this.watch !== undefined;
    const leader = alone ? this.signals.leaderWindow.prepare() : undefined;
    const batch = alone ? this.pending.splice(0) : [];
    if (alone) this.committedCounter = this.counter.snapshot();
    const staged = this.stage(batch);
    if (node.mark.throughMs !== this.committedNodeMark.throughMs || node.mark.keys.length !== this.committedNodeMark.keys.length) this.dirty = true;
    this.committedNodeMark = node.mark;
    if (leader) this.committedLeaderMark = leader.mark;
    if (batch.length > 0) this.dirty = true;
    // a checkpoint that cannot be written (a full disk) delays nothing: it is retried, and counted
    this.writeCheckpoint(durable);
    this.publish(staged);
    node.release();
    leader?.release();
    for (const w of this.commitWaiters.splice(0)) w();
  }

  // ---- leadership ----

  /**
   * This agent starts to lead: from which state. The Lease's handover (parsed as untrusted input)
   * wins over this agent's own checkpoint unless that one is this agent's and at least as recent; an
   * unreadable handover is logged, counted, and replaced by the Lease's renewTime (what the last
   * holder had counted by then), so it is never a reason to count twice or to skip.
   */
  private beginLeading(): void {
    const acquired = this.elector?.acquired;
    let handover: Handover | undefined;
    let fallbackMs: number | undefined;
    if (acquired && !acquired.created) {
      const read = readHandover(acquired.annotations);
      if (read.error) {
        this.ctx.metrics.checkpointInvalid.inc({ source: this.name, reason: 'lease_handover' });
        fallbackMs = acquired.renewTimeMs;
        this.ctx.log.warn(
          `source ${this.name}: ignoring the handover on the Lease (${read.error}); ` +
            (fallbackMs !== undefined ? `counting and reporting from the previous holder's last renewal, ${new Date(fallbackMs).toISOString()}` : 'counting from this agent\'s own state'),
        );
        if (fallbackMs !== undefined) handover = { events: { highWaterMs: fallbackMs, recent: [] }, signals: ReportWindow.startingAt(fallbackMs) };
      } else {
        handover = read.handover;
      }
    }
    // written by this agent before (a restart, or it released the Lease and nobody led since)
    const ours = acquired?.holder === this.identity || (acquired?.holder === '' && handover?.identity === this.identity);
    if (handover?.events && !(ours && this.counter.hasHistory && this.counter.highWater >= handover.events.highWaterMs)) {
      this.counter.handOver(handover.events);
      this.ctx.log.info(
        `source ${this.name}: took over from ${acquired?.holder || 'a released lease'}, counting Events that happened from ${new Date(handover.events.highWaterMs).toISOString()}`,
      );
    }
    // a first start counts from now, not from whenever its first LIST comes back
    this.counter.startAt(Date.now());
    this.committedCounter = this.counter.snapshot();
    const from = handover?.signals ?? (this.elector ? undefined : this.committedLeaderMark) ?? ReportWindow.startingAt(Date.now());
    this.signals.leaderWindow.reset(from);
  }

  /** Leadership ended without a release: what was counted and not committed is the successor's to count. */
  private endLeading(): void {
    this.pending = [];
    if (this.committedCounter) this.counter.restore(this.committedCounter);
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
    if (!this.dirty || !this.committedCounter) return;
    const records: LogRecord[] = [];
    for (const b of this.unacked.values()) records.push(...b);
    records.push(...this.queue);
    try {
      saveCheckpoint(
        this.checkpointPath,
        {
          version: 2,
          counter: this.committedCounter,
          records,
          signals: this.committedNodeMark,
          ...(this.committedLeaderMark ? { leaderSignals: this.committedLeaderMark } : {}),
        },
        durable,
      );
      this.dirty = false;
      this.ctx.metrics.checkpointWrites.inc({ source: this.name });
    } catch (e) {
      this.ctx.metrics.checkpointErrors.inc({ source: this.name });
      this.warnings.warn('checkpoint', `source ${this.name}: writing ${this.checkpointPath} failed: ${(e as Error).message}`);
    }
  }
}
