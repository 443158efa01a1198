import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import type { Logger } from '../log.ts';
import { VERSION } from '../version.ts';

/**
 * Where the agent finds the Kubernetes API and its credentials.
 *
 * Configuration and authentication come from `@kubernetes/client-node` (in-cluster service account,
 * kubeconfig files and contexts, client certificates, bearer tokens, token files, exec plugins,
 * auth providers): every request asks its `KubeConfig.applyToHTTPSOptions` for the current headers
 * and TLS material, so the service-account token file is re-read at least every 60 s (its
 * `tokenFile` provider) and exec plugins re-run when their credential expires. What the client does
 * not do, this adds: after a 401 the whole `KubeConfig` is rebuilt (the token file and kubeconfig
 * files are read again, exec plugins re-run) because its caches would keep sending the rejected
 * credential; header values are trimmed (a token file ending in a newline otherwise makes an
 * invalid header); and requests go through one keep-alive agent per distinct TLS material (a
 * rotated CA file or client certificate gets a new agent, with TCP keepalive on every socket).
 *
 * kubeconfig files are read as kubectl reads them: the client ignores kubectl's `user.tokenFile`
 * (it reads a `token-file` key kubectl does not know), so that key is honoured here, re-read like
 * client-go's cached file token source (every 60 s, and after a 401; relative paths from the file's
 * folder). Keys of the chosen user and cluster that neither the client nor this file honour
 * (`as-groups`, `as-uid`, `as-user-extra`, unknown keys) are refused with the key's path, never ignored.
 */

export type KubernetesMode = 'auto' | 'in_cluster' | 'kubeconfig' | 'disabled';

/** Mounted by the kubelet into every pod that has `automountServiceAccountToken`. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface ConnectionOptions {
  mode: KubernetesMode;
  /** A kubeconfig file (mode `kubeconfig`; `auto` tries it after in-cluster). Default: `KUBECONFIG`, then `~/.kube/config`. */
  kubeconfig?: string | null;
  /** A kubeconfig context; default its `current-context`. */
  context?: string | null;
  log: Logger;
  /** Put in front of `/var/run/secrets/...` (tests); it is `loadFromCluster(pathPrefix)` of the client. */
  inClusterPathPrefix?: string;
  /** Where `~/.kube/config` is looked for; default `HOME`, else the OS home directory. */
  homeDir?: string;
}

/** The configuration cannot work (a missing file, an unknown context): named in the message. */
export class KubeConnectionError extends Error {
  override name = 'KubeConnectionError';
}

/** Credentials could not be produced for a request (exec plugin failed, a file vanished). */
export class KubeCredentialsError extends Error {
  override name = 'KubeCredentialsError';
}

export interface RequestInit {
  /** `Accept` header; default `application/json`. */
  accept?: string;
  signal?: AbortSignal;
  /** Default GET; the Lease of leader election also creates (POST) and updates (PUT). */
  method?: 'GET' | 'POST' | 'PUT';
  /** A JSON request body (sent as `application/json`). */
  body?: unknown;
}

/** What the list+watch loop and the owner lookups need from a connection. */
export interface KubeRequester {
  /** A GET of `pathAndQuery` (below the server URL); resolves with the response as soon as its headers arrive. */
  request(pathAndQuery: string, init?: RequestInit): Promise<http.IncomingMessage>;
  /** The server answered 401: produce fresh credentials for the next request. */
  credentialsRejected?(): void;
}

interface Target {
  agent: http.Agent;
  headers: Record<string, string>;
}

const USER_AGENT = `kube-telemetry-agent/${VERSION}`;
const TCP_KEEPALIVE_MS = 30_000;
/** client-go's cached file token source re-reads the file once a minute. */
const TOKEN_FILE_TTL_MS = 60_000;

type KubeConfigClass = new () => KubeConfig;
let kubeConfigClass: KubeConfigClass | undefined;

/** @kubernetes/client-node takes ~0.5 s to import (its generated API): only loaded when a cluster is used. */
async function client(): Promise<KubeConfigClass> {
  kubeConfigClass ??= (await import('@kubernetes/client-node')).KubeConfig;
  return kubeConfigClass;
}

export class KubeConnection implements KubeRequester {
  readonly mode: 'in_cluster' | 'kubeconfig';
  /** API server base URL, without a trailing slash (may carry a path, e.g. behind Rancher). */
  readonly server: string;
  /** Human description for logs: where the configuration came from and which context. */
  readonly source: string;
  /** The service account's namespace (in-cluster) or the context's namespace. */
  readonly namespace: string | undefined;

