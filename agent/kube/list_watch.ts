import type { IncomingMessage } from 'node:http';
import { RateLimitedLog, type Logger } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';
import { Backoff } from '../backoff.ts';
import { KubeCredentialsError, type KubeRequester } from './connection.ts';
import { objectKey, type KubeList, type KubeObject, type Status, type WatchEvent } from './types.ts';

/**
 * One resource kept in memory by LIST then WATCH (reference/kubernetes-api-watch.md §1-§3):
 *
 * - LIST in pages (`limit`, `continue`; an expired continue token restarts the LIST). The first LIST
 *   uses `resourceVersion=0` (served from the API server's watch cache, where the pods' `spec.nodeName`
 *   field selector is indexed; a quorum LIST would make etcd read every pod in the cluster for each
 *   node), later ones are consistent reads.
 * - WATCH from the list's resourceVersion with `allowWatchBookmarks=true` and a server-side
 *   `timeoutSeconds` jittered in 300-600 s; a clean end rewatches from the last resourceVersion seen
 *   (objects and bookmarks), so quiet periods do not make it relist.
 * - 410 Gone (HTTP status or ERROR event): relist and diff against the cache; keys that vanished are
 *   reported as deletes whose final state is unknown. A watch that answers 410 right after a fresh
 *   LIST (a broken watch cache, a proxy in the way) is warned about once: the cache then lives on
 *   LISTs, with backoff, and `resync()` lets a reader that misses an object ask for one sooner.
 * - 429: waits `Retry-After`; 504 "Too large resource version": retries after ~1 s, no relist; 401:
 *   asks the connection for fresh credentials; anything else (5xx, 403, network, a broken stream):
 *   backoff 800 ms doubling to 30 s, ±20 % jitter.
 * - A client-side idle timeout (no byte for `idleTimeoutMs`, also before the headers) replaces a
 *   total timeout: a silently dead connection is reconnected. An open watch that went quiet that long
 *   (a server that sends no bookmarks, a resource nobody changes: volumeattachments, nodes) cannot be
 *   told from a dead one; it is resumed from its resourceVersion at once, as a routine end (`closed`,
 *   logged at debug), not a failure.
 * - `managedFields` are dropped on receipt. Every restart is counted in
 *   `telemetry_agent_kube_watch_restarts_total{resource,reason}` (reason `closed` is the routine
 *   end: at `timeoutSeconds`, or an open watch quiet for `idleTimeoutMs`).
 *
 * Nothing here blocks a caller: `start()` returns at once, the cache is read synchronously.
 */

export const METADATA_LIST_ACCEPT = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';
export const METADATA_ACCEPT = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1';

export type RestartReason =
  | 'closed' // the server ended the watch cleanly (timeoutSeconds): routine
  | 'expired' // 410: the resourceVersion left the server's history -> relist
  | 'continue_expired' // 410 on a LIST continue token -> the LIST starts over
  | 'idle_timeout' // no byte for idleTimeoutMs
  | 'network'
  | 'unauthorized'
  | 'forbidden'
  | 'throttled'
  | 'too_large_resource_version'
  | 'server_error'
  | 'client_error'
  | 'error_event'
  | 'decode_error'
  | 'credentials';

export interface WatchHandlers<T> {
  /** A LIST is about to be applied (its adds, updates and deletes follow, then `onListEnd`); `initial`: the first one. */
  onListStart?(initial: boolean): void;
  onListEnd?(initial: boolean): void;
  /** `fromList`: found by a LIST (the first, or a relist after 410), not by a watch event. */
  onAdd?(obj: T, fromList: boolean): void;
  /** `oldObj` is what the cache held before; MODIFIED events and relists carry the whole new state. */
  onUpdate?(oldObj: T, newObj: T, fromList: boolean): void;
  /** `finalStateUnknown`: found missing at a relist, `obj` is the last state this cache saw. */
  onDelete?(obj: T, finalStateUnknown: boolean): void;
}

