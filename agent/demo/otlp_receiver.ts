import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { ReceiverFake, type Answer, type FakeServerOptions, type ReceivedRequest } from './fake_http_server.ts';

/**
 * A protocol-faithful OTLP/HTTP receiver (the collector's otlphttp receiver, logs and traces): it
 * decodes ExportLogsServiceRequest and ExportTraceServiceRequest with the official protos vendored
 * in outputs/proto (see its README.md), in binary protobuf (application/x-protobuf) and OTLP/JSON
 * (application/json, hex trace/span ids, int64 as strings), gzip or not, and answers as the
 * specification says: 200 with an Export*ServiceResponse in the request's encoding, optionally a
 * partial_success; faults from FakeHttpServer (status with Retry-After, slow, reset, down).
 *
 * Failures follow the spec's "OTLP/HTTP Response" section as the collector's otlphttp receiver
 * implements it: every 4xx/5xx answer carries a google.rpc.Status in the request's encoding (same
 * Content-Type as the request), and a body that cannot be decoded is `400 Bad Request`. OTLP/JSON
 * is checked more strictly than the collector does, to catch a client that is lax: the spec's
 * "JSON Protobuf Encoding" deviations (keys lowerCamelCase, never the proto field names; enum values
 * integers, never names) are refused with 400.
 */

const PROTO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'outputs', 'proto');

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => join(PROTO_ROOT, target);
  root.loadSync(['opentelemetry/proto/collector/logs/v1/logs_service.proto', 'opentelemetry/proto/collector/trace/v1/trace_service.proto']);
  root.resolveAll();
  return root;
}

export const otlpRoot = loadRoot();

/**
 * google.rpc.Status (googleapis google/rpc/status.proto, not vendored: three fields), the body of
 * every OTLP/HTTP failure, with google.protobuf.Any from protobufjs's bundled well-known types.
 */
function loadStatus(): protobuf.Type {
  const root = protobuf.Root.fromJSON(protobuf.common.get('google/protobuf/any.proto')!);
  protobuf.parse('syntax = "proto3"; package google.rpc; message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }', root);
  root.resolveAll();
  return root.lookupType('google.rpc.Status');
}
export const RpcStatus = loadStatus();

/** The gRPC code a collector puts in Status.code for an HTTP status (the spec says clients must not rely on it). */
function grpcCodeFor(httpStatus: number): number {
  if (httpStatus === 400) return 3; // INVALID_ARGUMENT
  if (httpStatus === 429) return 8; // RESOURCE_EXHAUSTED
  if (httpStatus === 502 || httpStatus === 503 || httpStatus === 504) return 14; // UNAVAILABLE
  if (httpStatus === 500) return 13; // INTERNAL
  return 2; // UNKNOWN
}

/** A failure answer: HTTP status, Status.message, extra headers (Retry-After). */
export interface ExportFailure {
  status: number;
  message: string;
  headers?: Record<string, string>;
}

/** OTLP/JSON keys whose values are enums: integers only (spec, "JSON Protobuf Encoding"). */
const ENUM_KEYS = new Set(['severityNumber', 'kind', 'code']);

/** The first deviation from OTLP/JSON's rules in a decoded JSON body, or undefined. */
function otlpJsonViolation(v: unknown, path: string): string | undefined {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const bad = otlpJsonViolation(v[i], `${path}[${i}]`);
      if (bad) return bad;
    }
    return undefined;
  }
  if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k.includes('_')) return `${path}.${k}: OTLP/JSON keys are lowerCamelCase field names, not the proto's`;
      if (ENUM_KEYS.has(k) && !Number.isInteger(x)) return `${path}.${k}: OTLP/JSON enum values must be integers, got ${JSON.stringify(x)}`;
      const bad = otlpJsonViolation(x, `${path}.${k}`);
      if (bad) return bad;
    }
  }
  return undefined;
}
const LogsRequest = otlpRoot.lookupType('opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest');
const LogsResponse = otlpRoot.lookupType('opentelemetry.proto.collector.logs.v1.ExportLogsServiceResponse');
const TraceRequest = otlpRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
const TraceResponse = otlpRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse');

/** toObject options giving exact values: 64-bit integers as decimal strings, bytes as Buffers. */
const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: Number, bytes: Buffer, defaults: false, arrays: true, oneofs: false };

/** An AnyValue as plain JavaScript: kvlist -> object, array -> array, int -> bigint-free decimal string kept as number when safe. */
export type Plain = string | number | boolean | null | Buffer | Plain[] | { [k: string]: Plain };

