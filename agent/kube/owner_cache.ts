import type { IncomingMessage } from 'node:http';
import { RateLimitedLog, type Logger } from '../log.ts';
import type { KubeRequester } from './connection.ts';
import { definedOnly, METADATA_ACCEPT } from './list_watch.ts';
import type { KubeObject, OwnerReference } from './types.ts';

/**
 * The controller owners of the ReplicaSets and Jobs that this node's pods reference
 * (ReplicaSet -> Deployment, Job -> CronJob), for workload names in the pod's resource.
 *
 * Only the owners actually referenced are fetched: one metadata-only GET
 * (`Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`) per ReplicaSet or Job
 * uid, kept while a cached pod references it (reference counted) and forgotten after. A
 * ReplicaSet's or Job's controller does not change during its life (the uid is checked, so a name
 * reused by a new object is noticed), so there is nothing to watch: the API load follows the pods
 * of this node, not the ReplicaSets of the cluster (a cluster-wide watch, even metadata-only, would
 * make every node receive every rollout's ReplicaSet updates).
 *
 * Lookups never block: `controllerOf` answers from memory (undefined while the GET is under way);
 * `onResolved` tells when an answer arrived. Failed GETs are retried with backoff.
 */

export interface OwnerCacheOptions {
  connection: KubeRequester;
  log?: Logger;
  /** GETs in flight at once; default 4. */
  concurrency?: number;
  /** Retry after a failed GET: default 1 s doubling to 5 min. */
  retry?: { initialMs: number; maxMs: number };
  /** No byte for this long ends a GET; default 30 s. */
  idleTimeoutMs?: number;
  /** Called when a lookup has an answer (to invalidate what was derived without it). */
  onResolved?: (namespace: string, owned: OwnerReference) => void;
  random?: () => number;
}

/** Kinds whose controller is worth one GET, and where they live. */
const LOOKUP_PATHS: Record<string, string> = {
  ReplicaSet: '/apis/apps/v1',
  Job: '/apis/batch/v1',
};

export function needsOwnerLookup(ref: OwnerReference): boolean {
  return Object.hasOwn(LOOKUP_PATHS, ref.kind);
}

interface Entry {
  namespace: string;
  ref: OwnerReference;
  refs: number;
  /** undefined: not known yet; null: the object has no controller (or is gone). */
  owner: OwnerReference | null | undefined;
  attempts: number;
  inFlight: boolean;
  retryTimer: NodeJS.Timeout | undefined;
}

export class OwnerCache {
  private readonly o: Required<Omit<OwnerCacheOptions, 'log' | 'onResolved'>> & Pick<OwnerCacheOptions, 'log' | 'onResolved'>;
  private readonly entries = new Map<string, Entry>();
  private readonly queue: Entry[] = [];
  private readonly warnings: RateLimitedLog | undefined;
  private inFlight = 0;
  private stopped = false;
  private readonly controllers = new Set<AbortController>();
  /** GETs sent (for tests and load figures). */
  requests = 0;

  constructor(options: OwnerCacheOptions) {
    this.o = { concurrency: 4, retry: { initialMs: 1000, maxMs: 300_000 }, idleTimeoutMs: 30_000, random: Math.random, ...definedOnly(options) };
    this.warnings = options.log ? new RateLimitedLog(options.log) : undefined;
  }

  /** A cached pod references `ref` (owned by it, in `namespace`): look its controller up if new. */
  retain(namespace: string, ref: OwnerReference): void {
    if (!needsOwnerLookup(ref)) return;
    const e = this.entries.get(ref.uid);
    if (e) {
      e.refs++;
      return;
    }
    const entry: Entry = { namespace, ref, refs: 1, owner: undefined, attempts: 0, inFlight: false, retryTimer: undefined };
    this.entries.set(ref.uid, entry);
    this.enqueue(entry);
  }