export interface ListWatchOptions<T extends KubeObject> {
  connection: KubeRequester;
  /** Collection path, e.g. `/api/v1/pods` or `/apis/apps/v1/namespaces/web/replicasets`. */
  path: string;
  /** The `resource` label of the restart counter and the name in log lines, e.g. `pods`. */
  resource: string;
  fieldSelector?: string;
  labelSelector?: string;
  /** Ask for PartialObjectMetadata (labels, annotations, owners) instead of whole objects. */
  metadataOnly?: boolean;
  /** Applied to each object (already without managedFields) before it is cached, e.g. to slim it. */
  transform?: (obj: KubeObject) => T;
  log?: Logger;
  /** LIST page size; default 500. */
  pageSize?: number;
  /** Server-side watch duration, picked uniformly per watch; default 300-600 s. */
  watchTimeoutSeconds?: { min: number; max: number };
  /** No byte for this long (also while waiting for headers) ends the request; default 150 s (2 bookmark periods + margin). */
  idleTimeoutMs?: number;
  /** Default 800 ms doubling to 30 s. */
  backoff?: { initialMs: number; maxMs: number };
  /** Wait after 504 "Too large resource version"; default 1 s (±20 %). */
  tooLargeResourceVersionRetryMs?: number;
  /** Longest `Retry-After` honoured; default 120 s. */
  maxRetryAfterMs?: number;
  /** The first LIST reads the watch cache (`resourceVersion=0`); default true. */
  initialListFromCache?: boolean;
  /** Objects bigger than this in the watch stream are a decode error; default 64 MiB. */
  maxEventBytes?: number;
  random?: () => number;
}

type Outcome =
  | { kind: 'listed' }
  | { kind: 'closed'; healthy: boolean }
  /** `atOnce`: a watch that ended with 410 before delivering anything, right after a LIST. */
  | { kind: 'expired'; atOnce?: boolean }
  | { kind: 'retry'; reason: RestartReason; message: string; delayMs?: number }
  | { kind: 'stopped' };

const STOPPED: Outcome = { kind: 'stopped' };
const MIN_HEALTHY_WATCH_MS = 1000;
const ERROR_BODY_LIMIT = 64 * 1024;

/** One HTTP exchange: an abort controller and the idle timer that fires it. */
class Exchange {
  readonly ctl = new AbortController();
  idle = false;
  /** The response was read to its end: nothing to tear down. */
  complete = false;
  private readonly timer: NodeJS.Timeout;

  constructor(idleMs: number) {
    this.timer = setTimeout(() => {
      this.idle = true;
      this.ctl.abort(new Error(`no data for ${idleMs} ms`));
    }, idleMs);
  }

  touch(): void {
    this.timer.refresh();
  }

  end(): void {
    clearTimeout(this.timer);
  }
}

/** Cuts a byte stream at `\n` without decoding partial lines (a UTF-8 character may straddle chunks). */
class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  *push(chunk: Buffer): Generator<Buffer> {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      let line = chunk.subarray(start, nl);
      if (this.size > 0) {
        this.parts.push(line);
        line = Buffer.concat(this.parts, this.size + line.length);
        this.parts = [];
        this.size = 0;
      }
      start = nl + 1;
      if (line.length > 0) yield line;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.parts.push(rest);
      this.size += rest.length;
      if (this.size > this.max) throw new LineTooLong(`a watch event exceeds ${this.max} bytes`);
    }
  }

  get pending(): number {
    return this.size;
  }
}

class LineTooLong extends Error {}

export class ListWatch<T extends KubeObject = KubeObject> {
  readonly resource: string;
  private readonly o: Required<Omit<ListWatchOptions<T>, 'fieldSelector' | 'labelSelector' | 'log' | 'transform'>> &
    Pick<ListWatchOptions<T>, 'fieldSelector' | 'labelSelector' | 'log' | 'transform'>;
  private readonly metrics: SelfMetrics;
  private readonly warnings: RateLimitedLog | undefined;
  private readonly backoff: Backoff;
  private readonly handlers = new Set<WatchHandlers<T>>();

