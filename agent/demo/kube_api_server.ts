import { createHash, randomUUID } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';

/**
 * A protocol-faithful fake of the Kubernetes API server for list+watch clients
 * (reference/kubernetes-api-watch.md): one object store per resource with a global, monotonically
 * increasing resourceVersion and a bounded history of events, so a watch resumed from a too-old
 * resourceVersion gets 410 (as an HTTP status or, configurable, as an ERROR event in the stream).
 *
 * - LIST: fieldSelector (any dotted field path, `=`/`==`/`!=`), labelSelector (equality, `!=`,
 *   exists, `!key`), `limit`/`continue` over a consistent snapshot (tokens expire -> 410), the
 *   list's `metadata.resourceVersion`; metadata-only Accept (`as=PartialObjectMetadataList`).
 * - WATCH: resourceVersion unset/"0" -> synthetic ADDED for the current state, then changes;
 *   X -> changes strictly after X (410 when X is older than the history, 504 "Too large resource
 *   version" when newer than the store). Objects entering or leaving a field selector become
 *   ADDED/DELETED, like the API server's watch cache. Newline-delimited JSON over chunked transfer,
 *   optionally split into writes of `chunkBytes` bytes; BOOKMARKs every `bookmarkIntervalMs` and
 *   just before `timeoutSeconds` ends the stream cleanly.
 * - GET of one object (also metadata-only).
 * - Bearer-token auth (401 otherwise; the token can change at runtime), or TLS client certificates.
 * - Faults for the next N matching requests: an HTTP status (with Retry-After), `hang` (headers,
 *   then nothing), `stall` (nothing at all), `drop` (connection closed); `breakWatches()` cuts every
 *   open watch in the middle of an event.
 * - A request log to count requests by verb and resource.
 *
 * Time is scalable: `secondMs` is how long one API second lasts (timeoutSeconds, default bookmark
 * period), so a test can run hours of watch traffic in seconds.
 */

export type Verb = 'list' | 'watch' | 'get' | 'create' | 'update';

export interface ResourceType {
  group: string;
  version: string;
  kind: string;
  namespaced: boolean;
}

export const RESOURCE_TYPES: Record<string, ResourceType> = {
  pods: { group: '', version: 'v1', kind: 'Pod', namespaced: true },
  namespaces: { group: '', version: 'v1', kind: 'Namespace', namespaced: false },
  nodes: { group: '', version: 'v1', kind: 'Node', namespaced: false },
  replicasets: { group: 'apps', version: 'v1', kind: 'ReplicaSet', namespaced: true },
  deployments: { group: 'apps', version: 'v1', kind: 'Deployment', namespaced: true },
  statefulsets: { group: 'apps', version: 'v1', kind: 'StatefulSet', namespaced: true },
  daemonsets: { group: 'apps', version: 'v1', kind: 'DaemonSet', namespaced: true },
  jobs: { group: 'batch', version: 'v1', kind: 'Job', namespaced: true },
  cronjobs: { group: 'batch', version: 'v1', kind: 'CronJob', namespaced: true },
  // ---- events and leases (kubernetes_events source, leader election) ----
  /** Stored as core/v1; also served as events.k8s.io/v1 (EVENTS_V1_VIEW), like the real server. */
  events: { group: '', version: 'v1', kind: 'Event', namespaced: true },
  leases: { group: 'coordination.k8s.io', version: 'v1', kind: 'Lease', namespaced: true },
  persistentvolumeclaims: { group: '', version: 'v1', kind: 'PersistentVolumeClaim', namespaced: true },
  // ---- end events and leases ----
  // storage, for the cluster signal trackers (agent/cluster/)
  persistentvolumes: { group: '', version: 'v1', kind: 'PersistentVolume', namespaced: false },
  storageclasses: { group: 'storage.k8s.io', version: 'v1', kind: 'StorageClass', namespaced: false },
  volumeattachments: { group: 'storage.k8s.io', version: 'v1', kind: 'VolumeAttachment', namespaced: false },
};

/** Resources a client may create (POST) and update (PUT, with resourceVersion preconditions: 409 when stale). */
const WRITABLE = new Set(['leases']);

export interface FakeMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
  managedFields?: unknown[];
  generateName?: string;
}

export interface FakeObject {
  apiVersion?: string;
  kind?: string;
  metadata: FakeMeta;
  [field: string]: unknown;
}

export interface FakeKubeApiServerOptions {
  /** Bearer token every request must carry; undefined: no token check. */
  token?: string;
  /** Events kept for resuming watches; older resourceVersions get 410. Default 10 000. */
  historySize?: number;
  /** Length of one API second in ms (timeoutSeconds, bookmark period). Default 1000. */
  secondMs?: number;
  /** BOOKMARK period for watches asking for them; default 60 API seconds. */
  bookmarkIntervalMs?: number;
  /** Split every watch line into writes of this many bytes (each its own chunk, a tick apart). */
  chunkBytes?: number;
  /**
   * How a watch from a too-old resourceVersion is refused: 200 + an ERROR event (default, as a real
   * v1.20 API server answers from its watch cache after a compaction) or HTTP 410 (other servers, proxies).
   */
  expiredAs?: 'status' | 'event';
  /** Continue tokens older than this get 410. Default 5 min. */
  continueTtlMs?: number;
  /** Serve HTTPS; `requestClientCert` makes a client certificate signed by `ca` an accepted identity. */
  tls?: { key: string | Buffer; cert: string | Buffer; ca?: string | Buffer; requestClientCert?: boolean };
  /** Give stored objects managedFields, like a real server (default true). */
  managedFields?: boolean;
  /**
   * Never send BOOKMARKs, even when asked. Default true: a real v1.20 API server sent none on a quiet
   * watch (volumeattachments, 70 s with allowWatchBookmarks=true, not even before its end); false
   * sends them every `bookmarkIntervalMs` and just before `timeoutSeconds`, as newer servers do.
   */
  noBookmarks?: boolean;
  /** Serve the events.k8s.io/v1 view of Events (default true; false: 404 like a server without the group). */
  eventsV1?: boolean;
}

