import { readFileSync, promises as fsp } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import { promisify } from 'node:util';
import { constants as zlib, gzip } from 'node:zlib';
import { buildConnector, Pool } from 'undici';
import { z } from 'zod';
import { duration } from '../agent/config/types.ts';
import { redactUrl } from '../agent/redact.ts';
import type { TargetNeeds } from '../agent/config/target_check.ts';
import { PermanentError, RetryableError } from './output.ts';

/**
 * The one HTTP client of every HTTP output (http, loki, otlp, elasticsearch): a keep-alive pool
 * per output, TLS, auth and headers from the config, a per-request deadline, and network and TLS
 * failures told in plain words. It never retries and never classifies statuses on its own: the
 * pipeline retries, `errorForStatus` classifies.
 */

function plainFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'is a folder, not a file';
  return (e as Error).message;
}

const path = () => z.string().min(1);

export const tlsConfig = z
  .strictObject({
    /** PEM CA bundle that signed the receiver's certificate; replaces the system roots. */
    ca_file: path().optional(),
    /** PEM client certificate (mutual TLS), with key_file. */
    cert_file: path().optional(),
    key_file: path().optional(),
    /** Name the receiver's certificate must carry (and SNI), when it is not the endpoint's host. */
    server_name: z.string().min(1).optional(),
    /** Accept any certificate. Only for trying things out: anyone on the path can read and alter the data. */
    insecure_skip_verify: z.boolean().default(false),
  })
  .superRefine((t, ctx) => {
    if (t.cert_file !== undefined && t.key_file === undefined)
      ctx.addIssue({ code: 'custom', path: ['key_file'], message: 'tls.cert_file is set, so tls.key_file (its private key) is needed too' });
    if (t.key_file !== undefined && t.cert_file === undefined)
      ctx.addIssue({ code: 'custom', path: ['cert_file'], message: 'tls.key_file is set, so tls.cert_file (the client certificate) is needed too' });
  })
  .prefault({});
export type HttpTlsConfig = z.infer<typeof tlsConfig>;

export const authConfig = z
  .strictObject({
    bearer_token: z.string().min(1).optional(),
    /** Read at start and again at most every 60 s: Kubernetes projected service account tokens rotate. */
    bearer_token_file: path().optional(),
    username: z.string().min(1).optional(),
    password: z.string().optional(),
    /** Re-read like bearer_token_file, so a rotated Secret is picked up. */
    password_file: path().optional(),
  })
  .superRefine((a, ctx) => {
    const bearer = a.bearer_token !== undefined || a.bearer_token_file !== undefined;
    const basic = a.username !== undefined || a.password !== undefined || a.password_file !== undefined;
    if (a.bearer_token !== undefined && a.bearer_token_file !== undefined)
      ctx.addIssue({ code: 'custom', path: ['bearer_token_file'], message: 'set auth.bearer_token or auth.bearer_token_file, not both' });
    if (a.password !== undefined && a.password_file !== undefined)
      ctx.addIssue({ code: 'custom', path: ['password_file'], message: 'set auth.password or auth.password_file, not both' });
    if (bearer && basic)
      ctx.addIssue({
        code: 'custom',
        path: [a.username !== undefined ? 'username' : a.password !== undefined ? 'password' : 'password_file'],
        message: 'bearer token and basic auth (username/password) are both set; pick one',
      });
    if (a.username !== undefined && a.password === undefined && a.password_file === undefined)
      ctx.addIssue({ code: 'custom', path: ['password'], message: 'auth.username is set, so auth.password or auth.password_file is needed too' });
    if (a.username === undefined && (a.password !== undefined || a.password_file !== undefined))
      ctx.addIssue({ code: 'custom', path: ['username'], message: 'auth.password is set, so auth.username is needed too' });
  })
  .prefault({});
export type HttpAuthConfig = z.infer<typeof authConfig>;