  private store = new Map<string, T>();
  private rv: string | undefined;
  private lastProblem: string | undefined;
  /** A watch stream is open (headers received, not ended). */
  private isWatching = false;
  /** A LIST is wanted now (resync) instead of after the backoff in progress. */
  private resyncWanted = false;
  /** The loop waits to LIST again after a 410 (not after a failure: its backoff is honoured). */
  private listPending = false;
  /** The last request was a LIST: a 410 now means the watch fails at once. */
  private justListed = false;
  private lastListAt = 0;
  /** The watch answered 410 at once after a LIST: warned once, until a watch delivers again. */
  private goneAfterList = false;
  private isSynced = false;
  private isConnected = false;
  private stopped = false;
  private failures = 0;
  private loop: Promise<void> | undefined;
  private current: Exchange | undefined;
  private wake: (() => void) | undefined;
  private syncedWaiters: (() => void)[] = [];

  constructor(options: ListWatchOptions<T>, metrics: SelfMetrics) {
    this.o = {
      pageSize: 500,
      watchTimeoutSeconds: { min: 300, max: 600 },
      idleTimeoutMs: 150_000,
      backoff: { initialMs: 800, maxMs: 30_000 },
      tooLargeResourceVersionRetryMs: 1000,
      maxRetryAfterMs: 120_000,
      initialListFromCache: true,
      maxEventBytes: 64 * 1024 * 1024,
      metadataOnly: false,
      random: Math.random,
      ...definedOnly(options),
    };
    this.resource = options.resource;
    this.metrics = metrics;
    this.warnings = options.log ? new RateLimitedLog(options.log) : undefined;
    this.backoff = new Backoff(this.o.backoff.initialMs, this.o.backoff.maxMs, this.o.random);
  }

  /** Starts the loop in the background (idempotent). */
  start(): void {
    this.loop ??= this.run();
  }

  /** Ends the request in flight and the loop; the cache keeps its contents. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.ctl.abort(new Error('stopped'));
    this.wake?.();
    await this.loop;
  }

  /** Adds event callbacks; returns a function that removes them. Callbacks run synchronously in the loop. */
  subscribe(handlers: WatchHandlers<T>): () => void {
    this.handlers.add(handlers);
    return () => this.handlers.delete(handlers);
  }

  /** The first LIST has completed: the cache reflects the server (up to the watch's delay). */
  get synced(): boolean {
    return this.isSynced;
  }

  /** The last request got a 2xx (a LIST page or an open watch) and nothing failed since. */
  get connected(): boolean {
    return this.isConnected;
  }

  /**
   * Why the API does not serve this list+watch right now (the last request was refused or failed,
   * e.g. `forbidden: HTTP 403 Forbidden: ...`), for readiness; undefined once a request succeeds again.
   */
  get problem(): string | undefined {
    return this.isConnected ? undefined : this.lastProblem;
  }

  /** A watch stream is open: changes arrive as they happen. */
  get watching(): boolean {
    return this.isWatching;
  }

  /**
   * While no watch is open (a backoff after failures, a watch that keeps answering 410): relist now
   * rather than at the end of the backoff, at most once per `minIntervalMs`. A reader that finds an
   * object missing calls it; with a watch open it does nothing (the watch brings the object).
   */
  resync(minIntervalMs: number): void {
    if (this.isWatching || this.stopped || !this.listPending || Date.now() - this.lastListAt < minIntervalMs) return;
    this.resyncWanted = true;
    this.wake?.();
  }

  /** The resourceVersion a resumed watch would start from. */
  get resourceVersion(): string | undefined {
    return this.rv;
  }

  /** Resolves at the first completed LIST (or at once if done; never rejects, may never resolve). */
  whenSynced(): Promise<void> {
    if (this.isSynced) return Promise.resolve();
    return new Promise((resolve) => this.syncedWaiters.push(resolve));
  }

  /** By `namespace/name` (or `name` when cluster-scoped). */
  get(key: string): T | undefined {
    return this.store.get(key);
  }

  getByName(namespace: string | undefined, name: string): T | undefined {
    return this.store.get(namespace ? `${namespace}/${name}` : name);
  }

  get size(): number {
    return this.store.size;
  }

  values(): IterableIterator<T> {
    return this.store.values();
  }

