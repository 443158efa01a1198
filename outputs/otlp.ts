import { STATUS_CODES } from 'node:http';
import protobuf from 'protobufjs';
import { z } from 'zod';
import { duration } from '../agent/config/types.ts';
import type { LogRecord } from '../agent/record.ts';
import type { TargetNeeds } from '../agent/config/target_check.ts';
import { redactUrl } from '../agent/redact.ts';
import { VERSION } from '../agent/version.ts';
import { outputCommon } from './common_config.ts';
import { authFiles, bodyExcerpt, checkClientKeys, gzipBody, hasCredentials, HttpClient, httpClientKeys, isHeaderName, isHeaderValue, parseRetryAfter, type HttpResponse, type HttpTlsConfig } from './http_client.ts';
import { ExportLogsServiceResponse, OtlpLogsEncoder } from './otlp_logs_encoder.ts';
import { PermanentError, RetryableError, type Output, type OutputContext, type SendResult } from './output.ts';

/**
 * Logs over OTLP/HTTP (opentelemetry-proto docs/specification.md, "OTLP/HTTP"): POST
 * <endpoint>/v1/logs with an ExportLogsServiceRequest, binary protobuf or OTLP/JSON, gzip or not.
 * Keys left out of the config come from the standard OTEL_EXPORTER_OTLP_* variables (OpenTelemetry
 * "Protocol Exporter" spec), so a DaemonSet that already sets them for the SDKs needs no more.
 */

const { endpoint: baseEndpoint, ...httpKeys } = httpClientKeys;

export const otlpConfig = z
  .strictObject({
    type: z.literal('otlp'),
    ...outputCommon,
    ...httpKeys,
    /** Receiver base URL; `/v1/logs` is appended. Absent: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, then OTEL_EXPORTER_OTLP_ENDPOINT. */
    endpoint: baseEndpoint.optional(),
    /** Absent: OTEL_EXPORTER_OTLP_LOGS_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf (the spec's default). */
    protocol: z.enum(['http/protobuf', 'http/json']).optional(),
    /** Absent: OTEL_EXPORTER_OTLP_LOGS_COMPRESSION, OTEL_EXPORTER_OTLP_COMPRESSION, else none (the spec's default). */
    compression: z.enum(['none', 'gzip']).optional(),
    /** One export. Absent: OTEL_EXPORTER_OTLP_LOGS_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT (ms), else 10s (the spec's default). */
    timeout: duration('10s').optional(),
  })
  .superRefine((config, ctx) => {
    // Here rather than at start, so `telemetry-agent validate` reports a missing endpoint and bad variables.
    for (const p of resolveOtlpSettings(config, process.env).problems) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
    checkClientKeys(config, ctx);
  });
export type OtlpConfig = z.infer<typeof otlpConfig>;

export type OtlpProtocol = 'http/protobuf' | 'http/json';

/** Everything the output needs, config and environment merged. */
export interface OtlpSettings {
  url: string;
  protocol: OtlpProtocol;
  compression: 'none' | 'gzip';
  timeoutMs: number;
  headers: Record<string, string>;
  tls: HttpTlsConfig;
  /** Whether /v1/logs was appended (a 404 then likely means the base URL already had it). */
  signalPathAppended: boolean;
  /** The variable each TLS file came from, when not from the config. */
  tlsFrom: Partial<Record<'ca_file' | 'cert_file' | 'key_file', string>>;
}

/**
 * Files the output reads (from the config or OTEL_EXPORTER_OTLP_* variables) and its receiver,
 * checked on the node (agent/config/target_check.ts). A config whose settings do not resolve has
 * problems that plain validate already reports, and no needs.
 */
export function otlpNeeds(config: OtlpConfig, env: NodeJS.ProcessEnv = process.env): TargetNeeds {
  const { settings } = resolveOtlpSettings(config, env);
  if (!settings) return {};
  const files = (['ca_file', 'cert_file', 'key_file'] as const).flatMap((k) => {
    const path = settings.tls[k];
    if (path === undefined) return [];
    const from = settings.tlsFrom[k];
    return [{ key: from ? `tls.${k} (${from})` : `tls.${k}`, path }];
  });
  return { files: [...files, ...authFiles(config.auth)], endpoints: [{ key: 'endpoint', url: settings.url, tls: settings.tls }] };
}