export interface FaultMatch {
  verb?: Verb;
  resource?: string;
}

export type Fault =
  | { kind: 'status'; status: number; reason?: string; message?: string; retryAfterSeconds?: number; causes?: { reason: string; message: string }[] }
  | { kind: 'hang' }
  | { kind: 'stall' }
  | { kind: 'drop' };

export interface RequestLogEntry {
  verb: Verb | 'other';
  resource: string;
  path: string;
  query: URLSearchParams;
  accept: string;
  authorization: string | undefined;
  clientCertCN: string | undefined;
  status: number;
  fault: Fault['kind'] | undefined;
  at: number;
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent {
  rv: number;
  resource: string;
  type: EventType;
  object: FakeObject;
  prev: FakeObject | undefined;
}

interface Requirement {
  key: string;
  op: '=' | '!=' | 'exists' | '!exists';
  value: string;
}

interface Watcher {
  resource: string;
  view: View;
  namespace: string | undefined;
  fields: Requirement[];
  labels: Requirement[];
  metadataOnly: boolean;
  res: http.ServerResponse;
  queue: Promise<void>;
  closed: boolean;
  timers: NodeJS.Timeout[];
}

interface ContinueToken {
  rv: number;
  items: FakeObject[];
  offset: number;
  issuedAt: number;
  expired: boolean;
}

/** How stored objects are shown: as stored, or core/v1 Events as events.k8s.io/v1 Events. */
type View = 'stored' | 'eventsV1';

interface Route {
  resource: string;
  view: View;
  type: ResourceType;
  namespace: string | undefined;
  name: string | undefined;
}

export class FakeKubeApiServer {
  readonly requests: RequestLogEntry[] = [];
  /** Requests that were answered without an object, for tests: 404 path, bad query. */
  readonly errors: string[] = [];
  /** Called at the start of every request, after it is logged (tests use it to act between pages). */
  onRequest: ((entry: RequestLogEntry) => void) | undefined;

  private readonly opts: Required<Omit<FakeKubeApiServerOptions, 'token' | 'chunkBytes' | 'tls' | 'bookmarkIntervalMs'>> &
    Pick<FakeKubeApiServerOptions, 'chunkBytes' | 'tls'> & { bookmarkIntervalMs: number };
  private token: string | undefined;
  private readonly server: http.Server;
  private readonly stores = new Map<string, Map<string, FakeObject>>();
  private history: HistoryEvent[] = [];
  private rv = 1;
  private compactedRv = 1;
  private readonly watchers = new Set<Watcher>();
  private readonly hung = new Set<http.ServerResponse>();
  private readonly faults: { fault: Fault; remaining: number; match: FaultMatch }[] = [];
  private readonly continues = new Map<string, ContinueToken>();
  private baseUrl = '';