  // ---- the loop ----

  private async run(): Promise<void> {
    let needList = true;
    let firstList = true;
    while (!this.stopped) {
      let outcome: Outcome;
      try {
        outcome = needList ? await this.listAll(firstList && this.o.initialListFromCache ? '0' : undefined) : await this.watchOnce();
      } catch (e) {
        // a bug, not the server: keep going, slowly
        outcome = { kind: 'retry', reason: 'decode_error', message: `internal error: ${e instanceof Error ? e.stack : String(e)}` };
      }
      if (this.stopped || outcome.kind === 'stopped') break;
      let delay = 0;
      switch (outcome.kind) {
        case 'listed':
          needList = false;
          firstList = false;
          continue;
        case 'closed':
          this.count('closed');
          this.o.log?.debug(`kubernetes ${this.resource}: watch ended by the server, resuming at resourceVersion ${this.rv}`);
          if (!outcome.healthy) delay = this.fail();
          break;
        case 'expired':
          this.count('expired');
          if (outcome.atOnce && !this.goneAfterList) {
            this.goneAfterList = true;
            this.o.log?.warn(
              `kubernetes ${this.resource}: the watch answers 410 Gone right after a LIST (resourceVersion ${this.rv}); ` +
                'listing again with backoff instead of watching until a watch works (counted in telemetry_agent_kube_watch_restarts_total{reason="expired"})',
            );
          } else {
            this.o.log?.info(`kubernetes ${this.resource}: resourceVersion ${this.rv} expired (410), listing again`);
          }
          needList = true;
          delay = this.failures++ === 0 ? 0 : this.backoff.next();
          this.listPending = true;
          break;
        case 'retry':
          this.count(outcome.reason);
          this.isConnected = false;
          this.lastProblem = `${needList ? 'list' : 'watch'} ${outcome.reason}: ${outcome.message}`;
          delay = outcome.delayMs ?? this.fail();
          if (outcome.delayMs !== undefined) this.failures++;
          this.warnings?.warn(
            `${this.resource}:${outcome.reason}`,
            `kubernetes ${this.resource}: ${needList ? 'list' : 'watch'} failed (${outcome.reason}): ${outcome.message}; retrying in ${delay} ms`,
          );
          break;
      }
      if (delay > 0 && !(this.listPending && this.resyncWanted)) await this.sleep(delay);
      this.resyncWanted = false;
      this.listPending = false;
    }
    this.isConnected = false;
  }

  private fail(): number {
    this.failures++;
    return this.backoff.next();
  }

  private healthy(): void {
    if (this.failures > 0) this.o.log?.info(`kubernetes ${this.resource}: watching again after ${this.failures} failed attempt(s)`);
    this.goneAfterList = false;
    this.failures = 0;
    this.backoff.reset();
  }

  private count(reason: RestartReason): void {
    this.metrics.kubeWatchRestarts.inc({ resource: this.resource, reason });
  }