export function anyValueToPlain(v: Record<string, unknown> | undefined | null): Plain {
  if (!v) return null;
  if ('stringValue' in v) return v.stringValue as string;
  if ('boolValue' in v) return v.boolValue as boolean;
  if ('intValue' in v) {
    const n = Number(v.intValue);
    return Number.isSafeInteger(n) ? n : String(v.intValue);
  }
  if ('doubleValue' in v) return v.doubleValue as number;
  if ('bytesValue' in v) return v.bytesValue as Buffer;
  if ('arrayValue' in v) return ((v.arrayValue as { values?: Record<string, unknown>[] }).values ?? []).map(anyValueToPlain);
  if ('kvlistValue' in v) return keyValuesToPlain((v.kvlistValue as { values?: KeyValue[] }).values);
  return null;
}

interface KeyValue {
  key: string;
  value?: Record<string, unknown>;
}

export function keyValuesToPlain(kvs: KeyValue[] | undefined): { [k: string]: Plain } {
  const out: { [k: string]: Plain } = {};
  for (const kv of kvs ?? []) out[kv.key] = anyValueToPlain(kv.value);
  return out;
}

/** One log record as received, flattened with its resource and scope. */
export interface ReceivedLog {
  resource: { [k: string]: Plain };
  scope: { name?: string; version?: string };
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber: number;
  severityText: string;
  body: Plain;
  attributes: { [k: string]: Plain };
  /** Which request it came in, and the index of its ResourceLogs there. */
  request: number;
  resourceIndex: number;
}

/** One span as received, flattened with its resource and scope; ids in lower-case hex. */
export interface ReceivedSpan {
  resource: { [k: string]: Plain };
  scope: { name?: string; version?: string };
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { [k: string]: Plain };
  events: { timeUnixNano: string; name: string; attributes: { [k: string]: Plain } }[];
  links: { traceId: string; spanId: string; attributes: { [k: string]: Plain } }[];
  status: { code: number; message: string };
  request: number;
}

export interface PartialSuccess {
  rejected: number;
  message: string;
}

const hex = (b: unknown) => (b ? Buffer.from(b as Uint8Array).toString('hex') : '');
const str = (v: unknown) => (v === undefined || v === null ? '0' : String(v));

/** OTLP/JSON carries trace and span ids as hex; protobufjs's fromObject wants base64 for bytes. */
const ID_KEYS = new Set(['traceId', 'spanId', 'parentSpanId']);
function hexIdsToBase64(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(hexIdsToBase64);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (ID_KEYS.has(k) && typeof x === 'string') {
        if (!/^([0-9a-fA-F]{2})*$/.test(x)) throw new Error(`${k} is not hex: ${JSON.stringify(x)}`);
        out[k] = Buffer.from(x, 'hex').toString('base64');
      } else out[k] = hexIdsToBase64(x);
    }
    return out;
  }
  return v;
}

export class OtlpReceiver extends ReceiverFake {
  readonly logs: ReceivedLog[] = [];
  readonly spans: ReceivedSpan[] = [];
  /** Every decoded Export*ServiceRequest, as protobufjs toObject gives it (longs as strings). */
  readonly logRequests: Record<string, unknown>[] = [];
  readonly traceRequests: Record<string, unknown>[] = [];
  /** Answers still to give with a partial_success instead of full success (the records are still kept). */
  private readonly partials: PartialSuccess[] = [];
  /** Answers still to give with a failure status and Status body (those records are not kept). */
  private readonly failures: ExportFailure[] = [];

  /** Where logs are taken: the collector's otlphttp receiver has `logs_url_path` for a non-default path. */
  private logsPath = '/v1/logs';

  static start(opts: FakeServerOptions & { logsPath?: string } = {}): Promise<OtlpReceiver> {
    const r = new OtlpReceiver();
    if (opts.logsPath !== undefined) r.logsPath = opts.logsPath;
    return r.listen(opts);
  }


  /** The next export answers 200 with partial_success {rejected_<signal>, error_message}. */
  partialSuccess(p: PartialSuccess): void {
    this.partials.push(p);
  }

  /** The next `times` well-formed exports are refused with `f.status` and a google.rpc.Status body. */
  fail(f: ExportFailure, times = 1): void {
    for (let i = 0; i < times; i++) this.failures.push(f);
  }

  /** A 4xx/5xx answer as the spec wants it: a Status, encoded like the request. */
  private statusAnswer(json: boolean, f: ExportFailure): Answer {
    const status = { code: grpcCodeFor(f.status), message: f.message };
    if (json) return { status: f.status, headers: { 'content-type': 'application/json', ...f.headers }, body: JSON.stringify(status) };
    // A detail, as collectors attach (BadRequest, RetryInfo): clients must read past it.
    const detail = { type_url: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from([0x0a, 0x03, 0x66, 0x61, 0x6b]) };
    const body = RpcStatus.encode(RpcStatus.fromObject({ ...status, details: [detail] })).finish();
    return { status: f.status, headers: { 'content-type': 'application/x-protobuf', ...f.headers }, body };
  }