export interface SettingProblem {
  path: string[];
  message: string;
}

/** The spec's defaults: http/protobuf, no compression, 10 s. */
const DEFAULT_PROTOCOL: OtlpProtocol = 'http/protobuf';
const DEFAULT_TIMEOUT_MS = 10_000;
const SIGNAL_PATH = 'v1/logs';
const GENERIC = 'OTEL_EXPORTER_OTLP_';
const LOGS = 'OTEL_EXPORTER_OTLP_LOGS_';

/**
 * Config over environment, signal-specific variable over generic one, as the exporter spec says.
 * An empty variable counts as unset (SDK environment variable spec). Bad variable values are
 * problems, not silently ignored as the SDKs do: the agent has `validate` to say so before start.
 */
export function resolveOtlpSettings(config: OtlpConfig, env: NodeJS.ProcessEnv): { settings?: OtlpSettings; problems: SettingProblem[] } {
  const problems: SettingProblem[] = [];
  const problem = (key: string, message: string) => problems.push({ path: [key], message });
  const get = (name: string): [name: string, value: string] | undefined => {
    const v = env[name]?.trim();
    return v ? [name, v] : undefined;
  };
  const fromEnv = (suffix: string) => get(LOGS + suffix) ?? get(GENERIC + suffix);

  // Endpoint: config (a base), OTEL_EXPORTER_OTLP_LOGS_ENDPOINT (as is), OTEL_EXPORTER_OTLP_ENDPOINT (a base).
  let url: string | undefined;
  let signalPathAppended = true;
  if (config.endpoint !== undefined) {
    // A value that is not a URL is the endpoint schema's to report (refinements still run after it).
    if (!isHttpUrl(config.endpoint)) return { problems };
    url = withSignalPath(config.endpoint);
    if (/\/v1\/logs\/?$/.test(new URL(config.endpoint).pathname))
      problem('endpoint', `endpoint is the receiver's base URL and /v1/logs is appended to it; drop /v1/logs from ${redactUrl(config.endpoint)}`);
  } else {
    const logs = get(`${LOGS}ENDPOINT`);
    const generic = get(`${GENERIC}ENDPOINT`);
    const [name, value] = logs ?? generic ?? [];
    if (name === undefined || value === undefined) {
      problem(
        'endpoint',
        'no endpoint: set endpoint (the receiver base URL, /v1/logs is appended), or the environment variable OTEL_EXPORTER_OTLP_LOGS_ENDPOINT (the full URL) or OTEL_EXPORTER_OTLP_ENDPOINT (the base URL)',
      );
    } else if (!isHttpUrl(value)) {
      // Named, not echoed: the variable may well hold a token.
      problem('endpoint', `${name} is not an http:// or https:// URL`);
    } else if (hasCredentials(value)) {
      problem('endpoint', `${name} carries credentials (user:password@): put them in auth, where they are never logged`);
    } else if (logs) {
      // Used as is; only an empty path becomes "/" (spec, "Endpoint URLs for OTLP/HTTP").
      url = new URL(value).toString();
      signalPathAppended = false;
    } else url = withSignalPath(value);
  }

  let protocol = config.protocol;
  if (protocol === undefined) {
    const [name, value] = fromEnv('PROTOCOL') ?? [];
    const v = value?.toLowerCase(); // enum variables are case-insensitive (SDK environment variable spec)
    if (name === undefined || value === undefined) protocol = DEFAULT_PROTOCOL;
    else if (v === 'http/protobuf' || v === 'http/json') protocol = v;
    else
      problem(
        'protocol',
        `${name}=${JSON.stringify(value)}: this output speaks OTLP over HTTP only (http/protobuf or http/json)${value === 'grpc' ? ', not gRPC' : ''}; set protocol to choose one`,
      );
  }

  let compression = config.compression;
  if (compression === undefined) {
    const [name, value] = fromEnv('COMPRESSION') ?? [];
    const v = value?.toLowerCase(); // case-insensitive, as above
    if (name === undefined) compression = 'none';
    else if (v === 'none' || v === 'gzip') compression = v;
    else problem('compression', `${name}=${JSON.stringify(value)}: expected none or gzip`);
  }

  let timeoutMs = config.timeout;
  if (timeoutMs === undefined) {
    const [name, value] = fromEnv('TIMEOUT') ?? [];
    if (name === undefined || value === undefined) timeoutMs = DEFAULT_TIMEOUT_MS;
    else if (/^\d+$/.test(value) && Number(value) > 0) timeoutMs = Number(value);
    else problem('timeout', `${name}=${JSON.stringify(value)}: expected a whole number of milliseconds above 0`);
  }

  const headers = mergeHeaders(config, env, problem);

  const tls: HttpTlsConfig = { ...config.tls };
  const tlsFrom: OtlpSettings['tlsFrom'] = {};
  // Whether the files can be read is the node's business (agent/config/target_check.ts, otlpNeeds).
  const tlsFromEnv = (key: 'ca_file' | 'cert_file' | 'key_file', suffix: string) => {
    if (tls[key] !== undefined) return;
    const [name, file] = fromEnv(suffix) ?? [];
    if (name === undefined || file === undefined) return;
    tls[key] = file;
    tlsFrom[key] = name;
  };
  tlsFromEnv('ca_file', 'CERTIFICATE');
  tlsFromEnv('cert_file', 'CLIENT_CERTIFICATE');
  tlsFromEnv('key_file', 'CLIENT_KEY');
  if ((tls.cert_file === undefined) !== (tls.key_file === undefined) && (config.tls.cert_file === undefined) === (config.tls.key_file === undefined)) {
    problem(
      'tls',
      tls.cert_file === undefined
        ? 'a client key is set (OTEL_EXPORTER_OTLP_*CLIENT_KEY) without its certificate (tls.cert_file or OTEL_EXPORTER_OTLP_*CLIENT_CERTIFICATE)'
        : 'a client certificate is set (OTEL_EXPORTER_OTLP_*CLIENT_CERTIFICATE) without its key (tls.key_file or OTEL_EXPORTER_OTLP_*CLIENT_KEY)',
    );
  }

  if (problems.length > 0 || url === undefined || protocol === undefined || compression === undefined || timeoutMs === undefined) return { problems };
  return { settings: { url, protocol, compression, timeoutMs, headers, tls, tlsFrom, signalPathAppended }, problems };
}

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** Base URL + "v1/logs", the base's path first given a trailing slash; its query kept. */
function withSignalPath(base: string): string {
  const u = new URL(base);
  u.pathname = (u.pathname.endsWith('/') ? u.pathname : u.pathname + '/') + SIGNAL_PATH;
  return u.toString();
}