  private sleep(ms: number): Promise<void> {
    if (this.resyncWanted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  private url(params: Record<string, string | undefined>): string {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, v);
    if (this.o.fieldSelector) q.set('fieldSelector', this.o.fieldSelector);
    if (this.o.labelSelector) q.set('labelSelector', this.o.labelSelector);
    return `${this.o.path}?${q.toString()}`;
  }

  // ---- LIST ----

  private async listAll(resourceVersion: string | undefined): Promise<Outcome> {
    this.lastListAt = Date.now();
    const items = new Map<string, T>();
    let listRv: string | undefined;
    let cont: string | undefined;
    let restarted = false;
    const accept = this.o.metadataOnly ? `${METADATA_LIST_ACCEPT},application/json` : 'application/json';
    for (;;) {
      const url = this.url({ limit: String(this.o.pageSize), continue: cont, resourceVersion: cont ? undefined : resourceVersion });
      const r = await this.fetchJson(url, accept);
      if ('kind' in r) {
        if (r.kind === 'expired' && cont !== undefined && !restarted) {
          // the continue token outlived the server's history: start the LIST over, once without waiting
          this.count('continue_expired');
          this.o.log?.info(`kubernetes ${this.resource}: list continue token expired, listing from the start`);
          restarted = true;
          cont = undefined;
          listRv = undefined;
          items.clear();
          continue;
        }
        return r;
      }
      const list = r.body as KubeList;
      if (!list || !Array.isArray(list.items)) return { kind: 'retry', reason: 'decode_error', message: 'LIST response without items' };
      if (listRv === undefined) listRv = list.metadata?.resourceVersion;
      for (const raw of list.items) {
        if (!raw?.metadata) continue;
        const obj = this.prepare(raw);
        items.set(objectKey(obj), obj);
      }
      cont = list.metadata?.continue || undefined;
      if (!cont) break;
    }
    if (!listRv) return { kind: 'retry', reason: 'decode_error', message: 'LIST response without metadata.resourceVersion' };
    this.justListed = true;
    this.replace(items, listRv);
    return { kind: 'listed' };
  }

  /** A GET whose whole body is JSON; returns it, or the outcome of a failure. */
  private async fetchJson(url: string, accept: string): Promise<{ body: unknown } | Outcome> {
    const ex = this.begin();
    try {
      const res = await this.o.connection.request(url, { accept, signal: ex.ctl.signal });
      const body = await this.readBody(res, ex, res.statusCode === 200 ? Infinity : ERROR_BODY_LIMIT);
      if (res.statusCode !== 200) return this.httpFailure(res, body);
      this.isConnected = true;
      try {
        return { body: JSON.parse(body.toString('utf8')) };
      } catch (e) {
        return { kind: 'retry', reason: 'decode_error', message: `LIST body is not JSON: ${(e as Error).message}` };
      }
    } catch (e) {
      return this.thrown(e, ex);
    } finally {
      this.finish(ex);
    }
  }

  private async readBody(res: IncomingMessage, ex: Exchange, limit: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const chunk of res as AsyncIterable<Buffer>) {
      ex.touch();
      if (n < limit) chunks.push(chunk);
      n += chunk.length;
    }
    ex.complete = true;
    return Buffer.concat(chunks);
  }

  /** Applies a LIST: replaces the cache and reports the differences as events. */
  private replace(items: Map<string, T>, rv: string): void {
    const old = this.store;
    const initial = !this.isSynced;
    this.store = items;
    this.rv = rv;
    for (const h of this.handlers) this.call(() => h.onListStart?.(initial));
    for (const [key, obj] of old) if (!items.has(key)) this.emitDelete(obj, true);
    for (const [key, obj] of items) {
      const prev = old.get(key);
      if (prev && prev.metadata.resourceVersion === obj.metadata.resourceVersion && prev.metadata.uid === obj.metadata.uid) {
        items.set(key, prev); // unchanged: keep the object consumers already hold
      } else {
        this.emitUpsert(prev, obj, true);
      }
    }
    for (const h of this.handlers) this.call(() => h.onListEnd?.(initial));
    if (!this.isSynced) {
      this.isSynced = true;
      this.o.log?.debug(`kubernetes ${this.resource}: synced, ${items.size} object(s)`);
      for (const w of this.syncedWaiters.splice(0)) w();
    }
  }

  // ---- WATCH ----

