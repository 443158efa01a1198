import { formatApproxBytes, formatBytes } from '../config/units.ts';
import type { Logger } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';
import type { Emitter, ReadPace } from '../pipeline.ts';
import type { Attributes, LogRecord } from '../record.ts';
import { parseRecordBody, parserByName, type ChosenParser } from './body_parser.ts';
import type { PodMetadataConfig } from './config.ts';
import { PodMetadataAnnotator, type Annotation, type MetadataCut } from './pod_metadata_annotator.ts';
import type { SharedPodCache } from './shared_pod_cache.ts';

/**
 * The stage between a container source and the pipeline: enrich (pod metadata), apply the pod's
 * annotations (exclude, parser), parse bodies. Body parsing runs after enrichment because a pod
 * annotation can pick the parser.
 *
 * The log path never waits on the network. A batch with a record whose pod the cache does not know
 * yet (a pod newer than the watch's last event, or the first LIST still running) is held for at
 * most `wait_for_pod`, and held batches are bounded by `wait_max_bytes`: `emit` returns at once, so
 * the tailer keeps reading. When the API is unreachable nothing is held at all: records go out with
 * their path metadata and are counted by reason. Batches of one file never overtake each other.
 * Acknowledgements pass through untouched; excluded records are dropped, counted, and acknowledged
 * with their batch so checkpoints move.
 */

export type UnenrichedReason = 'api_unavailable' | 'pod_unknown' | 'owner_unknown' | 'wait_buffer_full';

export interface EnrichStageOptions {
  source: string;
  inner: Emitter;
  /** undefined when this source does not enrich (parsing only). */
  pods: SharedPodCache | undefined;
  metadata: PodMetadataConfig;
  parser: ChosenParser;
  timestampFromBody: boolean;
  metrics: SelfMetrics;
  log: Logger;
}

interface Held {
  records: LogRecord[];
  bytes: number;
  weight: number;
  onAccepted: () => void;
  pace: ReadPace | undefined;
  /** When it arrived: it waits `wait_for_pod` from then, or from the first LIST if that went out later. */
  arrivedAt: number;
  resources: Set<Attributes>;
}

const CHECK_MS = 20;

export class EnrichStage implements Emitter {
  private readonly o: EnrichStageOptions;
  private annotator: PodMetadataAnnotator | undefined;
  private readonly held: Held[] = [];
  private heldWeight = 0;
  private timer: NodeJS.Timeout | undefined;
  private seenVersion = -1;
  /** When the cache last had a working watch: a routine reconnect is not an outage. */
  private lastConnected = 0;
  private readonly warnedPods = new Set<string>();
  private readonly weights = new WeakMap<Attributes, number>();

  constructor(options: EnrichStageOptions) {
    this.o = options;
    options.pods?.acquire();
    // Present at 0, so an alert on increase() sees the first unparseable line (annotations may pick other parsers, counted when they do).
    if (options.parser.parse) options.metrics.parseErrors.inc({ source: options.source, parser: options.parser.name }, 0);
    if (options.pods) {
      for (const reason of ['api_unavailable', 'pod_unknown', 'owner_unknown', 'wait_buffer_full']) options.metrics.unenrichedRecords.inc({ source: options.source, reason }, 0);
    }
  }

  emit(records: LogRecord[], bytes: number, onAccepted: () => void, pace?: ReadPace): Promise<void> {
    const mayWait = this.mayWait();
    if (this.held.length === 0 || !this.followsHeld(records)) {
      if (!mayWait || this.allKnown(records)) return this.forward(records, bytes, onAccepted, this.unknownReason(), pace);
    }
    const weight = bytes > 0 ? bytes : records.reduce((n, r) => n + (typeof r.body === 'string' ? r.body.length : 64), 0);
    const resources = new Set<Attributes>();
    for (const r of records) resources.add(r.resource);
    this.held.push({ records, bytes, weight, onAccepted, pace, arrivedAt: Date.now(), resources });
    this.heldWeight += weight;
    this.timer ??= setInterval(() => this.release(false), CHECK_MS).unref();
    let last: Promise<void> = Promise.resolve();
    while (this.heldWeight > this.o.metadata.wait_max_bytes && this.held.length > 0) {
      const h = this.held.shift()!;
      this.heldWeight -= h.weight;
      last = this.forward(h.records, h.bytes, h.onAccepted, 'wait_buffer_full', h.pace);
    }
    if (this.held.length === 0) this.stopTimer();
    return last;
  }