  private readonly load: () => KubeConfig;
  private kc: KubeConfig;
  /** kubectl's `user.tokenFile`: it wins over an inline token, as in client-go. */
  private readonly tokenFile: string | undefined;
  private fileToken: { value: string; readAt: number } | undefined;
  private stale = false;
  private agent: http.Agent | undefined;
  private agentKey = '';
  private closed = false;

  /** Use `resolveConnection`; `load` must build a validated `KubeConfig` each time it is called. */
  constructor(mode: 'in_cluster' | 'kubeconfig', source: string, load: () => KubeConfig, namespace?: string, loaded?: KubeConfig, tokenFile?: string) {
    this.mode = mode;
    this.source = source;
    this.load = load;
    this.tokenFile = tokenFile;
    this.kc = loaded ?? load();
    this.server = this.kc.getCurrentCluster()!.server.replace(/\/+$/, '');
    this.namespace = namespace ?? this.kc.getContextObject(this.kc.getCurrentContext())?.namespace;
  }

  credentialsRejected(): void {
    this.stale = true;
  }

  /** The headers the next request will carry (Authorization, Impersonate-User), fresh per the rules above. */
  async authHeaders(): Promise<Record<string, string>> {
    return (await this.target()).headers;
  }

  async request(pathAndQuery: string, init: RequestInit = {}): Promise<http.IncomingMessage> {
    if (this.closed) throw new Error('kubernetes connection closed');
    init.signal?.throwIfAborted();
    const { agent, headers } = await this.target();
    init.signal?.throwIfAborted();
    const url = new URL(this.server + pathAndQuery);
    const send = url.protocol === 'https:' ? https.request : http.request;
    return new Promise((resolve, reject) => {
      const body = init.body === undefined ? undefined : JSON.stringify(init.body);
      const req = send(url, {
        method: init.method ?? 'GET',
        agent,
        headers: {
          ...headers,
          Accept: init.accept ?? 'application/json',
          'User-Agent': USER_AGENT,
          ...(body === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) }),
        },
        signal: init.signal,
      });
      req.on('socket', (socket) => socket.setKeepAlive(true, TCP_KEEPALIVE_MS));
      req.on('response', resolve);
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.closed = true;
    this.agent?.destroy();
    this.agent = undefined;
  }

  private async target(): Promise<Target> {
    if (this.stale) {
      this.stale = false;
      this.fileToken = undefined;
      try {
        this.kc = this.load();
      } catch (e) {
        this.stale = true;
        throw new KubeCredentialsError(`${this.source}: reloading credentials failed: ${messageOf(e)}`);
      }
    }
    const opts: https.RequestOptions = {};
    try {
      await this.kc.applyToHTTPSOptions(opts);
    } catch (e) {
      throw new KubeCredentialsError(`${this.source}: ${messageOf(e)}`);
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries((opts.headers ?? {}) as Record<string, unknown>)) {
      if (v !== undefined && v !== null) headers[k] = String(v).trim();
    }
    if (this.tokenFile) headers.Authorization = `Bearer ${this.readTokenFile(this.tokenFile)}`;
    if (typeof opts.auth === 'string' && headers.Authorization === undefined) {
      headers.Authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
    }
    // A proxy needs the client's own agent (it speaks CONNECT / SOCKS); otherwise ours, with keep-alive.
    if (this.kc.getCurrentCluster()?.proxyUrl && opts.agent instanceof http.Agent) return { agent: opts.agent, headers };
    return { agent: this.agentFor(opts), headers };
  }

  private readTokenFile(file: string): string {
    const now = Date.now();
    if (this.fileToken && now - this.fileToken.readAt < TOKEN_FILE_TTL_MS) return this.fileToken.value;
    let value: string;
    try {
      value = readFileSync(file, 'utf8').trim();
    } catch (e) {
      throw new KubeCredentialsError(`${this.source}: token file ${file}: ${messageOf(e)}`);
    }
    if (!value) throw new KubeCredentialsError(`${this.source}: token file ${file} is empty`);
    this.fileToken = { value, readAt: now };
    return value;
  }