  private async watchOnce(): Promise<Outcome> {
    const { min, max } = this.o.watchTimeoutSeconds;
    const timeoutSeconds = min + Math.floor(this.o.random() * (max - min + 1));
    const url = this.url({
      watch: '1',
      resourceVersion: this.rv,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(Math.min(max, timeoutSeconds)),
    });
    const accept = this.o.metadataOnly ? `${METADATA_ACCEPT},application/json` : 'application/json';
    const ex = this.begin();
    const started = Date.now();
    let events = 0;
    const atOnce = this.justListed;
    this.justListed = false;
    try {
      const res = await this.o.connection.request(url, { accept, signal: ex.ctl.signal });
      if (res.statusCode !== 200) {
        const failure = this.httpFailure(res, await this.readBody(res, ex, ERROR_BODY_LIMIT));
        return failure.kind === 'expired' ? { kind: 'expired', atOnce } : failure;
      }
      this.isConnected = true;
      this.isWatching = true;
      const lines = new LineSplitter(this.o.maxEventBytes);
      for await (const chunk of res as AsyncIterable<Buffer>) {
        ex.touch();
        for (const line of lines.push(chunk)) {
          const stop = this.applyEvent(line);
          if (stop) return stop.kind === 'expired' ? { kind: 'expired', atOnce: atOnce && events === 0 } : stop;
          if (++events === 1) this.healthy();
        }
      }
      ex.complete = true;
      if (lines.pending > 0) return { kind: 'retry', reason: 'network', message: 'watch stream ended inside an event' };
      return { kind: 'closed', healthy: events > 0 || Date.now() - started >= MIN_HEALTHY_WATCH_MS };
    } catch (e) {
      if (e instanceof LineTooLong) return { kind: 'retry', reason: 'decode_error', message: e.message };
      return this.thrown(e, ex);
    } finally {
      this.isWatching = false;
      this.finish(ex);
    }
  }

  /** Applies one watch event; returns an outcome when the stream must end. */
  private applyEvent(line: Buffer): Outcome | undefined {
    let ev: WatchEvent;
    try {
      ev = JSON.parse(line.toString('utf8')) as WatchEvent;
    } catch (e) {
      return { kind: 'retry', reason: 'decode_error', message: `watch event is not JSON: ${(e as Error).message}` };
    }
    if (!ev || typeof ev !== 'object' || !ev.object || typeof ev.object !== 'object') {
      return { kind: 'retry', reason: 'decode_error', message: 'watch event without object' };
    }
    switch (ev.type) {
      case 'ERROR': {
        const st = ev.object as Status;
        if (st.code === 410 || st.reason === 'Expired' || st.reason === 'Gone') return { kind: 'expired' };
        return { kind: 'retry', reason: 'error_event', message: `ERROR event ${st.code ?? ''} ${st.reason ?? ''}: ${st.message ?? ''}` };
      }
      case 'BOOKMARK': {
        const rv = (ev.object as KubeObject).metadata?.resourceVersion;
        if (rv) this.rv = rv;
        return undefined;
      }
      case 'ADDED':
      case 'MODIFIED':
      case 'DELETED': {
        const raw = ev.object as KubeObject;
        if (!raw.metadata) return { kind: 'retry', reason: 'decode_error', message: `${ev.type} event without metadata` };
        const obj = this.prepare(raw);
        const key = objectKey(obj);
        const prev = this.store.get(key);
        if (ev.type === 'DELETED') {
          this.store.delete(key);
          if (obj.metadata.resourceVersion) this.rv = obj.metadata.resourceVersion;
          this.emitDelete(obj, false);
        } else {
          this.store.set(key, obj);
          if (obj.metadata.resourceVersion) this.rv = obj.metadata.resourceVersion;
          this.emitUpsert(prev, obj, false);
        }
        return undefined;
      }
      default:
        this.o.log?.debug(`kubernetes ${this.resource}: ignoring watch event of type ${String((ev as { type?: unknown }).type)}`);
        return undefined;
    }
  }

  private prepare(raw: KubeObject): T {
    if (raw.metadata.managedFields) delete raw.metadata.managedFields;
    return this.o.transform ? this.o.transform(raw) : (raw as T);
  }

  private emitUpsert(prev: T | undefined, obj: T, relist: boolean): void {
    if (prev && prev.metadata.uid && obj.metadata.uid && prev.metadata.uid !== obj.metadata.uid) {
      // same name, new object (deleted and recreated while we were not watching)
      this.emitDelete(prev, relist);
      prev = undefined;
    }
    for (const h of this.handlers) {
      try {
        if (prev) h.onUpdate?.(prev, obj, relist);
        else h.onAdd?.(obj, relist);
      } catch (e) {
        this.handlerFailed(e);
      }
    }
  }

  private emitDelete(obj: T, finalStateUnknown: boolean): void {
    for (const h of this.handlers) {
      try {
        h.onDelete?.(obj, finalStateUnknown);
      } catch (e) {
        this.handlerFailed(e);
      }
    }
  }