  constructor(options: FakeKubeApiServerOptions = {}) {
    const secondMs = options.secondMs ?? 1000;
    this.opts = {
      historySize: 10_000,
      expiredAs: 'event',
      continueTtlMs: 5 * 60_000,
      managedFields: true,
      noBookmarks: true,
      eventsV1: true,
      ...options,
      secondMs,
      bookmarkIntervalMs: options.bookmarkIntervalMs ?? 60 * secondMs,
    };
    this.token = options.token;
    for (const r of Object.keys(RESOURCE_TYPES)) this.stores.set(r, new Map());
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res);
    this.server = options.tls
      ? https.createServer(
          { key: options.tls.key, cert: options.tls.cert, ca: options.tls.ca, requestCert: !!options.tls.requestClientCert, rejectUnauthorized: false },
          handler,
        )
      : http.createServer(handler);
    this.server.keepAliveTimeout = 30_000;
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.baseUrl = `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    return this.baseUrl;
  }

  get url(): string {
    return this.baseUrl;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) this.endWatcher(w);
    for (const res of this.hung) res.destroy();
    this.hung.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- test helpers: objects ----

  /** The current global resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  create(resource: string, obj: FakeObject): FakeObject {
    const type = this.type(resource);
    const o = structuredClone(obj);
    if (type.namespaced && !o.metadata.namespace) o.metadata.namespace = 'default';
    if (!type.namespaced) delete o.metadata.namespace;
    const key = keyOf(o);
    const store = this.stores.get(resource)!;
    if (store.has(key)) throw new Error(`fake: ${resource} ${key} already exists`);
    o.apiVersion = apiVersionOf(type);
    o.kind = type.kind;
    o.metadata.uid ??= randomUUID();
    o.metadata.creationTimestamp ??= new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    o.metadata.generation ??= 1;
    this.stamp(o, 'Update');
    store.set(key, o);
    this.record(resource, 'ADDED', o, undefined);
    return structuredClone(o);
  }

  /** Replaces an object's content (its uid and creationTimestamp stay). */
  update(resource: string, obj: FakeObject): FakeObject {
    const store = this.stores.get(resource)!;
    const type = this.type(resource);
    const o = structuredClone(obj);
    if (type.namespaced && !o.metadata.namespace) o.metadata.namespace = 'default';
    const key = keyOf(o);
    const prev = store.get(key);
    if (!prev) throw new Error(`fake: ${resource} ${key} not found`);
    o.apiVersion = prev.apiVersion;
    o.kind = prev.kind;
    o.metadata.uid = prev.metadata.uid;
    o.metadata.creationTimestamp = prev.metadata.creationTimestamp;
    o.metadata.generation = (prev.metadata.generation ?? 1) + 1;
    this.stamp(o, 'Update');
    store.set(key, o);
    this.record(resource, 'MODIFIED', o, prev);
    return structuredClone(o);
  }

  /** Changes an object in place: `change` gets a copy to edit. */
  modify(resource: string, namespace: string | undefined, name: string, change: (o: FakeObject) => void): FakeObject {
    const prev = this.get(resource, namespace, name);
    if (!prev) throw new Error(`fake: ${resource} ${namespace}/${name} not found`);
    change(prev);
    return this.update(resource, prev);
  }

  delete(resource: string, namespace: string | undefined, name: string): FakeObject | undefined {
    const store = this.stores.get(resource)!;
    const key = namespace && this.type(resource).namespaced ? `${namespace}/${name}` : name;
    const prev = store.get(key);
    if (!prev) return undefined;
    store.delete(key);
    const last = structuredClone(prev);
    last.metadata.deletionTimestamp ??= new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    this.stamp(last, undefined);
    this.record(resource, 'DELETED', last, prev);
    return structuredClone(last);
  }

  get(resource: string, namespace: string | undefined, name: string): FakeObject | undefined {
    const key = namespace && this.type(resource).namespaced ? `${namespace}/${name}` : name;
    const o = this.stores.get(resource)!.get(key);
    return o ? structuredClone(o) : undefined;
  }

  list(resource: string): FakeObject[] {
    return [...this.stores.get(resource)!.values()].map((o) => structuredClone(o));
  }

  /** Forgets all history: a watch from any resourceVersion older than now gets 410. */
  compact(): void {
    this.history = [];
    this.compactedRv = this.rv;
  }

  setToken(token: string | undefined): void {
    this.token = token;
  }

  // ---- test helpers: faults and observation ----

  /** The next `n` requests matching `match` get `fault` instead of an answer. */
  failNext(n: number, fault: Fault, match: FaultMatch = {}): void {
    this.faults.push({ fault, remaining: n, match });
  }

  /** A 504 like the watch cache's when asked for a resourceVersion it has not reached. */
  static tooLargeResourceVersion(): Fault {
    return {
      kind: 'status',
      status: 504,
      reason: 'Timeout',
      message: 'Too large resource version: 999999, current: 1',
      causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
    };
  }

  clearFaults(): void {
    this.faults.length = 0;
  }

  /** Cuts every open watch in the middle of an event line. */
  breakWatches(): void {
    for (const w of [...this.watchers]) {
      w.closed = true;
      this.watchers.delete(w);
      for (const t of w.timers) clearTimeout(t);
      w.queue = w.queue.then(() => {
        w.res.write('{"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"cut-her');
        setTimeout(() => w.res.socket?.destroy(), 5);
      });
    }
  }

  /** Ends every open watch cleanly (as at timeoutSeconds, without the final bookmark). */
  closeWatches(): void {
    for (const w of [...this.watchers]) this.endWatcher(w);
  }

  /** Makes every continue token issued so far expire (410 on use). */
  expireContinueTokens(): void {
    for (const t of this.continues.values()) t.expired = true;
  }

  get activeWatches(): number {
    return this.watchers.size;
  }

  count(filter: { verb?: Verb; resource?: string; status?: number } = {}): number {
    return this.requests.filter(
      (r) =>
        (filter.verb === undefined || r.verb === filter.verb) &&
        (filter.resource === undefined || r.resource === filter.resource) &&
        (filter.status === undefined || r.status === filter.status),
    ).length;
  }

  // ---- HTTP ----

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const route = this.route(url.pathname);
    const q = url.searchParams;
    const watch = q.get('watch') === '1' || q.get('watch') === 'true';
    const verb: Verb | 'other' = !route
      ? 'other'
      : req.method === 'GET'
        ? route.name
          ? 'get'
          : watch
            ? 'watch'
            : 'list'
        : req.method === 'POST' && !route.name && WRITABLE.has(route.resource)
          ? 'create'
          : req.method === 'PUT' && route.name && WRITABLE.has(route.resource)
            ? 'update'
            : 'other';
    const tlsSocket = req.socket as TLSSocket;
    const peer = this.opts.tls?.requestClientCert && tlsSocket.authorized ? tlsSocket.getPeerCertificate() : undefined;
    const entry: RequestLogEntry = {
      verb,
      resource: route?.resource ?? '',
      path: url.pathname,
      query: q,
      accept: String(req.headers.accept ?? ''),
      authorization: req.headers.authorization,
      clientCertCN: peer?.subject?.CN as string | undefined,
      status: 0,
      fault: undefined,
      at: Date.now(),
    };
    this.requests.push(entry);
    this.onRequest?.(entry);
    const origWriteHead = res.writeHead.bind(res);
    res.writeHead = ((status: number, ...rest: unknown[]) => {
      entry.status = status;
      return (origWriteHead as (s: number, ...r: unknown[]) => http.ServerResponse)(status, ...rest);
    }) as typeof res.writeHead;

    // authentication
    const certOk = peer !== undefined && !!entry.clientCertCN;
    if (!certOk && this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) {
      return this.status(res, 401, 'Unauthorized', 'Unauthorized');
    }
    if (!certOk && this.token === undefined && this.opts.tls?.requestClientCert) {
      return this.status(res, 401, 'Unauthorized', 'Unauthorized (no client certificate)');
    }
    if (!route && req.method === 'GET') {
      const discovery = this.discovery(url.pathname);
      if (discovery) return this.json(res, 200, discovery);
    }
    if (verb === 'other' || !route) {
      this.errors.push(`${req.method} ${url.pathname}`);
      return this.status(res, 404, 'NotFound', `the server could not find the requested resource (${req.method} ${url.pathname})`);
    }

    // faults
    const f = this.faults.find((x) => x.remaining > 0 && (!x.match.verb || x.match.verb === verb) && (!x.match.resource || x.match.resource === route.resource));
    if (f) {
      f.remaining--;
      entry.fault = f.fault.kind;
      return this.applyFault(req, res, f.fault);
    }

    if (verb === 'create' || verb === 'update') return this.handleWrite(req, res, route, verb);
    const accept = String(req.headers.accept ?? '');
    if (verb === 'list') {
      const meta = wantsMetadata(accept, 'PartialObjectMetadataList');
      if (meta === undefined) return this.status(res, 406, 'NotAcceptable', `only the following media types are accepted: application/json, ... (got ${accept})`);
      return this.handleList(res, route, q, meta);
    }
    const meta = wantsMetadata(accept, 'PartialObjectMetadata');
    if (meta === undefined) return this.status(res, 406, 'NotAcceptable', `only the following media types are accepted: application/json, ... (got ${accept})`);
    if (verb === 'get') return this.handleGet(res, route, meta);
    return this.handleWatch(req, res, route, q, meta);
  }

  private applyFault(req: http.IncomingMessage, res: http.ServerResponse, fault: Fault): void {
    switch (fault.kind) {
      case 'status': {
        const headers: Record<string, string> = {};
        if (fault.retryAfterSeconds !== undefined) headers['Retry-After'] = String(fault.retryAfterSeconds);
        const body: Record<string, unknown> = {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Failure',
          message: fault.message ?? http.STATUS_CODES[fault.status] ?? 'error',
          reason: fault.reason ?? reasonFor(fault.status),
          code: fault.status,
        };
        if (fault.causes || fault.retryAfterSeconds !== undefined) {
          body.details = { causes: fault.causes, retryAfterSeconds: fault.retryAfterSeconds };
        }
        this.json(res, fault.status, body, headers);
        return;
      }
      case 'hang':
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.flushHeaders();
        this.hung.add(res);
        res.on('close', () => this.hung.delete(res));
        return;
      case 'stall':
        this.hung.add(res);
        res.on('close', () => this.hung.delete(res));
        return;
      case 'drop':
        req.socket.destroy();
        return;
    }
  }

  /**
   * Discovery of one group version (`/api/v1`, `/apis/<group>/<version>`), as the real server answers
   * it to any authenticated client: an APIResourceList of what is served there.
   */
  private discovery(pathname: string): Record<string, unknown> | undefined {
    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))\/?$/.exec(pathname);
    if (!m) return undefined;
    const group = m[2] ?? '';
    const version = m[1] ?? m[3]!;
    const served = Object.entries(RESOURCE_TYPES).filter(([, t]) => t.group === group && t.version === version);
    if (group === 'events.k8s.io' && version === 'v1' && this.opts.eventsV1) served.push(['events', EVENTS_V1_TYPE]);
    if (served.length === 0) return undefined;
    return {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: group ? `${group}/${version}` : version,
      resources: served.map(([name, t]) => ({ name, singularName: '', namespaced: t.namespaced, kind: t.kind, verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'] })),
    };
  }

  private route(pathname: string): Route | undefined {
    const parts = pathname.split('/').filter(Boolean);
    let group: string;
    let version: string;
    let rest: string[];
    if (parts[0] === 'api' && parts.length >= 3) {
      group = '';
      version = parts[1];
      rest = parts.slice(2);
    } else if (parts[0] === 'apis' && parts.length >= 4) {
      group = parts[1];
      version = parts[2];
      rest = parts.slice(3);
    } else {
      return undefined;
    }
    let namespace: string | undefined;
    let resource: string;
    let name: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      resource = rest[2];
      name = rest[3];
      if (rest.length > 4) return undefined;
    } else {
      resource = rest[0];
      name = rest[1];
      if (rest.length > 2) return undefined;
    }
    if (group === 'events.k8s.io' && version === 'v1' && resource === 'events') {
      if (!this.opts.eventsV1) return undefined;
      return { resource, type: EVENTS_V1_TYPE, namespace, name, view: 'eventsV1' };
    }
    const type = RESOURCE_TYPES[resource];
    if (!type || type.group !== group || type.version !== version) return undefined;
    if (namespace && !type.namespaced) return undefined;
    return { resource, type, namespace, name, view: 'stored' };
  }

  private handleGet(res: http.ServerResponse, route: Route, meta: boolean): void {
    const key = route.type.namespaced ? `${route.namespace ?? 'default'}/${route.name}` : route.name!;
    const o = this.stores.get(route.resource)!.get(key);
    if (!o) {
      const group = route.type.group ? `.${route.type.group}` : '';
      return this.status(res, 404, 'NotFound', `${route.resource}${group} "${route.name}" not found`);
    }
    this.json(res, 200, meta ? metadataOnly(o) : inView(route.view, o));
  }

  /** POST (create) and PUT (update) with the API's optimistic concurrency: a stale resourceVersion is 409 Conflict. */
  private handleWrite(req: http.IncomingMessage, res: http.ServerResponse, route: Route, verb: 'create' | 'update'): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let obj: FakeObject;
      try {
        obj = JSON.parse(Buffer.concat(chunks).toString('utf8')) as FakeObject;
        if (!obj?.metadata?.name) throw new Error('metadata.name: Required value');
      } catch (e) {
        return this.status(res, 400, 'BadRequest', (e as Error).message);
      }
      obj.metadata.namespace = route.namespace ?? obj.metadata.namespace ?? 'default';
      const existing = this.get(route.resource, obj.metadata.namespace, obj.metadata.name);
      if (verb === 'create') {
        if (existing) return this.status(res, 409, 'AlreadyExists', `${route.resource} "${obj.metadata.name}" already exists`);
        delete obj.metadata.resourceVersion;
        return this.json(res, 201, this.create(route.resource, obj));
      }
      if (obj.metadata.name !== route.name) return this.status(res, 400, 'BadRequest', 'the name of the object does not match the name on the URL');
      if (!existing) return this.status(res, 404, 'NotFound', `${route.resource} "${route.name}" not found`);
      if (obj.metadata.resourceVersion !== undefined && obj.metadata.resourceVersion !== existing.metadata.resourceVersion) {
        return this.status(
          res,
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${route.resource} "${route.name}": the object has been modified; please apply your changes to the latest version and try again`,
        );
      }
      obj.metadata.uid = existing.metadata.uid;
      obj.metadata.creationTimestamp = existing.metadata.creationTimestamp;
      this.json(res, 200, this.update(route.resource, obj));
    });
  }

  private handleList(res: http.ServerResponse, route: Route, q: URLSearchParams, meta: boolean): void {
    let fields: Requirement[];
    let labels: Requirement[];
    try {
      fields = parseSelector(q.get('fieldSelector'), false);
      labels = parseSelector(q.get('labelSelector'), true);
    } catch (e) {
      return this.status(res, 400, 'BadRequest', (e as Error).message);
    }
    const limit = Number(q.get('limit') ?? '0') || 0;
    const cont = q.get('continue');
    let snapshot: ContinueToken;
    if (cont) {
      if (q.get('resourceVersion')) return this.status(res, 400, 'BadRequest', 'specifying resource version is not allowed when using continue');
      const t = this.continues.get(cont);
      if (!t || t.expired || Date.now() - t.issuedAt > this.opts.continueTtlMs) {
        return this.status(
          res,
          410,
          'Expired',
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
        );
      }
      this.continues.delete(cont);
      snapshot = t;
    } else {
      const items = [...this.stores.get(route.resource)!.values()]
        .filter((o) => matches(o, route.namespace, fields, labels))
        .sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1));
      snapshot = { rv: this.rv, items, offset: 0, issuedAt: Date.now(), expired: false };
    }
    const end = limit > 0 ? Math.min(snapshot.items.length, snapshot.offset + limit) : snapshot.items.length;
    const page = snapshot.items.slice(snapshot.offset, end);
    const metadata: Record<string, unknown> = { resourceVersion: String(snapshot.rv) };
    if (end < snapshot.items.length) {
      const token = Buffer.from(JSON.stringify({ rv: snapshot.rv, start: keyOf(snapshot.items[end]), n: randomUUID() })).toString('base64url');
      this.continues.set(token, { ...snapshot, offset: end, issuedAt: snapshot.issuedAt });
      metadata.continue = token;
      metadata.remainingItemCount = snapshot.items.length - end;
    }
    const body = meta
      ? { kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', metadata, items: page.map(metadataOnly) }
      : {
          kind: `${route.type.kind}List`,
          apiVersion: apiVersionOf(route.type),
          metadata,
          items: page.map((o) => {
            const { apiVersion: _a, kind: _k, ...rest } = inView(route.view, o);
            return rest;
          }),
        };
    this.json(res, 200, body);
  }

  private handleWatch(req: http.IncomingMessage, res: http.ServerResponse, route: Route, q: URLSearchParams, meta: boolean): void {
    let fields: Requirement[];
    let labels: Requirement[];
    try {
      fields = parseSelector(q.get('fieldSelector'), false);
      labels = parseSelector(q.get('labelSelector'), true);
    } catch (e) {
      return this.status(res, 400, 'BadRequest', (e as Error).message);
    }
    const w: Watcher = {
      resource: route.resource,
      view: route.view,
      namespace: route.namespace,
      fields,
      labels,
      metadataOnly: meta,
      res,
      queue: Promise.resolve(),
      closed: false,
      timers: [],
    };
    const rvParam = q.get('resourceVersion');
    const initial: { type: string; object: FakeObject }[] = [];
    if (!rvParam || rvParam === '0') {
      const items = [...this.stores.get(route.resource)!.values()].filter((o) => matches(o, route.namespace, fields, labels));
      items.sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
      for (const o of items) initial.push({ type: 'ADDED', object: o });
    } else {
      const from = Number(rvParam);
      if (!Number.isInteger(from) || from < 0) return this.status(res, 400, 'BadRequest', `invalid resource version: ${rvParam}`);
      if (from > this.rv) return this.applyFault(req, res, FakeKubeApiServer.tooLargeResourceVersion());
      if (from < this.compactedRv) {
        // the real server's words in the ERROR event; the HTTP 410 of other paths names the versions
        if (this.opts.expiredAs === 'status') return this.status(res, 410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`);
        const message = 'The resourceVersion for the provided watch is too old.';
        res.writeHead(200, { 'Content-Type': 'application/json' });
        this.send(w, { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'Expired', code: 410 } });
        w.queue.then(() => res.end());
        return;
      }
      for (const ev of this.history) {
        if (ev.rv <= from) continue;
        const t = translate(w, ev);
        if (t) initial.push(t);
      }
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.flushHeaders();
    for (const ev of initial) this.send(w, ev);
    this.watchers.add(w);
    const allowBookmarks = q.get('allowWatchBookmarks') === 'true' && !this.opts.noBookmarks;
    const kind = this.type(route.resource).kind;
    const bookmark = () => this.send(w, { type: 'BOOKMARK', object: { kind, apiVersion: apiVersionOf(route.type), metadata: { resourceVersion: String(this.rv) } } });
    if (allowBookmarks) {
      const every = setInterval(bookmark, this.opts.bookmarkIntervalMs);
      w.timers.push(every);
    }
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? '1800') || 1800;
    w.timers.push(
      setTimeout(() => {
        if (allowBookmarks) bookmark();
        this.endWatcher(w);
      }, timeoutSeconds * this.opts.secondMs),
    );
    req.on('close', () => {
      w.closed = true;
      this.watchers.delete(w);
      for (const t of w.timers) clearTimeout(t);
    });
  }

  /** Ends a watch cleanly once what is queued for it is written. */
  private endWatcher(w: Watcher): void {
    this.watchers.delete(w);
    for (const t of w.timers) clearTimeout(t);
    if (w.closed) return;
    w.closed = true;
    w.queue = w.queue.then(() => void w.res.end());
  }

  private send(w: Watcher, ev: { type: string; object: FakeObject | Record<string, unknown> }): void {
    const object =
      ev.type === 'ERROR' || ev.type === 'BOOKMARK'
        ? ev.object
        : w.metadataOnly
          ? metadataOnly(ev.object as FakeObject)
          : inView(w.view, ev.object as FakeObject);
    const line = JSON.stringify({ type: ev.type, object }) + '\n';
    const n = this.opts.chunkBytes;
    if (!n) {
      w.queue = w.queue.then(() => void (w.res.writableEnded || w.res.destroyed ? undefined : w.res.write(line)));
      return;
    }
    const bytes = Buffer.from(line);
    w.queue = w.queue.then(async () => {
      for (let i = 0; i < bytes.length; i += n) {
        if (w.res.writableEnded || w.res.destroyed) return;
        w.res.write(bytes.subarray(i, i + n));
        await new Promise((r) => setImmediate(r));
      }
    });
  }

  private record(resource: string, type: EventType, object: FakeObject, prev: FakeObject | undefined): void {
    const ev: HistoryEvent = { rv: Number(object.metadata.resourceVersion), resource, type, object, prev };
    this.history.push(ev);
    if (this.history.length > this.opts.historySize) {
      const drop = this.history.length - this.opts.historySize;
      this.compactedRv = this.history[drop - 1].rv;
      this.history.splice(0, drop);
    }
    for (const w of this.watchers) {
      const t = translate(w, ev);
      if (t) this.send(w, t);
    }
  }

  private stamp(o: FakeObject, operation: string | undefined): void {
    o.metadata.resourceVersion = String(++this.rv);
    if (this.opts.managedFields && operation) {
      o.metadata.managedFields = [
        {
          manager: 'kube-controller-manager',
          operation,
          apiVersion: o.apiVersion,
          time: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:metadata': { 'f:labels': Object.fromEntries(Object.keys(o.metadata.labels ?? {}).map((k) => [`f:${k}`, {}])) }, 'f:spec': {} },
        },
      ];
    }
  }

  private type(resource: string): ResourceType {
    const t = RESOURCE_TYPES[resource];
    if (!t) throw new Error(`fake: unknown resource ${resource}`);
    return t;
  }

  private status(res: http.ServerResponse, code: number, reason: string, message: string): void {
    this.json(res, code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
  }

  private json(res: http.ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }
}

function apiVersionOf(t: ResourceType): string {
  return t.group ? `${t.group}/${t.version}` : t.version;
}

function keyOf(o: FakeObject): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

function reasonFor(status: number): string {
  return (
    { 400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 410: 'Expired', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout' }[
      status
    ] ?? 'Unknown'
  );
}

function metadataOnly(o: FakeObject): FakeObject {
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
}

/** true: metadata only; false: whole objects; undefined: nothing acceptable (406). */
function wantsMetadata(accept: string, as: string): boolean | undefined {
  if (!accept) return false;
  const ranges = accept.split(',').map((r) => r.trim().toLowerCase());
  let plain = false;
  for (const r of ranges) {
    const [type, ...params] = r.split(';').map((p) => p.trim());
    const asParam = params.find((p) => p.startsWith('as='))?.slice(3);
    if (type !== 'application/json' && type !== '*/*' && type !== 'application/*') continue;
    if (asParam === as.toLowerCase()) return true;
    if (asParam === undefined) plain = true;
  }
  return plain ? false : undefined;
}

function parseSelector(s: string | null, labels: boolean): Requirement[] {
  if (!s) return [];
  return s.split(',').map((part) => {
    const p = part.trim();
    let m: RegExpMatchArray | null;
    if ((m = p.match(/^([^!=\s]+)\s*(==|=|!=)\s*(.*)$/))) return { key: m[1], op: m[2] === '!=' ? '!=' : '=', value: m[3] };
    if (labels && (m = p.match(/^!([^!=\s]+)$/))) return { key: m[1], op: '!exists', value: '' };
    if (labels && (m = p.match(/^([^!=\s]+)$/))) return { key: m[1], op: 'exists', value: '' };
    throw new Error(`unable to parse requirement: ${JSON.stringify(p)}`);
  });
}

function fieldValue(o: FakeObject, path: string): string {
  let v: unknown = o;
  for (const k of path.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return v === undefined || v === null ? '' : String(v);
}

function matches(o: FakeObject, namespace: string | undefined, fields: Requirement[], labels: Requirement[]): boolean {
  if (namespace && o.metadata.namespace !== namespace) return false;
  for (const r of fields) {
    const v = fieldValue(o, r.key);
    if (r.op === '=' ? v !== r.value : v === r.value) return false;
  }
  const l = o.metadata.labels ?? {};
  for (const r of labels) {
    const has = Object.hasOwn(l, r.key);
    if (r.op === 'exists' && !has) return false;
    if (r.op === '!exists' && has) return false;
    if (r.op === '=' && l[r.key] !== r.value) return false;
    if (r.op === '!=' && l[r.key] === r.value) return false;
  }
  return true;
}

/** What a watcher sees of a store event: objects entering or leaving its selectors are ADDED / DELETED. */
function translate(w: Watcher, ev: HistoryEvent): { type: string; object: FakeObject } | undefined {
  if (ev.resource !== w.resource) return undefined;
  const now = matches(ev.object, w.namespace, w.fields, w.labels);
  const before = ev.prev ? matches(ev.prev, w.namespace, w.fields, w.labels) : false;
  switch (ev.type) {
    case 'ADDED':
      return now ? { type: 'ADDED', object: ev.object } : undefined;
    case 'MODIFIED':
      if (now && before) return { type: 'MODIFIED', object: ev.object };
      if (now) return { type: 'ADDED', object: ev.object };
      if (before) return { type: 'DELETED', object: ev.object };
      return undefined;
    case 'DELETED':
      return now || before ? { type: 'DELETED', object: ev.object } : undefined;
  }
}

// ---- builders for realistic objects ----

const CONTAINER_HASH = (s: string) => createHash('sha256').update(s).digest('hex');

export function uid(): string {
  return randomUUID();
}

export interface PodSpecInput {
  name: string;
  namespace: string;
  nodeName: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  owner?: { apiVersion: string; kind: string; name: string; uid: string };
  containers?: string[];
  phase?: string;
  restartCount?: number;
}

/** A pod as the API returns it after the kubelet started it: spec, status, container ids. */
export function makePod(p: PodSpecInput): FakeObject {
  const containers = p.containers ?? ['app'];
  return {
    metadata: {
      name: p.name,
      namespace: p.namespace,
      uid: p.uid,
      labels: p.labels ?? {},
      annotations: p.annotations,
      ownerReferences: p.owner ? [{ ...p.owner, controller: true, blockOwnerDeletion: true }] : undefined,
      generateName: p.owner ? `${p.owner.name}-` : undefined,
    },
    spec: {
      nodeName: p.nodeName,
      serviceAccountName: 'default',
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      schedulerName: 'default-scheduler',
      containers: containers.map((c) => ({
        name: c,
        image: `registry.example.com/${p.namespace}/${c}:1.4.2`,
        imagePullPolicy: 'IfNotPresent',
        ports: [{ containerPort: 8080, protocol: 'TCP' }],
        env: [
          { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
          { name: 'LOG_LEVEL', value: 'info' },
        ],
        resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
        volumeMounts: [{ name: 'kube-api-access', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }],
        terminationMessagePath: '/dev/termination-log',
        terminationMessagePolicy: 'File',
      })),
      volumes: [
        {
          name: 'kube-api-access',
          projected: {
            defaultMode: 420,
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
              { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
            ],
          },
        },
      ],
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
    },
    status: {
      phase: p.phase ?? 'Running',
      hostIP: '10.0.0.11',
      podIP: `10.244.1.${(parseInt(CONTAINER_HASH(p.name).slice(0, 2), 16) % 250) + 2}`,
      startTime: '2026-11-21T09:00:00Z',
      qosClass: 'Burstable',
      conditions: [
        { type: 'Initialized', status: 'True', lastTransitionTime: '2026-11-21T09:00:00Z' },
        { type: 'Ready', status: 'True', lastTransitionTime: '2026-11-21T09:00:05Z' },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: '2026-11-21T09:00:05Z' },
        { type: 'PodScheduled', status: 'True', lastTransitionTime: '2026-11-21T09:00:00Z' },
      ],
      containerStatuses: containers.map((c) => ({
        name: c,
        ready: true,
        started: true,
        restartCount: p.restartCount ?? 0,
        image: `registry.example.com/${p.namespace}/${c}:1.4.2`,
        imageID: `registry.example.com/${p.namespace}/${c}@sha256:${CONTAINER_HASH(c)}`,
        containerID: `containerd://${CONTAINER_HASH(`${p.namespace}/${p.name}/${c}`)}`,
        state: { running: { startedAt: '2026-11-21T09:00:04Z' } },
      })),
    },
  };
}