  /** A pod referencing `ref` left the cache; the entry goes with its last reference. */
  release(ref: OwnerReference): void {
    const e = this.entries.get(ref.uid);
    if (!e) return;
    if (--e.refs > 0) return;
    this.entries.delete(ref.uid);
    if (e.retryTimer) clearTimeout(e.retryTimer);
  }

  /**
   * The controller of the ReplicaSet/Job `ref`: its OwnerReference, null when it has none, undefined
   * when not known (yet). A `ref` nobody retained is not looked up.
   */
  controllerOf(ref: OwnerReference): OwnerReference | null | undefined {
    return this.entries.get(ref.uid)?.owner;
  }

  get size(): number {
    return this.entries.size;
  }

  stop(): void {
    this.stopped = true;
    for (const c of this.controllers) c.abort(new Error('stopped'));
    for (const e of this.entries.values()) if (e.retryTimer) clearTimeout(e.retryTimer);
    this.queue.length = 0;
  }

  private enqueue(e: Entry): void {
    if (this.stopped) return;
    this.queue.push(e);
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.inFlight < this.o.concurrency && this.queue.length > 0) {
      const e = this.queue.shift()!;
      if (this.entries.get(e.ref.uid) !== e || e.owner !== undefined || e.inFlight) continue;
      this.inFlight++;
      e.inFlight = true;
      void this.fetch(e)
        .catch((err: unknown) => this.o.log?.error(`kubernetes: owner lookup failed unexpectedly: ${err instanceof Error ? err.stack : String(err)}`))
        .finally(() => {
        e.inFlight = false;
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async fetch(e: Entry): Promise<void> {
    const { namespace, ref } = e;
    const path = `${LOOKUP_PATHS[ref.kind]}/namespaces/${encodeURIComponent(namespace)}/${ref.kind.toLowerCase()}s/${encodeURIComponent(ref.name)}`;
    const ctl = new AbortController();
    this.controllers.add(ctl);
    const timer = setTimeout(() => ctl.abort(new Error(`no data for ${this.o.idleTimeoutMs} ms`)), this.o.idleTimeoutMs);
    let failure: string;
    try {
      this.requests++;
      const res = await this.o.connection.request(path, { accept: `${METADATA_ACCEPT},application/json`, signal: ctl.signal });
      const body = await readAll(res, () => timer.refresh());
      if (res.statusCode === 200) {
        const obj = JSON.parse(body.toString('utf8')) as KubeObject;
        const sameObject = obj.metadata?.uid === ref.uid;
        this.settle(e, sameObject ? (obj.metadata.ownerReferences?.find((r) => r.controller) ?? null) : null);
        return;
      }
      if (res.statusCode === 404) {
        this.settle(e, null); // gone: its pods will go too
        return;
      }
      if (res.statusCode === 401) this.o.connection.credentialsRejected?.();
      failure = `HTTP ${res.statusCode}: ${body.toString('utf8').slice(0, 200)}`;
    } catch (err) {
      if (this.stopped) return;
      failure = err instanceof Error ? err.message : String(err);
    } finally {
      clearTimeout(timer);
      this.controllers.delete(ctl);
    }
    if (this.stopped || this.entries.get(ref.uid) !== e) return;
    const { initialMs, maxMs } = this.o.retry;
    const delay = Math.round(Math.min(maxMs, initialMs * 2 ** Math.min(e.attempts++, 30)) * (0.8 + 0.4 * this.o.random()));
    this.warnings?.warn(`owner:${failure.slice(0, 40)}`, `kubernetes: looking up ${ref.kind} ${namespace}/${ref.name} failed (${failure}); retrying in ${delay} ms`);
    e.retryTimer = setTimeout(() => {
      e.retryTimer = undefined;
      this.enqueue(e);
    }, delay);
  }

  private settle(e: Entry, owner: OwnerReference | null): void {
    e.owner = owner;
    if (this.entries.get(e.ref.uid) === e) this.o.onResolved?.(e.namespace, e.ref);
  }
}

async function readAll(res: IncomingMessage, touch: () => void): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res as AsyncIterable<Buffer>) {
    touch();
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}