  private call(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.handlerFailed(e);
    }
  }

  private handlerFailed(e: unknown): void {
    this.warnings?.warn(`${this.resource}:handler`, `kubernetes ${this.resource}: an event handler failed: ${e instanceof Error ? e.stack : String(e)}`);
  }

  // ---- errors ----

  private begin(): Exchange {
    const ex = new Exchange(this.o.idleTimeoutMs);
    this.current = ex;
    if (this.stopped) ex.ctl.abort(new Error('stopped'));
    return ex;
  }

  private finish(ex: Exchange): void {
    ex.end();
    if (!ex.complete && !ex.ctl.signal.aborted) ex.ctl.abort(new Error('done')); // tears down a response left unread
    if (this.current === ex) this.current = undefined;
  }

  private thrown(e: unknown, ex: Exchange): Outcome {
    if (this.stopped) return STOPPED;
    if (ex.idle && this.isWatching) {
      this.o.log?.debug(`kubernetes ${this.resource}: watch quiet for ${this.o.idleTimeoutMs} ms (no event, no bookmark), resuming at resourceVersion ${this.rv}`);
      return { kind: 'closed', healthy: true };
    }
    if (ex.idle) return { kind: 'retry', reason: 'idle_timeout', message: `no data for ${this.o.idleTimeoutMs} ms` };
    if (e instanceof KubeCredentialsError) return { kind: 'retry', reason: 'credentials', message: e.message };
    const err = e as NodeJS.ErrnoException;
    return { kind: 'retry', reason: 'network', message: err?.code ? `${err.code} ${err.message}` : String(err?.message ?? e) };
  }

  private httpFailure(res: IncomingMessage, body: Buffer): Outcome {
    const code = res.statusCode ?? 0;
    let st: Status | undefined;
    try {
      st = JSON.parse(body.toString('utf8')) as Status;
    } catch {
      st = undefined;
    }
    const message = `HTTP ${code}${st?.reason ? ` ${st.reason}` : ''}${st?.message ? `: ${st.message}` : ''}`;
    const retryAfter = this.retryAfterMs(res.headers['retry-after'], st);
    if (code === 410) return { kind: 'expired' };
    if (code === 401) {
      this.o.connection.credentialsRejected?.();
      return { kind: 'retry', reason: 'unauthorized', message };
    }
    if (code === 403) return { kind: 'retry', reason: 'forbidden', message, delayMs: retryAfter };
    if (code === 429) return { kind: 'retry', reason: 'throttled', message, delayMs: retryAfter };
    if (code === 504 && isTooLargeResourceVersion(st, body)) {
      const base = this.o.tooLargeResourceVersionRetryMs;
      return { kind: 'retry', reason: 'too_large_resource_version', message, delayMs: Math.round(base * (0.8 + 0.4 * this.o.random())) };
    }
    if (code >= 500) return { kind: 'retry', reason: 'server_error', message, delayMs: retryAfter };
    return { kind: 'retry', reason: 'client_error', message };
  }

  private retryAfterMs(header: string | undefined, st: Status | undefined): number | undefined {
    let ms: number | undefined;
    if (header !== undefined) {
      const s = Number(header.trim());
      if (Number.isFinite(s)) ms = s * 1000;
      else {
        const at = Date.parse(header);
        if (Number.isFinite(at)) ms = at - Date.now();
      }
    } else if (st?.details?.retryAfterSeconds !== undefined) {
      ms = st.details.retryAfterSeconds * 1000;
    }
    if (ms === undefined || !(ms >= 0)) return undefined;
    return Math.min(this.o.maxRetryAfterMs, Math.round(ms));
  }
}

/** `o` without the keys whose value is undefined, so that spreading it keeps defaults. */
export function definedOnly<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function isTooLargeResourceVersion(st: Status | undefined, body: Buffer): boolean {
  if (st?.details?.causes?.some((c) => c.reason === 'ResourceVersionTooLarge')) return true;
  return /too large resource version/i.test(st?.message ?? body.toString('utf8'));
}