export function makeReplicaSet(namespace: string, name: string, deployment: { name: string; uid: string } | undefined, rsUid = uid()): FakeObject {
  return {
    metadata: {
      name,
      namespace,
      uid: rsUid,
      labels: { app: deployment?.name ?? name, 'pod-template-hash': name.slice(name.lastIndexOf('-') + 1) },
      annotations: { 'deployment.kubernetes.io/revision': '3', 'deployment.kubernetes.io/desired-replicas': '3' },
      ownerReferences: deployment
        ? [{ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.name, uid: deployment.uid, controller: true, blockOwnerDeletion: true }]
        : undefined,
    },
    spec: { replicas: 3, selector: { matchLabels: { app: deployment?.name ?? name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'x' }] } } },
    status: { replicas: 3, readyReplicas: 3, availableReplicas: 3, observedGeneration: 1 },
  };
}

export function makeJob(namespace: string, name: string, cronJob: { name: string; uid: string } | undefined, jobUid = uid()): FakeObject {
  return {
    metadata: {
      name,
      namespace,
      uid: jobUid,
      labels: { 'batch.kubernetes.io/job-name': name, 'job-name': name },
      ownerReferences: cronJob ? [{ apiVersion: 'batch/v1', kind: 'CronJob', name: cronJob.name, uid: cronJob.uid, controller: true, blockOwnerDeletion: true }] : undefined,
    },
    spec: { completions: 1, parallelism: 1, backoffLimit: 6, template: { spec: { containers: [{ name: 'job', image: 'x' }], restartPolicy: 'Never' } } },
    status: { active: 1, startTime: '2026-11-21T09:00:00Z' },
  };
}