/**
 * Headers, later winning per name (case-insensitively): our User-Agent (exporter spec, "User
 * Agent"), OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_LOGS_HEADERS, the config's `headers`.
 * Merged rather than replaced, as the OpenTelemetry JS exporter (used for spans) does. With `auth`
 * set, an Authorization from the environment gives way to it.
 */
function mergeHeaders(config: OtlpConfig, env: NodeJS.ProcessEnv, problem: (key: string, message: string) => void): Record<string, string> {
  const merged = new Map<string, [string, string]>();
  const put = (name: string, value: string) => merged.set(name.toLowerCase(), [name, value]);
  put('User-Agent', `kube-telemetry-agent/${VERSION}`);
  for (const name of [`${GENERIC}HEADERS`, `${LOGS}HEADERS`]) {
    const raw = env[name]?.trim();
    if (raw) for (const [k, v] of parseHeaderList(raw, name, problem)) put(k, v);
  }
  const a = config.auth;
  if (a.bearer_token !== undefined || a.bearer_token_file !== undefined || a.username !== undefined) merged.delete('authorization');
  for (const [k, v] of Object.entries(config.headers)) put(k, v);
  return Object.fromEntries(merged.values());
}

/**
 * `k1=v1,k2=v2`: W3C Baggage's header syntax without its `;` properties (exporter spec,
 * "Specifying headers via environment variables"); keys and values percent-decoded.
 */
export function parseHeaderList(raw: string, variable: string, problem: (key: string, message: string) => void): [string, string][] {
  const out: [string, string][] = [];
  raw.split(',').forEach((entry, i) => {
    const semi = entry.indexOf(';');
    const pair = (semi < 0 ? entry : entry.slice(0, semi)).trim();
    if (pair === '') return;
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      problem('headers', `${variable}: entry ${i + 1} ${JSON.stringify(pair)} is not key=value`);
      return;
    }
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(pair.slice(0, eq).trim());
      value = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      problem('headers', `${variable}: entry ${i + 1} ${JSON.stringify(pair)} has a bad percent-encoding`);
      return;
    }
    if (!isHeaderName(key)) problem('headers', `${variable}: ${JSON.stringify(key)} is not a valid header name`);
    else if (!isHeaderValue(value)) problem('headers', `${variable}: the value of ${key} contains a line break or NUL`);
    else if (value !== '') out.push([key, value]); // an empty value is skipped, as the OpenTelemetry JS SDK does
  });
  return out;
}