  private agentFor(opts: https.RequestOptions): http.Agent {
    const h = createHash('sha256');
    for (const part of [opts.ca, opts.cert, opts.key, String(opts.rejectUnauthorized), opts.servername ?? '']) {
      for (const p of Array.isArray(part) ? part : [part]) h.update(p === undefined ? '-' : typeof p === 'string' || Buffer.isBuffer(p) ? p : JSON.stringify(p)).update('\0');
    }
    const key = h.digest('hex');
    if (this.agent && key === this.agentKey) return this.agent;
    this.agent?.destroy(); // new CA or client certificate: connections made with the old ones go
    this.agentKey = key;
    this.agent = this.server.startsWith('https:')
      ? new https.Agent({
          keepAlive: true,
          keepAliveMsecs: TCP_KEEPALIVE_MS,
          ca: opts.ca,
          cert: opts.cert,
          key: opts.key,
          rejectUnauthorized: opts.rejectUnauthorized,
          servername: opts.servername,
        })
      : new http.Agent({ keepAlive: true, keepAliveMsecs: TCP_KEEPALIVE_MS });
    return this.agent;
  }
}

/**
 * Turns `kubernetes.mode` into a connection, or undefined when the API is not used.
 * - `disabled`: undefined, silently.
 * - `in_cluster` / `kubeconfig`: the connection, or a `KubeConnectionError` naming what is wrong.
 * - `auto`: in-cluster when the pod has a service account, else a kubeconfig (`kubeconfig`, then
 *   `KUBECONFIG`, then `~/.kube/config`), else undefined after exactly one log line saying why.
 */
export async function resolveConnection(opts: ConnectionOptions): Promise<KubeConnection | undefined> {
  const { log } = opts;
  if (opts.mode === 'disabled') return undefined;
  if (opts.mode === 'in_cluster') {
    checkInCluster(opts);
    return announce(log, inCluster(opts, await client()));
  }
  if (opts.mode === 'kubeconfig') {
    const files = kubeconfigFiles(opts);
    if (files.found.length === 0) throw new KubeConnectionError(`kubernetes mode kubeconfig: no kubeconfig (${files.why})`);
    return announce(log, fromKubeconfig(files.found, opts.context ?? undefined, await client()));
  }
  // auto: in-cluster, then a kubeconfig, else off with one line saying why
  const reasons: string[] = [];
  let level: 'info' | 'warn' = 'info';
  if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
    reasons.push('not in a cluster (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT not set)');
  } else {
    try {
      checkInCluster(opts);
      return announce(log, inCluster(opts, await client()));
    } catch (e) {
      reasons.push(messageOf(e));
      level = 'warn';
    }
  }
  const files = kubeconfigFiles(opts);
  if (files.found.length > 0) {
    try {
      return announce(log, fromKubeconfig(files.found, opts.context ?? undefined, await client()));
    } catch (e) {
      reasons.push(messageOf(e));
      level = 'warn';
    }
  } else {
    reasons.push(`no kubeconfig (${files.why})`);
  }
  log[level](
    `kubernetes: mode auto turns the Kubernetes API off: ${reasons.join('; ')}. ` +
      'Records keep the namespace, pod and container their log path names, without labels or owners',
  );
  return undefined;
}

function announce(log: Logger, c: KubeConnection): KubeConnection {
  log.info(`kubernetes: using ${c.source}, API ${c.server}`);
  return c;
}

/** What in-cluster mode needs, checked before the client is loaded. */
function checkInCluster(opts: ConnectionOptions): void {
  const dir = (opts.inClusterPathPrefix ?? '') + SERVICE_ACCOUNT_DIR;
  const { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: port } = process.env;
  if (!host || !port) {
    throw new KubeConnectionError('in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set (the kubelet sets them in every pod)');
  }
  for (const f of ['token', 'ca.crt']) {
    if (!existsSync(join(dir, f))) {
      throw new KubeConnectionError(
        `in-cluster: service account file ${join(dir, f)} does not exist (is automountServiceAccountToken off for the agent's pod?)`,
      );
    }
  }
}

function inCluster(opts: ConnectionOptions, KubeConfigCtor: KubeConfigClass): KubeConnection {
  const prefix = opts.inClusterPathPrefix ?? '';
  const dir = prefix + SERVICE_ACCOUNT_DIR;
  let namespace: string | undefined;
  try {
    namespace = readFileSync(join(dir, 'namespace'), 'utf8').trim() || undefined;
  } catch {
    // optional
  }
  const load = () => {
    const kc = new KubeConfigCtor();
    kc.loadFromCluster(prefix);
    validate(kc, 'in-cluster service account');
    return kc;
  };
  return new KubeConnection('in_cluster', `in-cluster service account (${dir})`, load, namespace);
}