export function makeNamespace(name: string, labels: Record<string, string> = {}): FakeObject {
  return { metadata: { name, labels: { 'kubernetes.io/metadata.name': name, ...labels } }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } };
}

/** Writes `kubeconfigYaml(opts)` to `dir/name` and returns the path. */
export function writeKubeconfig(dir: string, opts: Parameters<typeof kubeconfigYaml>[0], name = 'kubeconfig'): string {
  const file = join(dir, name);
  writeFileSync(file, kubeconfigYaml(opts));
  return file;
}

/** A kubeconfig for the fake: one cluster, one user, one context (more with `extra`). */
export function kubeconfigYaml(opts: {
  server: string;
  token?: string;
  caFile?: string;
  insecure?: boolean;
  clientCertFile?: string;
  clientKeyFile?: string;
  exec?: { command: string; args?: string[]; env?: { name: string; value: string }[] };
  context?: string;
  currentContext?: string | null;
  extraContexts?: { name: string; cluster: string; user: string }[];
  extraClusters?: { name: string; server: string; insecure?: boolean }[];
  extraUsers?: { name: string; token: string }[];
}): string {
  const ctx = opts.context ?? 'fake';
  const cluster: Record<string, unknown> = { server: opts.server };
  if (opts.caFile) cluster['certificate-authority'] = opts.caFile;
  if (opts.insecure) cluster['insecure-skip-tls-verify'] = true;
  const user: Record<string, unknown> = {};
  if (opts.token) user.token = opts.token;
  if (opts.clientCertFile) user['client-certificate'] = opts.clientCertFile;
  if (opts.clientKeyFile) user['client-key'] = opts.clientKeyFile;
  if (opts.exec) user.exec = { apiVersion: 'client.authentication.k8s.io/v1', interactiveMode: 'Never', ...opts.exec };
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: `${ctx}-cluster`, cluster },
      ...(opts.extraClusters ?? []).map((c) => ({ name: c.name, cluster: { server: c.server, ...(c.insecure ? { 'insecure-skip-tls-verify': true } : {}) } })),
    ],
    users: [{ name: `${ctx}-user`, user }, ...(opts.extraUsers ?? []).map((u) => ({ name: u.name, user: { token: u.token } }))],
    contexts: [
      { name: ctx, context: { cluster: `${ctx}-cluster`, user: `${ctx}-user`, namespace: 'default' } },
      ...(opts.extraContexts ?? []).map((c) => ({ name: c.name, context: { cluster: c.cluster, user: c.user } })),
    ],
    'current-context': opts.currentContext === null ? undefined : (opts.currentContext ?? ctx),
  };
  return JSON.stringify(doc, null, 2); // JSON is YAML
}