/** RFC 9110 field-name token; a value must not hold CR, LF or NUL (header injection). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[^\r\n\0]*$/;

/** An RFC 9110 field name (token characters only). */
export function isHeaderName(name: string): boolean {
  return HEADER_NAME.test(name);
}

/** A header value that cannot inject another header: no CR, LF or NUL. */
export function isHeaderValue(value: string): boolean {
  return HEADER_VALUE.test(value);
}

export const headersConfig = z
  .record(z.string(), z.string())
  .superRefine((h, ctx) => {
    for (const [name, value] of Object.entries(h)) {
      if (!isHeaderName(name)) ctx.addIssue({ code: 'custom', path: [name], message: `${JSON.stringify(name)} is not a valid header name` });
      else if (!isHeaderValue(value)) ctx.addIssue({ code: 'custom', path: [name], message: 'a header value cannot contain line breaks or NUL' });
      else if (/^(host|content-length|transfer-encoding|connection|content-encoding)$/i.test(name))
        ctx.addIssue({ code: 'custom', path: [name], message: `${name} is set by the output (content-encoding: see compression) and cannot be configured` });
    }
  })
  .default({});

/** Keys every HTTP output takes; spread into its zod schema. */
const gzipAsync = promisify(gzip);
/** Level 1: most of gzip's gain on log lines at a fraction of the CPU (Vector and Fluent Bit default low too). */
const GZIP_OPTIONS = { level: zlib.Z_BEST_SPEED };

/** A request body gzipped the way every HTTP output sends it (`Content-Encoding: gzip`), in the thread pool. */
export function gzipBody(raw: Uint8Array): Promise<Buffer> {
  return gzipAsync(raw, GZIP_OPTIONS);
}

/** True when the URL holds a user or password (`https://user:pw@host`). */
export function hasCredentials(url: string): boolean {
  try {
    const u = new URL(url);
    return u.username !== '' || u.password !== '';
  } catch {
    return false;
  }
}

/**
 * Checks across the client keys that the client's construction would otherwise fail on; each HTTP
 * output's schema calls it from its superRefine (the keys are spread into several schemas).
 */
export function checkClientKeys(c: { auth: HttpAuthConfig; headers: Record<string, string> }, ctx: z.RefinementCtx): void {
  const a = c.auth;
  const auth = a.bearer_token !== undefined || a.bearer_token_file !== undefined || a.username !== undefined;
  const header = Object.keys(c.headers).find((h) => h.toLowerCase() === 'authorization');
  if (auth && header !== undefined)
    ctx.addIssue({ code: 'custom', path: ['headers', header], message: `headers.${header} and auth are both set; pick one` });
}

export const httpClientKeys = {
  /** Base URL; request paths are joined to its path. Credentials go in `auth`, never in the URL. */
  endpoint: z
    .url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
    // The URL is not echoed: it holds the very secret.
    .refine((u) => !hasCredentials(u), { error: 'the URL carries credentials (user:password@): put them in auth, where they are never logged' }),
  tls: tlsConfig,
  auth: authConfig,
  headers: headersConfig,
  /** One request, from sending to the last byte of the answer. */
  timeout: duration('30s')
    .pipe(z.number().min(1, { error: 'expected a duration above 0, like 30s' }))
    .default(30_000),
};

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface HttpRequest {
  method?: 'POST' | 'PUT' | 'GET';
  /** Joined to the endpoint's path ('' = the endpoint as is); may carry a query string. */
  path?: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  signal: AbortSignal;
}

export interface HttpClientOptions {
  /** The output's name, for messages. */
  name: string;
  endpoint: string;
  tls: HttpTlsConfig;
  auth: HttpAuthConfig;
  headers: Record<string, string>;
  timeoutMs: number;
  /** Sockets kept open to the receiver: the output's concurrency. */
  connections: number;
}

/** How often a token or password file is read again. */
export const SECRET_REFRESH_MS = 60_000;
/** An answer larger than this is a misbehaving receiver, not something to hold in memory. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/**
 * A secret kept in a file that may be replaced under us (projected token, mounted Secret): read
 * at construction (a missing file fails the start), then again when older than SECRET_REFRESH_MS.
 * Errors read `<key> <file>: <fsError(e)>` and `<key> <file> is empty`.
 */