/**
 * google.rpc.Status (googleapis google/rpc/status.proto), the body of every OTLP/HTTP 4xx/5xx
 * answer (spec, "Failures"). Three fields, so declared here rather than vendored; Any comes from
 * protobufjs's bundled well-known types.
 */
function loadStatus(): protobuf.Type {
  const root = protobuf.Root.fromJSON(protobuf.common.get('google/protobuf/any.proto')!);
  protobuf.parse('syntax = "proto3"; package google.rpc; message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }', root);
  root.resolveAll();
  return root.lookupType('google.rpc.Status');
}
const RpcStatus = loadStatus();

/** The statuses the spec says to retry ("Failures"): every other 4xx and 5xx must not be. */
const RETRYABLE = new Set([429, 502, 503, 504]);

const CONTENT_TYPE: Record<OtlpProtocol, string> = { 'http/protobuf': 'application/x-protobuf', 'http/json': 'application/json' };

/** A writer whose buffer grew past this (a huge batch) is let go rather than kept for the next. */
const MAX_POOLED_WRITER_BYTES = 16 * 1024 * 1024;


function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export class OtlpOutput implements Output {
  readonly name: string;
  readonly settings: OtlpSettings;
  private readonly client: HttpClient;
  private readonly encoder = new OtlpLogsEncoder();
  private readonly log: OutputContext['log'];
  /** Reused protobuf writers, one per request in flight (sends may overlap with concurrency > 1). */
  private readonly writers: protobuf.Writer[] = [];
  private readonly requestHeaders: Record<string, string>;
  private warnedUnreadable = false;

  constructor(config: OtlpConfig, ctx: OutputContext, env: NodeJS.ProcessEnv = process.env) {
    this.name = ctx.name;
    this.log = ctx.log;
    const { settings, problems } = resolveOtlpSettings(config, env);
    if (!settings) throw new Error(`output ${ctx.name}: ${problems.map((p) => p.message).join('; ')}`);
    this.settings = settings;
    this.requestHeaders = { 'content-type': CONTENT_TYPE[settings.protocol] };
    if (settings.compression === 'gzip') this.requestHeaders['content-encoding'] = 'gzip';
    this.client = new HttpClient({
      name: ctx.name,
      endpoint: settings.url,
      tls: settings.tls,
      auth: config.auth,
      headers: settings.headers,
      timeoutMs: settings.timeoutMs,
      connections: config.concurrency,
    });
  }

  async send(records: readonly LogRecord[], signal: AbortSignal): Promise<SendResult> {
    if (records.length === 0) return { bytes: 0 };
    const json = this.settings.protocol === 'http/json';
    let writer: protobuf.Writer | undefined;
    try {
      let payload: Buffer;
      if (json) payload = Buffer.from(this.encoder.encodeJson(records));
      else {
        writer = this.writers.pop() ?? protobuf.Writer.create();
        this.encoder.writeProtobuf(records, writer);
        const view = writer.finish(true);
        payload = Buffer.from(view.buffer, view.byteOffset, view.byteLength);
      }
      const body = this.settings.compression === 'gzip' ? await gzipBody(payload) : payload;
      const res = await this.client.request({ path: '', headers: this.requestHeaders, body, signal });
      return this.answer(res, json, records.length, body.length);
    } finally {
      if (writer) {
        // Back to empty (a throw mid-encode may have left forks open).
        writer.states = null;
        writer.pos = 0;
        if (writer.buf.length <= MAX_POOLED_WRITER_BYTES) this.writers.push(writer);
      }
    }
  }

  /** The receiver's answer, classified as the spec's "OTLP/HTTP Response" section says. */
  private answer(res: HttpResponse, json: boolean, count: number, bytes: number): SendResult {
    const s = res.status;
    if (s >= 200 && s < 300) {
      const partial = this.partialSuccess(res, json);
      if (!partial) return { bytes };
      if (partial.rejected > 0) return { bytes, rejected: { count: Math.min(partial.rejected, count), reason: partial.message || 'the receiver gave no reason' } };
      // rejected 0 with a message: a warning from a receiver that took everything (spec, "Partial Success").
      if (partial.message) this.log('warn', `output ${this.name}: the receiver accepted the batch with a warning: ${partial.message}`);
      return { bytes };
    }
    let msg = `output ${this.name}: ${redactUrl(this.settings.url)} answered ${s} ${STATUS_CODES[s] ?? ''}`.trimEnd() + `: ${this.statusMessage(res, json)}`;
    if (RETRYABLE.has(s)) throw new RetryableError(msg, parseRetryAfter(header(res, 'retry-after'), Date.now()));
    msg += this.hint(res);
    throw new PermanentError(msg);
  }

  private hint(res: HttpResponse): string {
    const s = res.status;
    const location = header(res, 'location');
    if (s >= 300 && s < 400) return location ? ` (redirect to ${location}; point the endpoint there)` : '';
    if (s === 404 && this.settings.signalPathAppended) return ' (is the endpoint the receiver base URL? /v1/logs was appended to it)';
    if (s === 415) return ` (the receiver does not take ${this.settings.protocol}; try the other protocol)`;
    if (s === 401 || s === 403) return ' (check auth and headers)';
    if (s === 413) return ' (the request is larger than the receiver takes; lower batch.max_bytes)';
    return '';
  }

  /** Status.message of a failure, decoded like the request; else the body's start, as text. */
  private statusMessage(res: HttpResponse, json: boolean): string {
    if (this.looksLikeOtlp(res, json)) {
      try {
        const message = json
          ? (JSON.parse(res.body.toString('utf8')) as { message?: unknown }).message
          : (RpcStatus.toObject(RpcStatus.decode(res.body)) as { message?: unknown }).message;
        if (typeof message === 'string' && message !== '') return message;
      } catch {
        // not a Status after all: a proxy's page, say
      }
    }
    return bodyExcerpt(res.body);
  }

  /** A proxy in front of the receiver answers in HTML or text; only an OTLP-typed (or untyped) body is decoded. */
  private looksLikeOtlp(res: HttpResponse, json: boolean): boolean {
    if (res.body.length === 0) return false;
    const type = header(res, 'content-type')?.split(';')[0]!.trim().toLowerCase();
    return type === undefined || type === '' || type === (json ? 'application/json' : 'application/x-protobuf') || type === 'application/protobuf';
  }

  private partialSuccess(res: HttpResponse, json: boolean): { rejected: number; message: string } | undefined {
    if (!this.looksLikeOtlp(res, json)) return undefined;
    try {
      let p: { rejectedLogRecords?: unknown; rejected_log_records?: unknown; errorMessage?: unknown; error_message?: unknown } | undefined;
      if (json) {
        // proto3 JSON parsers take both the lowerCamelCase and the proto field name.
        const o = JSON.parse(res.body.toString('utf8')) as Record<string, unknown> | null;
        p = (o?.partialSuccess ?? o?.partial_success) as typeof p;
      } else {
        const o = ExportLogsServiceResponse.toObject(ExportLogsServiceResponse.decode(res.body), { longs: String }) as { partialSuccess?: typeof p };
        p = o.partialSuccess;
      }
      if (!p || typeof p !== 'object') return undefined;
      const rejected = Number(p.rejectedLogRecords ?? p.rejected_log_records ?? 0);
      const message = p.errorMessage ?? p.error_message;
      return { rejected: Number.isFinite(rejected) && rejected > 0 ? rejected : 0, message: typeof message === 'string' ? message : '' };
    } catch (e) {
      // 200 means accepted, whatever the body; say once that it was unreadable.
      if (!this.warnedUnreadable) {
        this.warnedUnreadable = true;
        this.log('warn', `output ${this.name}: cannot read the receiver's ExportLogsServiceResponse (${(e as Error).message}); taking 200 as full success`);
      }
      return undefined;
    }
  }

  async flush(): Promise<void> {}

  close(): Promise<void> {
    return this.client.close();
  }
}

export function createOtlpOutput(config: OtlpConfig, ctx: OutputContext): Output {
  return new OtlpOutput(config, ctx);
}