// ---- events and leases (kubernetes_events source, leader election) ----

const EVENTS_V1_TYPE: ResourceType = { group: 'events.k8s.io', version: 'v1', kind: 'Event', namespaced: true };

function inView(view: View, o: FakeObject): FakeObject {
  return view === 'eventsV1' ? eventsV1Of(o) : o;
}

/** A stored (core/v1) Event as events.k8s.io/v1 shows it (kubernetes-events.md §1: same objects, two views). */
export function eventsV1Of(e: FakeObject): FakeObject {
  const out: FakeObject = {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: e.metadata,
    eventTime: e.eventTime ?? null,
    reason: e.reason,
    type: e.type,
    note: e.message,
    regarding: e.involvedObject,
    reportingController: e.reportingComponent ?? '',
    reportingInstance: e.reportingInstance ?? '',
  };
  if (e.series) out.series = e.series;
  if (e.related) out.related = e.related;
  if (e.action) out.action = e.action;
  if (e.source && Object.keys(e.source as object).length) out.deprecatedSource = e.source;
  if (e.firstTimestamp) out.deprecatedFirstTimestamp = e.firstTimestamp;
  if (e.lastTimestamp) out.deprecatedLastTimestamp = e.lastTimestamp;
  if (e.count) out.deprecatedCount = e.count;
  return out;
}