function fromKubeconfig(files: string[], context: string | undefined, KubeConfigCtor: KubeConfigClass): KubeConnection {
  let tokenFile: string | undefined;
  const load = () => {
    // before the client reads the files: it would act on keys kubectl does not know (token-file)
    tokenFile = checkKubeconfigKeys(files, context).tokenFile;
    const kc = loadKubeconfigFiles(files, KubeConfigCtor);
    if (context) {
      if (!kc.getContextObject(context)) {
        throw new KubeConnectionError(`kubeconfig ${files.join(delimiter)}: context "${context}" not found (contexts: ${contextNames(kc)})`);
      }
      kc.setCurrentContext(context);
    }
    validate(kc, `kubeconfig ${files.join(delimiter)}`);
    return kc;
  };
  const kc = load();
  return new KubeConnection('kubeconfig', `kubeconfig ${files.join(delimiter)} context "${kc.getCurrentContext()}"`, load, undefined, kc, tokenFile);
}

/** The keys kubectl knows in a kubeconfig's `users[].user` and `clusters[].cluster`, and what this agent does with each. */
const USER_KEYS: Record<string, string | null> = {
  token: null,
  tokenFile: null,
  'client-certificate': null,
  'client-certificate-data': null,
  'client-key': null,
  'client-key-data': null,
  username: null,
  password: null,
  'auth-provider': null,
  exec: null,
  as: null,
  extensions: null,
  'as-groups': 'impersonating groups is not supported; give the agent its own credentials instead',
  'as-uid': 'impersonating a uid is not supported; give the agent its own credentials instead',
  'as-user-extra': 'impersonation extras are not supported; give the agent its own credentials instead',
  'token-file': 'not a kubectl key (kubectl ignores it): use tokenFile',
};
const CLUSTER_KEYS: Record<string, string | null> = {
  server: null,
  'certificate-authority': null,
  'certificate-authority-data': null,
  'insecure-skip-tls-verify': null,
  'tls-server-name': null,
  'proxy-url': null,
  'disable-compression': null,
  extensions: null,
};

/**
 * The chosen context's user and cluster as written in the files (the client drops keys it does not
 * know, so they are read again here): refuses what would be silently ignored, and finds `tokenFile`
 * (relative to its file's folder, as kubectl resolves it). The first file to define a name wins.
 */
export function checkKubeconfigKeys(files: string[], context: string | undefined): { tokenFile?: string } {
  type Named = { name?: unknown; [k: string]: unknown };
  const docs = files.map((file) => {
    try {
      return { file, doc: parseYaml(readFileSync(file, 'utf8')) as Record<string, unknown> | null };
    } catch (e) {
      throw new KubeConnectionError(`kubeconfig ${file}: ${messageOf(e)}`);
    }
  });
  const contextName = context ?? docs.map((d) => d.doc?.['current-context']).find((c) => typeof c === 'string' && c !== '');
  if (typeof contextName !== 'string') return {}; // the client's own checks name what is missing
  const find = (list: string, name: string): { file: string; entry: Record<string, unknown>; index: number } | undefined => {
    for (const { file, doc } of docs) {
      const items = Array.isArray(doc?.[list]) ? (doc[list] as Named[]) : [];
      const index = items.findIndex((i) => i?.name === name);
      if (index >= 0) return { file, entry: items[index] as Record<string, unknown>, index };
    }
    return undefined;
  };
  const ctx = find('contexts', contextName)?.entry.context as { user?: string; cluster?: string } | undefined;
  const check = (list: 'users' | 'clusters', key: 'user' | 'cluster', name: string | undefined, known: Record<string, string | null>) => {
    const hit = name ? find(list, name) : undefined;
    const body = hit?.entry[key];
    if (!hit || !body || typeof body !== 'object') return undefined;
    for (const k of Object.keys(body)) {
      const why = k in known ? known[k] : `unknown key (kubectl's keys: ${Object.keys(known).filter((x) => known[x] === null).join(', ')})`;
      if (why) throw new KubeConnectionError(`kubeconfig ${hit.file}: ${list}[${hit.index}] (${name}).${key}.${k}: ${why}`);
    }
    return { file: hit.file, body: body as Record<string, unknown> };
  };
  check('clusters', 'cluster', ctx?.cluster, CLUSTER_KEYS);
  const user = check('users', 'user', ctx?.user, USER_KEYS);
  const raw = user?.body.tokenFile;
  if (raw === undefined || raw === null || raw === '') return {};
  if (typeof raw !== 'string') throw new KubeConnectionError(`kubeconfig ${user!.file}: user "${ctx?.user}" tokenFile: expected a path`);
  const tokenFile = isAbsolute(raw) ? raw : join(dirname(user!.file), raw);
  if (!existsSync(tokenFile)) throw new KubeConnectionError(`kubeconfig ${user!.file}: user "${ctx?.user}" tokenFile ${tokenFile} does not exist`);
  return { tokenFile };
}