export class FileSecret {
  private value: string;
  private readAt: number;
  private refreshing: Promise<string> | undefined;
  private readonly file: string;
  private readonly key: string;
  private readonly clean: (s: string) => string;
  private readonly now: () => number;
  private readonly fsError: (e: unknown) => string;

  constructor(file: string, key: string, clean: (s: string) => string, now: () => number, fsError: (e: unknown) => string = plainFsError) {
    this.file = file;
    this.key = key;
    this.clean = clean;
    this.now = now;
    this.fsError = fsError;
    this.value = this.check(this.readSync());
    this.readAt = now();
  }

  private readSync(): string {
    try {
      return this.clean(readFileSync(this.file, 'utf8'));
    } catch (e) {
      throw new Error(`${this.key} ${this.file}: ${this.fsError(e)}`, { cause: e });
    }
  }

  private check(v: string): string {
    if (v === '') throw new Error(`${this.key} ${this.file} is empty`);
    return v;
  }

  /** The current secret; a failed re-read is an error (the old secret may be the reason it was replaced). */
  get(): string | Promise<string> {
    if (this.now() - this.readAt < SECRET_REFRESH_MS) return this.value;
    this.refreshing ??= fsp
      .readFile(this.file, 'utf8')
      .then(
        (text) => {
          this.value = this.check(this.clean(text));
          this.readAt = this.now();
          return this.value;
        },
        (e: unknown) => {
          throw new Error(`${this.key} ${this.file}: ${this.fsError(e)}`, { cause: e });
        },
      )
      .finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }
}

type AuthSource = { header: string } | { bearer: FileSecret } | { username: string; password: FileSecret };

function readConfigFile(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new Error(`${key} ${file}: ${plainFsError(e)}`, { cause: e });
  }
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

export class HttpClient {
  readonly name: string;
  private readonly pool: Pool;
  private readonly base: URL;
  private readonly headers: Record<string, string>;
  private readonly auth: AuthSource | undefined;
  private readonly timeoutMs: number;
  private readonly tls: HttpTlsConfig;

  /** Throws (a plain Error naming the key and file) when a file named in the config cannot be read. */
  constructor(opts: HttpClientOptions, now: () => number = Date.now) {
    this.name = opts.name;
    this.base = new URL(opts.endpoint);
    this.timeoutMs = opts.timeoutMs;
    this.tls = opts.tls;
    const connectTimeout = Math.min(opts.timeoutMs, 10_000);
    // Lower case, so a configured header and the output's own cannot both go out under two spellings.
    this.headers = {};
    for (const [k, v] of Object.entries(opts.headers)) this.headers[k.toLowerCase()] = v;
    const prefix = `output ${opts.name}: `;
    if (this.base.username || this.base.password) throw new Error(`${prefix}put credentials in auth, not in the endpoint URL`);
    try {
      this.auth = authSource(opts.auth, now);
      if (this.auth && 'authorization' in this.headers)
        throw new Error('headers.Authorization and auth are both set; pick one');
      this.pool = new Pool(this.base.origin, {
        connections: opts.connections,
        // HTTP/1.1 only: `connections` sockets then mean exactly `concurrency` requests in flight,
        // and a receiver behind an HTTP/1.1 proxy behaves the same as one reached directly.
        allowH2: false,
        // Our own deadline (in request) bounds the whole exchange and says so; undici's own
        // timers are only a backstop that must not fire first.
        headersTimeout: opts.timeoutMs + 1000,
        bodyTimeout: opts.timeoutMs + 1000,
        connect: this.base.protocol === 'https:' ? tlsConnector(opts.tls, connectTimeout) : { timeout: connectTimeout },
      });
    } catch (e) {
      throw new Error(prefix + (e as Error).message, { cause: e });
    }
  }