  protected handle(req: ReceivedRequest): Answer {
    if (req.method !== 'POST') return { status: 405, body: 'method not allowed' };
    const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
    const json = ct === 'application/json';
    if (!json && ct !== 'application/x-protobuf') return { status: 415, body: `unsupported content type ${ct}` };
    const signal = req.path.split('?')[0];
    if (signal !== this.logsPath && signal !== '/v1/traces') return { status: 404, body: `no such path ${req.path}` };
    const isLogs = signal === this.logsPath;
    const type = isLogs ? LogsRequest : TraceRequest;
    let obj: Record<string, unknown>;
    try {
      let msg: protobuf.Message;
      if (json) {
        const parsed: unknown = JSON.parse(req.body.toString('utf8'));
        const bad = otlpJsonViolation(parsed, '');
        if (bad) return this.statusAnswer(json, { status: 400, message: bad });
        msg = type.fromObject(hexIdsToBase64(parsed) as Record<string, unknown>);
      } else msg = type.decode(req.body);
      obj = type.toObject(msg, TO_OBJECT);
    } catch (e) {
      return this.statusAnswer(json, { status: 400, message: `cannot decode the request: ${(e as Error).message}` });
    }
    const failure = this.failures.shift();
    if (failure) return this.statusAnswer(json, failure);
    if (isLogs) this.collectLogs(obj);
    else this.collectSpans(obj);

    const partial = this.partials.shift();
    const responseType = isLogs ? LogsResponse : TraceResponse;
    const response = partial
      ? { partialSuccess: { [isLogs ? 'rejectedLogRecords' : 'rejectedSpans']: partial.rejected, errorMessage: partial.message } }
      : {};
    if (json) {
      const body = partial
        ? { partialSuccess: { [isLogs ? 'rejectedLogRecords' : 'rejectedSpans']: String(partial.rejected), errorMessage: partial.message } }
        : {};
      return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
    }
    return { status: 200, headers: { 'content-type': 'application/x-protobuf' }, body: responseType.encode(responseType.fromObject(response)).finish() };
  }

  private collectLogs(obj: Record<string, unknown>): void {
    const request = this.logRequests.push(obj) - 1;
    const rls = (obj.resourceLogs ?? []) as Record<string, unknown>[];
    rls.forEach((rl, resourceIndex) => {
      const resource = keyValuesToPlain((rl.resource as { attributes?: KeyValue[] } | undefined)?.attributes);
      for (const sl of (rl.scopeLogs ?? []) as Record<string, unknown>[]) {
        const scope = (sl.scope ?? {}) as { name?: string; version?: string };
        for (const lr of (sl.logRecords ?? []) as Record<string, unknown>[]) {
          this.logs.push({
            resource,
            scope: { name: scope.name, version: scope.version },
            timeUnixNano: str(lr.timeUnixNano),
            observedTimeUnixNano: str(lr.observedTimeUnixNano),
            severityNumber: (lr.severityNumber as number | undefined) ?? 0,
            severityText: (lr.severityText as string | undefined) ?? '',
            body: anyValueToPlain(lr.body as Record<string, unknown> | undefined),
            attributes: keyValuesToPlain(lr.attributes as KeyValue[] | undefined),
            request,
            resourceIndex,
          });
        }
      }
    });
  }

  private collectSpans(obj: Record<string, unknown>): void {
    const request = this.traceRequests.push(obj) - 1;
    for (const rs of (obj.resourceSpans ?? []) as Record<string, unknown>[]) {
      const resource = keyValuesToPlain((rs.resource as { attributes?: KeyValue[] } | undefined)?.attributes);
      for (const ss of (rs.scopeSpans ?? []) as Record<string, unknown>[]) {
        const scope = (ss.scope ?? {}) as { name?: string; version?: string };
        for (const s of (ss.spans ?? []) as Record<string, unknown>[]) {
          const status = (s.status ?? {}) as { code?: number; message?: string };
          this.spans.push({
            resource,
            scope: { name: scope.name, version: scope.version },
            traceId: hex(s.traceId),
            spanId: hex(s.spanId),
            parentSpanId: hex(s.parentSpanId),
            name: (s.name as string | undefined) ?? '',
            kind: (s.kind as number | undefined) ?? 0,
            startTimeUnixNano: str(s.startTimeUnixNano),
            endTimeUnixNano: str(s.endTimeUnixNano),
            attributes: keyValuesToPlain(s.attributes as KeyValue[] | undefined),
            events: ((s.events ?? []) as Record<string, unknown>[]).map((e) => ({
              timeUnixNano: str(e.timeUnixNano),
              name: (e.name as string | undefined) ?? '',
              attributes: keyValuesToPlain(e.attributes as KeyValue[] | undefined),
            })),
            links: ((s.links ?? []) as Record<string, unknown>[]).map((l) => ({
              traceId: hex(l.traceId),
              spanId: hex(l.spanId),
              attributes: keyValuesToPlain(l.attributes as KeyValue[] | undefined),
            })),
            status: { code: status.code ?? 0, message: status.message ?? '' },
            request,
          });
        }
      }
    }
  }
}
