import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { ReceiverFake, type Answer, type FakeServerOptions, type ReceivedRequest } from './fake_http_server.ts';

/**
 * A protocol-faithful OTLP/HTTP receiver (the collector's otlphttp receiver, logs and traces): it
 * decodes ExportLogsServiceRequest and ExportTraceServiceRequest with the official protos vendored
 * in test/fakes/proto (see proto/README.md), in binary protobuf (application/x-protobuf) and OTLP/JSON
 * (application/json, hex trace/span ids, int64 as strings), gzip or not, and answers as the
 * specification says: 200 with an Export*ServiceResponse in the request's encoding, optionally a
 * partial_success; faults from FakeHttpServer (status with Retry-After, slow, reset, down).
 */

const PROTO_ROOT = join(dirname(fileURLToPath(import.meta.url)), 'proto');

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => join(PROTO_ROOT, target);
  root.loadSync(['opentelemetry/proto/collector/logs/v1/logs_service.proto', 'opentelemetry/proto/collector/trace/v1/trace_service.proto']);
  root.resolveAll();
  return root;
}

export const otlpRoot = loadRoot();
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

  static start(opts: FakeServerOptions = {}): Promise<OtlpReceiver> {
    return new OtlpReceiver().listen(opts);
  }


  /** The next export answers 200 with partial_success {rejected_<signal>, error_message}. */
  partialSuccess(p: PartialSuccess): void {
    this.partials.push(p);
  }


  protected handle(req: ReceivedRequest): Answer {
    if (req.method !== 'POST') return { status: 405, body: 'method not allowed' };
    const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
    const json = ct === 'application/json';
    if (!json && ct !== 'application/x-protobuf') return { status: 415, body: `unsupported content type ${ct}` };
    const signal = req.path.split('?')[0];
    if (signal !== '/v1/logs' && signal !== '/v1/traces') return { status: 404, body: `no such path ${req.path}` };
    const isLogs = signal === '/v1/logs';
    const type = isLogs ? LogsRequest : TraceRequest;
    const msg = json ? type.fromObject(hexIdsToBase64(JSON.parse(req.body.toString('utf8'))) as Record<string, unknown>) : type.decode(req.body);
    const obj = type.toObject(msg, TO_OBJECT);
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