  /** The URL a request with this path goes to: endpoint path + path, endpoint query + path query. */
  urlFor(reqPath = ''): string {
    return this.base.origin + this.pathFor(reqPath);
  }

  private pathFor(reqPath: string): string {
    const basePath = this.base.pathname;
    const baseQuery = this.base.search.slice(1);
    let p = basePath;
    let q = baseQuery;
    if (reqPath !== '') {
      const qi = reqPath.indexOf('?');
      const rel = qi < 0 ? reqPath : reqPath.slice(0, qi);
      const relQuery = qi < 0 ? '' : reqPath.slice(qi + 1);
      if (rel !== '') p = basePath.replace(/\/+$/, '') + '/' + rel.replace(/^\/+/, '');
      q = baseQuery && relQuery ? `${baseQuery}&${relQuery}` : baseQuery || relQuery;
    }
    return q ? `${p}?${q}` : p;
  }

  /**
   * Sends one request and reads the whole answer. Network errors, timeouts and TLS failures throw
   * RetryableError; HTTP statuses are returned, for the caller to classify. An abort by the
   * caller's signal rejects with the signal's reason.
   */
  async request(req: HttpRequest): Promise<HttpResponse> {
    const path = this.pathFor(req.path ?? '');
    const url = this.base.origin + path;
    req.signal.throwIfAborted();
    const headers: Record<string, string> = { ...this.headers };
    if (req.headers) for (const k in req.headers) headers[k.toLowerCase()] = req.headers[k]!;
    try {
      const auth = this.auth && (await authorization(this.auth));
      if (auth) headers['authorization'] = auth;
    } catch (e) {
      throw new RetryableError(`output ${this.name}: ${(e as Error).message}`);
    }

    // One controller for the deadline and the caller's abort; AbortSignal.any would tie a
    // dependent signal to a long-lived caller signal for every request.
    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, this.timeoutMs);
    const onAbort = () => ac.abort(req.signal.reason);
    req.signal.addEventListener('abort', onAbort, { once: true });
    try {
      const res = await this.pool.request({ method: req.method ?? 'POST', path, headers, body: req.body, signal: ac.signal });
      const body = await readBody(res.body);
      return { status: res.statusCode, headers: res.headers, body };
    } catch (e) {
      if (req.signal.aborted) throw req.signal.reason;
      if (timedOut) throw new RetryableError(`output ${this.name}: no complete answer from ${redactUrl(url)} within ${formatMs(this.timeoutMs)} (timeout)`);
      throw new RetryableError(`output ${this.name}: request to ${redactUrl(url)} failed: ${describeNetworkError(e, this.base, this.tls)}`);
    } finally {
      clearTimeout(timer);
      req.signal.removeEventListener('abort', onAbort);
    }
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** The TLS and credential files an HTTP output reads, and its receiver (checked on the node: agent/config/target_check.ts). */
export function httpClientNeeds(c: { endpoint: string; tls: HttpTlsConfig; auth: HttpAuthConfig }): TargetNeeds {
  return { files: [...tlsFiles(c.tls), ...authFiles(c.auth)], endpoints: [{ key: 'endpoint', url: c.endpoint, tls: c.tls }] };
}

/** `tls.ca_file`, `tls.cert_file`, `tls.key_file` where set. */
export function tlsFiles(tls: HttpTlsConfig): { key: string; path: string }[] {
  return (['ca_file', 'cert_file', 'key_file'] as const).flatMap((k) => (tls[k] !== undefined ? [{ key: `tls.${k}`, path: tls[k] }] : []));
}

/** `auth.bearer_token_file`, `auth.password_file` where set. */
export function authFiles(auth: HttpAuthConfig): { key: string; path: string }[] {
  return (['bearer_token_file', 'password_file'] as const).flatMap((k) => (auth[k] !== undefined ? [{ key: `auth.${k}`, path: auth[k] }] : []));
}

/** What an output's config holds for its client: `httpClientKeys` and outputCommon's `concurrency`. */
export interface HttpOutputKeys {
  endpoint: string;
  tls: HttpTlsConfig;
  auth: HttpAuthConfig;
  headers: Record<string, string>;
  timeout: number;
  concurrency: number;
}

/** An output's client as its config says: one socket per request in flight (`concurrency`). */
export function outputClient(name: string, config: HttpOutputKeys): HttpClient {
  return new HttpClient({
    name,
    endpoint: config.endpoint,
    tls: config.tls,
    auth: config.auth,
    headers: config.headers,
    timeoutMs: config.timeout,
    connections: config.concurrency,
  });
}

function authSource(auth: HttpAuthConfig, now: () => number): AuthSource | undefined {
  if (auth.bearer_token !== undefined) return { header: `Bearer ${auth.bearer_token}` };
  if (auth.bearer_token_file !== undefined) return { bearer: new FileSecret(auth.bearer_token_file, 'auth.bearer_token_file', (s) => s.trim(), now) };
  if (auth.username === undefined) return undefined;
  if (auth.password !== undefined) return { header: basic(auth.username, auth.password) };
  if (auth.password_file === undefined) return undefined;
  // Only the line break editors and `kubectl create secret --from-file` leave at the end.
  return { username: auth.username, password: new FileSecret(auth.password_file, 'auth.password_file', (s) => s.replace(/\r?\n$/, ''), now) };
}

function basic(username: string, password: string): string {
  return 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64');
}

function authorization(a: AuthSource): string | Promise<string> {
  if ('header' in a) return a.header;
  const secret = 'bearer' in a ? a.bearer.get() : a.password.get();
  const make = (s: string) => ('bearer' in a ? `Bearer ${s}` : basic(a.username, s));
  return typeof secret === 'string' ? make(secret) : secret.then(make);
}

function tlsConnector(tls: HttpTlsConfig, timeout: number): buildConnector.connector {
  const connector = buildConnector({
    timeout,
    ca: tls.ca_file !== undefined ? readConfigFile(tls.ca_file, 'tls.ca_file') : undefined,
    cert: tls.cert_file !== undefined ? readConfigFile(tls.cert_file, 'tls.cert_file') : undefined,
    key: tls.key_file !== undefined ? readConfigFile(tls.key_file, 'tls.key_file') : undefined,
    rejectUnauthorized: !tls.insecure_skip_verify,
  });
  const serverName = tls.server_name;
  if (serverName === undefined) return connector;
  // undici takes the name to verify from the Host header; server_name must win over it.
  return (opts, cb) => connector({ ...opts, servername: serverName }, cb);
}

async function readBody(body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown }): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > MAX_RESPONSE_BYTES) {
      body.destroy();
      throw Object.assign(new Error(`the answer is larger than ${MAX_RESPONSE_BYTES / 1024 / 1024} MiB`), { code: 'KTA_RESPONSE_TOO_LARGE' });
    }
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}