/** Like kubectl: files are merged, the first file to define a name (or current-context) wins. */
function loadKubeconfigFiles(files: string[], KubeConfigCtor: KubeConfigClass): KubeConfig {
  const kc = new KubeConfigCtor();
  kc.loadFromOptions({ clusters: [], users: [], contexts: [], currentContext: '' });
  for (const file of files) {
    const one = new KubeConfigCtor();
    try {
      one.loadFromFile(file);
    } catch (e) {
      throw new KubeConnectionError(`kubeconfig ${file}: ${messageOf(e)}`);
    }
    for (const c of one.getClusters()) if (!kc.getCluster(c.name)) kc.addCluster(c);
    for (const u of one.getUsers()) if (!kc.getUser(u.name)) kc.addUser(u);
    for (const c of one.getContexts()) if (!kc.getContextObject(c.name)) kc.addContext(c);
    if (!kc.getCurrentContext() && one.getCurrentContext()) kc.setCurrentContext(one.getCurrentContext());
  }
  return kc;
}

/** Checks what the client would only find out at the first request, naming the missing piece. */
function validate(kc: KubeConfig, source: string): void {
  const ctxName = kc.getCurrentContext();
  if (!ctxName) throw new KubeConnectionError(`${source}: no current-context and no context chosen (contexts: ${contextNames(kc)})`);
  const ctx = kc.getContextObject(ctxName);
  if (!ctx) throw new KubeConnectionError(`${source}: current-context "${ctxName}" not found (contexts: ${contextNames(kc)})`);
  const cluster = kc.getCluster(ctx.cluster);
  if (!cluster) throw new KubeConnectionError(`${source}: context "${ctxName}" refers to cluster "${ctx.cluster}", which is not defined`);
  const user = ctx.user ? kc.getUser(ctx.user) : null;
  if (ctx.user && !user) throw new KubeConnectionError(`${source}: context "${ctxName}" refers to user "${ctx.user}", which is not defined`);
  const files: [string, string | undefined | null][] = [
    [`cluster "${cluster.name}" certificate-authority`, cluster.caFile],
    [`user "${user?.name}" client-certificate`, user?.certFile],
    [`user "${user?.name}" client-key`, user?.keyFile],
    [`user "${user?.name}" token file`, (user?.authProvider as { config?: { tokenFile?: string } } | undefined)?.config?.tokenFile],
  ];
  for (const [what, file] of files) {
    if (file && !existsSync(file)) throw new KubeConnectionError(`${source}: context "${ctxName}": ${what} file ${file} does not exist`);
  }
  let url: URL;
  try {
    url = new URL(cluster.server);
  } catch {
    throw new KubeConnectionError(`${source}: cluster "${cluster.name}" server "${cluster.server}" is not a URL`);
  }
  if (url.protocol === 'http:' && !cluster.skipTLSVerify) {
    throw new KubeConnectionError(
      `${source}: cluster "${cluster.name}" server ${cluster.server} is plain http; @kubernetes/client-node only allows that with insecure-skip-tls-verify: true`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new KubeConnectionError(`${source}: cluster "${cluster.name}" server ${cluster.server}: only http and https are supported`);
  }
}

function kubeconfigFiles(opts: ConnectionOptions): { found: string[]; why: string } {
  if (opts.kubeconfig) {
    return existsSync(opts.kubeconfig) ? { found: [opts.kubeconfig], why: '' } : { found: [], why: `kubeconfig ${opts.kubeconfig} does not exist` };
  }
  const env = process.env.KUBECONFIG;
  if (env) {
    const listed = env.split(delimiter).filter(Boolean);
    const found = listed.filter((f) => existsSync(f)); // kubectl skips missing files in the list
    return { found, why: `none of KUBECONFIG=${env} exists` };
  }
  const home = opts.homeDir ?? (process.env.HOME || homedir());
  const file = join(home, '.kube', 'config');
  return existsSync(file) ? { found: [file], why: '' } : { found: [], why: `KUBECONFIG not set, ${file} does not exist` };
}

function contextNames(kc: KubeConfig): string {
  const names = kc.getContexts().map((c) => c.name);
  return names.length ? names.join(', ') : 'none';
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