  /** Sends everything held now, as it is (stopping: nothing may stay behind the pipeline's drain). */
  flush(): void {
    this.release(true);
  }

  private release(all: boolean): void {
    const cache = this.o.pods?.cache;
    const now = Date.now();
    const mayWait = this.mayWait();
    const changed = cache !== undefined && cache.version !== this.seenVersion;
    if (cache) this.seenVersion = cache.version;
    const blocked = new Set<Attributes>();
    const askedAt = this.o.pods?.askedAt ?? Infinity;
    for (let i = 0; i < this.held.length; ) {
      const h = this.held[i]!;
      const free = ![...h.resources].some((r) => blocked.has(r));
      const due = all || !mayWait || now >= Math.max(h.arrivedAt, askedAt) + this.o.metadata.wait_for_pod || (changed && this.allKnown(h.records));
      if (free && due) {
        this.held.splice(i, 1);
        this.heldWeight -= h.weight;
        void this.forward(h.records, h.bytes, h.onAccepted, this.unknownReason(), h.pace);
      } else {
        for (const r of h.resources) blocked.add(r);
        i++;
      }
    }
    if (this.held.length === 0) this.stopTimer();
    // pods the cache misses: without a working watch only a LIST brings them (rate-limited there)
    else cache?.refresh();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A record of a file that has a batch held must queue behind it. */
  private followsHeld(records: LogRecord[]): boolean {
    return someResource(records, (resource) => this.held.some((h) => h.resources.has(resource)));
  }

  /**
   * Unknown pods are worth waiting for while the API answers (or did, less than `wait_for_pod` ago:
   * a watch reconnecting is routine), while the first LIST has been out for less than `wait_for_pod`,
   * and while that LIST has not even gone out (the client loading, the connection resolving: the
   * agent's own start-up, seconds on a busy node, is not the API being slow). Held bytes stay bounded
   * by `wait_max_bytes` meanwhile.
   */
  private mayWait(): boolean {
    const pods = this.o.pods;
    if (!pods || this.o.metadata.wait_for_pod <= 0) return false;
    if (pods.state === 'resolving') return true;
    if (pods.state !== 'running') return false;
    const cache = pods.cache!;
    const now = Date.now();
    if (cache.connected) this.lastConnected = now;
    return cache.synced ? now - this.lastConnected < this.o.metadata.wait_for_pod : now - (pods.askedAt ?? now) < this.o.metadata.wait_for_pod;
  }

  private unknownReason(): UnenrichedReason {
    const cache = this.o.pods?.cache;
    return cache?.synced && cache.connected ? 'pod_unknown' : 'api_unavailable';
  }

  private annotatorNow(): PodMetadataAnnotator | undefined {
    if (this.annotator) return this.annotator;
    const cache = this.o.pods?.cache;
    if (cache) this.annotator = new PodMetadataAnnotator(cache, this.o.metadata, (cut) => this.reportCut(cut));
    return this.annotator;
  }

  /** A pod whose labels and annotations went past the budget: counted by kind, logged once. */
  private reportCut(cut: MetadataCut): void {
    const { source, metrics, log, metadata } = this.o;
    const dropped = cut.dropped.label + cut.dropped.annotation + cut.dropped.namespace_label;
    for (const [kind, n] of Object.entries(cut.dropped)) if (n > 0) metrics.podMetadataDroppedKeys.inc({ source, kind }, n);
    const m = cut.pod.metadata;
    log.warn(
      `source ${source}: pod ${m.namespace}/${m.name}: ${cut.kept + dropped} labels and annotations (${formatApproxBytes(cut.keptBytes + cut.droppedBytes)}) ` +
        `are more than kubernetes_metadata allows per pod (max_keys ${metadata.max_keys}, max_bytes ${formatBytes(metadata.max_bytes)}): ` +
        `${cut.kept} (${formatApproxBytes(cut.keptBytes)}) are on its records, ${dropped} (${formatApproxBytes(cut.droppedBytes)}) left out, kta.k8s.metadata.truncated set`,
    );
  }

  /** JSON bytes of a resource (the same object for every record of a file: measured once). */
  private weight(resource: Attributes): number {
    let w = this.weights.get(resource);
    if (w === undefined) {
      w = Buffer.byteLength(JSON.stringify(resource));
      this.weights.set(resource, w);
    }
    return w;
  }

  private allKnown(records: LogRecord[]): boolean {
    const annotator = this.annotatorNow();
    if (!annotator) return false;
    return !someResource(records, (resource) => !annotator.annotate(resource).complete && hasPodIdentity(resource));
  }

  /** Enrich, drop excluded, parse; then hand over. The acknowledgement covers the whole batch. */
  private forward(records: LogRecord[], bytes: number, onAccepted: () => void, reason: UnenrichedReason, pace: ReadPace | undefined): Promise<void> {
    const { source, metrics } = this.o;
    const annotator = this.o.pods?.state === 'off' ? undefined : this.annotatorNow();
    const enriching = this.o.pods !== undefined && this.o.pods.state !== 'off';
    let out = records;
    let unknown = 0;
    let ownerless = 0;
    let excluded = 0;
    let errors: Map<string, number> | undefined;
    let lastIn: Attributes | undefined;
    let ann: Annotation | undefined;
    let parser = this.o.parser;
    // What the pod metadata adds to each record, as encoded: counted against buffers and windows.
    let added = 0;
    let addedPerRecord = 0;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      if (r.resource !== lastIn) {
        lastIn = r.resource;
        ann = annotator?.annotate(lastIn);
        parser = ann?.steering.parser ? parserByName(ann.steering.parser) : this.o.parser;
        if (ann?.known && ann.steering.invalid.length > 0) this.warnInvalid(ann);
        addedPerRecord = ann?.known && ann.resource !== lastIn ? Math.max(0, this.weight(ann.resource) - this.weight(lastIn)) : 0;
      }
      if (ann?.known) {
        if (ann.steering.exclude) {
          if (out === records) out = records.slice(0, i);
          excluded++;
          continue;
        }
        r.resource = ann.resource;
        added += addedPerRecord;
        if (!ann.complete) ownerless++;
      } else if (enriching) unknown++;
      if (!parseRecordBody(r, parser, this.o.timestampFromBody)) {
        errors ??= new Map();
        errors.set(parser.name, (errors.get(parser.name) ?? 0) + 1);
      }
      if (out !== records) out.push(r);
    }
    if (unknown > 0) metrics.unenrichedRecords.inc({ source, reason }, unknown);
    if (ownerless > 0) metrics.unenrichedRecords.inc({ source, reason: 'owner_unknown' }, ownerless);
    for (const [name, n] of errors ?? []) metrics.parseErrors.inc({ source, parser: name }, n);
    if (excluded > 0) metrics.droppedRecords.inc({ component: source, reason: 'excluded' }, excluded);
    if (added > 0) pace?.weigh?.(added);
    return this.o.inner.emit(out, bytes + added, onAccepted, pace);
  }

  private warnInvalid(ann: Annotation): void {
    const uid = String(ann.resource['k8s.pod.uid']);
    if (this.warnedPods.has(uid)) return;
    this.warnedPods.add(uid);
    this.o.log.warn(
      `source ${this.o.source}: pod ${String(ann.resource['k8s.namespace.name'])}/${String(ann.resource['k8s.pod.name'])}: ` +
        `ignoring annotations ${ann.steering.invalid.join(', ')} (exclude takes "true"/"false", parser takes none, json or logfmt)`,
    );
  }
}

/** `test` on each resource of a batch, once per run of records sharing it (records of a file share one). */
function someResource(records: LogRecord[], test: (resource: Attributes) => boolean): boolean {
  let last: Attributes | undefined;
  for (const r of records) {
    if (r.resource === last) continue;
    last = r.resource;
    if (test(last)) return true;
  }
  return false;
}

function hasPodIdentity(resource: Attributes): boolean {
  return resource['k8s.pod.uid'] !== undefined || (resource['k8s.pod.name'] !== undefined && resource['k8s.namespace.name'] !== undefined);
}