/** Node's certificate verification codes (X509_V_ERR_* names) that mean "not signed by a CA we trust". */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_CA',
]);

/** The innermost error with a code: undici wraps socket errors, and AggregateError holds one per address. */
function rootCause(e: unknown): { code?: string; message: string } {
  let cur = e as { code?: string; message?: string; cause?: unknown; errors?: unknown[] } | undefined;
  for (let depth = 0; cur && depth < 5; depth++) {
    if (cur.code && cur.code !== 'UND_ERR_SOCKET' && cur.code !== 'UND_ERR_CONNECT') return { code: cur.code, message: cur.message ?? '' };
    const next = cur.cause ?? cur.errors?.[0];
    if (!next) break;
    cur = next as typeof cur;
  }
  const top = e as { code?: string; message?: string };
  return { code: top?.code, message: top?.message ?? String(e) };
}

/** The failure in plain words, with what to change when it is the config's doing. */
export function describeNetworkError(e: unknown, base: URL, tls: HttpTlsConfig): string {
  const { code, message } = rootCause(e);
  const host = base.hostname;
  if (code && UNTRUSTED.has(code)) {
    return (
      `the receiver's TLS certificate is not trusted (${code}: ${message}); ` +
      (tls.ca_file ? `it is not signed by the CA in tls.ca_file ${tls.ca_file}` : 'set tls.ca_file to the CA that signed it')
    );
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const name = tls.server_name ?? host;
    return `the receiver's TLS certificate is not valid for ${JSON.stringify(name)} (${message}); use a host name the certificate lists, or set tls.server_name to one`;
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return `the receiver's TLS certificate is outside its validity period (${code}: ${message})`;
  if (code?.startsWith('ERR_SSL_') || code === 'EPROTO' || code === 'ERR_TLS_HANDSHAKE_TIMEOUT') {
    if (/wrong version number|packet length too long|http request/i.test(message))
      return `the TLS handshake failed: the receiver does not speak TLS on that port (use http:// for it?) (${message})`;
    if (/certificate required|handshake failure|bad certificate|unknown ca/i.test(message))
      return `the receiver refused the TLS handshake, most likely our client certificate (${message}); check tls.cert_file and tls.key_file`;
    return `the TLS handshake failed (${code}: ${message})`;
  }
  switch (code) {
    case 'ECONNREFUSED':
      return `connection refused by ${host}:${base.port || (base.protocol === 'https:' ? 443 : 80)} (nothing listening there, or the receiver is down)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `the host name ${host} could not be resolved (${code})`;
    case 'ECONNRESET':
    case 'EPIPE':
      return `the receiver closed the connection before answering (connection reset: ${message})`;
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return `could not connect to ${host} in time (connect timeout)`;
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return `the receiver stopped answering (timeout: ${message})`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${host} is unreachable (${code})`;
    case 'KTA_RESPONSE_TOO_LARGE':
      return message;
  }
  if (/other side closed|socket hang up|closed/i.test(message)) {
    // A TLS server that wants a client certificate and got none may just close (Node's does, TLS 1.3).
    const hint =
      base.protocol === 'https:' && tls.cert_file === undefined && (e as { socket?: { bytesRead?: number } }).socket?.bytesRead === 0
        ? '; if it requires a client certificate, set tls.cert_file and tls.key_file'
        : '';
    return `the receiver closed the connection before answering (${message})${hint}`;
  }
  return code ? `${code}: ${message}` : message;
}

const EXCERPT_BYTES = 512;

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The first 512 bytes of an answer, on one line: enough to see what the receiver said. */
export function bodyExcerpt(body: Buffer): string {
  if (body.length === 0) return '(empty body)';
  const text = body.subarray(0, EXCERPT_BYTES).toString('utf8').replace(/\s+/g, ' ').trim();
  return body.length > EXCERPT_BYTES ? `${text}…` : text;
}

/**
 * 2xx: undefined. 408, 429 and 5xx: RetryableError, with the receiver's Retry-After (seconds or
 * HTTP-date, RFC 9110 §10.2.3). Anything else (4xx, and 1xx/3xx, which the client does not
 * follow): PermanentError. The message names the output, the status and the body's first 512 bytes.
 */
export function errorForStatus(name: string, res: HttpResponse): RetryableError | PermanentError | undefined {
  const s = res.status;
  if (s >= 200 && s < 300) return undefined;
  let msg = `output ${name}: receiver answered ${s} ${STATUS_CODES[s] ?? ''}`.trimEnd();
  const location = headerValue(res.headers['location']);
  if (s >= 300 && s < 400 && location) msg += ` (redirect to ${redactUrl(location)}; point the endpoint there)`;
  msg += `: ${bodyExcerpt(res.body)}`;
  if (s === 408 || s === 429 || s >= 500) return new RetryableError(msg, parseRetryAfter(headerValue(res.headers['retry-after']), Date.now()));
  return new PermanentError(msg);
}

/**
 * Retry-After in milliseconds from now: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); a date
 * in the past is 0. Undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  // Only something date-like: Date.parse alone reads "5" or "-1" as a year.
  if (!/[a-z]/i.test(v)) return undefined;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}