export interface EventInput {
  /** The involved object (`involvedObject` / `regarding`). */
  regarding: { kind: string; name: string; namespace?: string; uid?: string; apiVersion?: string; fieldPath?: string };
  reason: string;
  type?: string;
  message: string;
  /** `source.component` (tools/record) or `reportingComponent` (tools/events). */
  component: string;
  host?: string;
  /** Default: `<regarding.name>.<hex nanoseconds>` like tools/record. */
  name?: string;
  count?: number;
  /** ISO time, whole seconds. Default now. */
  first?: string;
  last?: string;
  /** `tools/events` (events.k8s.io) style: eventTime (µs), series, action, no deprecated fields. */
  api?: 'core' | 'events';
  action?: string;
  series?: { count: number; lastObservedTime: string };
}

let eventSeq = 0;

/** A stored Event as `tools/record` (core/v1) or `tools/events` (events.k8s.io/v1) writes it. */
export function makeEvent(e: EventInput): FakeObject {
  const now = new Date();
  const first = e.first ?? seconds(now);
  const namespace = e.regarding.namespace || 'default';
  const name = e.name ?? `${e.regarding.name}.${(BigInt(Date.parse(first)) * 1_000_000n + BigInt(++eventSeq)).toString(16)}`;
  const base: FakeObject = {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name, namespace, uid: uid(), creationTimestamp: first },
    involvedObject: { apiVersion: 'v1', ...e.regarding, namespace: e.regarding.namespace ?? '' },
    reason: e.reason,
    type: e.type ?? 'Normal',
    message: e.message,
  };
  if (e.api === 'events') {
    return {
      ...base,
      source: {},
      // MicroTime: the scheduler's recorder writes real microseconds
      eventTime: e.first ? first.replace(/Z$/, '.000000Z') : microNow(now),
      series: e.series,
      action: e.action ?? '',
      reportingComponent: e.component,
      reportingInstance: e.host ?? `${e.component}-control-plane`,
      firstTimestamp: null,
      lastTimestamp: null,
      count: 0,
    };
  }
  return {
    ...base,
    source: e.host ? { component: e.component, host: e.host } : { component: e.component },
    firstTimestamp: first,
    lastTimestamp: e.last ?? first,
    count: e.count ?? 1,
    eventTime: null,
    reportingComponent: e.component,
    reportingInstance: e.host ?? '',
  };
}

/** metav1.Time: RFC 3339 with whole seconds. */
/** Now as MicroTime, with the microseconds a real recorder writes (never a whole second of zeros). */
function microNow(d: Date): string {
  const us = Number(process.hrtime.bigint() / 1000n % 1000n);
  return d.toISOString().replace(/Z$/, `${String(us).padStart(3, '0')}Z`);
}

export function seconds(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}
// ---- end events and leases ----
