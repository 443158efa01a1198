import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { Attributes, LogRecord } from '../agent/record.ts';
import { VERSION } from '../agent/version.ts';

/**
 * Records → ExportLogsServiceRequest (opentelemetry-proto logs_service.proto), in binary protobuf
 * or OTLP/JSON. Mapping: one ResourceLogs per distinct resource, one ScopeLogs (this agent) in
 * each, and per record: time_unix_nano / observed_time_unix_nano (exact to the nanosecond),
 * severity_number / severity_text, body as AnyValue (objects → kvlist_value, arrays → array_value,
 * integers → int_value, other numbers → double_value) and attributes as KeyValues (string lists →
 * array_value).
 *
 * Why not build message objects and call protobufjs's generated encoder: a record's attribute and
 * resource objects are shared by all records of a file (agent/record.ts), so their encoded bytes
 * are cached by identity and copied in; per record only times, severity and body are encoded. The
 * field numbers and wire types still come from the vendored .proto files (loaded once, below), and
 * a test checks the bytes against protobufjs's own encoder.
 */

const PROTO_DIR = join(dirname(fileURLToPath(import.meta.url)), 'proto');

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => join(PROTO_DIR, target);
  root.loadSync('opentelemetry/proto/collector/logs/v1/logs_service.proto');
  root.resolveAll();
  return root;
}

export const logsRoot = loadRoot();
export const ExportLogsServiceRequest = logsRoot.lookupType('opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest');
export const ExportLogsServiceResponse = logsRoot.lookupType('opentelemetry.proto.collector.logs.v1.ExportLogsServiceResponse');

const SCALAR_WIRE: Readonly<Record<string, number>> = {
  double: 1,
  fixed64: 1,
  sfixed64: 1,
  float: 5,
  fixed32: 5,
  sfixed32: 5,
  string: 2,
  bytes: 2,
};

/** The tag (field number and wire type) of a field, read from the loaded schema. */
function tagOf(typeName: string, field: string): number {
  const f = logsRoot.lookupType(typeName).fields[field];
  if (!f) throw new Error(`${typeName} has no field ${field} (vendored proto changed?)`);
  const wire = f.resolvedType instanceof protobuf.Type ? 2 : f.resolvedType instanceof protobuf.Enum ? 0 : (SCALAR_WIRE[f.type] ?? 0);
  return ((f.id << 3) | wire) >>> 0;
}

const C = 'opentelemetry.proto.common.v1.';
const L = 'opentelemetry.proto.logs.v1.';
const T = {
  resourceLogs: tagOf('opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest', 'resourceLogs'),
  rlResource: tagOf(`${L}ResourceLogs`, 'resource'),
  rlScopeLogs: tagOf(`${L}ResourceLogs`, 'scopeLogs'),
  resourceAttributes: tagOf('opentelemetry.proto.resource.v1.Resource', 'attributes'),
  slScope: tagOf(`${L}ScopeLogs`, 'scope'),
  slLogRecords: tagOf(`${L}ScopeLogs`, 'logRecords'),
  scopeName: tagOf(`${C}InstrumentationScope`, 'name'),
  scopeVersion: tagOf(`${C}InstrumentationScope`, 'version'),
  time: tagOf(`${L}LogRecord`, 'timeUnixNano'),
  severityNumber: tagOf(`${L}LogRecord`, 'severityNumber'),
  severityText: tagOf(`${L}LogRecord`, 'severityText'),
  body: tagOf(`${L}LogRecord`, 'body'),
  attributes: tagOf(`${L}LogRecord`, 'attributes'),
  observedTime: tagOf(`${L}LogRecord`, 'observedTimeUnixNano'),
  kvKey: tagOf(`${C}KeyValue`, 'key'),
  kvValue: tagOf(`${C}KeyValue`, 'value'),
  string: tagOf(`${C}AnyValue`, 'stringValue'),
  bool: tagOf(`${C}AnyValue`, 'boolValue'),
  int: tagOf(`${C}AnyValue`, 'intValue'),
  double: tagOf(`${C}AnyValue`, 'doubleValue'),
  array: tagOf(`${C}AnyValue`, 'arrayValue'),
  kvlist: tagOf(`${C}AnyValue`, 'kvlistValue'),
  arrayValues: tagOf(`${C}ArrayValue`, 'values'),
  kvlistValues: tagOf(`${C}KeyValueList`, 'values'),
};

/** The fields below are written in field-number order (as protobufjs does), so bytes match its encoder. */
const LOG_RECORD_ORDER = [T.time, T.severityNumber, T.severityText, T.body, T.attributes, T.observedTime];
if (LOG_RECORD_ORDER.some((t, i) => i > 0 && t >>> 3 < LOG_RECORD_ORDER[i - 1]! >>> 3)) throw new Error('LogRecord field numbers out of the expected order');

/**
 * Containers nested past this depth in a body are sent as the JSON text of the rest. protoc's and
 * protobuf-java's parsers stop at 100 nested messages (protobufjs too); the envelope takes 5 and each
 * object level 3 (AnyValue, KeyValueList, KeyValue), so 30 levels stay below it. A body parsed from
 * a hostile line can nest thousands deep.
 */
export const MAX_BODY_DEPTH = 30;

export const SCOPE_NAME = 'kube-telemetry-agent';

/**
 * Strings must be valid UTF-8 in protobuf (receivers reject the whole request otherwise) and JSON
 * parsed bodies can carry lone surrogates (`"\ud800"`): those become U+FFFD, as Buffer does.
 */
function wellFormed(s: string): string {
  return s.isWellFormed() ? s : s.toWellFormed();
}

/**
 * JSON text of a value nested to any depth, as JSON.stringify writes plain data. JSON.parse builds
 * values thousands deep that JSON.stringify, being recursive, cannot write (it overflows the stack
 * past a few thousand levels), so this walks with a stack of its own.
 */
export function deepJson(root: unknown): string {
  let out = '';
  // Pending work, last first: { raw } is text to append, { value } a value to write.
  const todo: ({ raw: string } | { value: unknown })[] = [{ value: root }];
  while (todo.length > 0) {
    const t = todo.pop()!;
    if ('raw' in t) {
      out += t.raw;
      continue;
    }
    const v = t.value;
    if (typeof v === 'bigint') out += v.toString();
    else if (v === null || typeof v !== 'object' || typeof (v as { toJSON?: unknown }).toJSON === 'function') out += JSON.stringify(v) ?? 'null';
    else if (Array.isArray(v)) {
      out += '[';
      todo.push({ raw: ']' });
      for (let i = v.length - 1; i >= 0; i--) {
        const item: unknown = v[i];
        todo.push({ value: item === undefined || typeof item === 'function' || typeof item === 'symbol' ? null : item });
        if (i > 0) todo.push({ raw: ',' });
      }
    } else {
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o).filter((k) => o[k] !== undefined && typeof o[k] !== 'function' && typeof o[k] !== 'symbol');
      out += '{';
      todo.push({ raw: '}' });
      for (let i = keys.length - 1; i >= 0; i--) {
        todo.push({ value: o[keys[i]!] });
        todo.push({ raw: (i > 0 ? ',' : '') + JSON.stringify(keys[i]) + ':' });
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Time: RFC 3339 → nanoseconds since the epoch, exactly (a double holds only 2^53).

/** The last whole second whose nanoseconds fit a fixed64 (2^64 ns: July 2554). */
const MAX_SECS = 18_446_744_072;

/**
 * Parses RFC 3339 times; the minute's epoch seconds are cached, since a batch's records share it
 * (keep one parser per field, so a record's two times do not evict each other). After `parse`
 * returns true, `secs` and `nanos` hold the time.
 */
export class TimeParser {
  secs = 0;
  nanos = 0;
  private minuteKey = -1;
  private minuteSecs = 0;
  /** The last string parsed: a chunk's records share one observed-time string. */
  private last: string | undefined;

  parse(s: string): boolean {
    if (s === this.last) return true;
    const n = s.length;
    if (n < 20) return false;
    const sep = s.charCodeAt(10);
    if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58 || (sep !== 84 && sep !== 116 && sep !== 32))
      return false; // - - : : and T, t or a space
    const y = digits(s, 0, 4);
    const mo = digits(s, 5, 7);
    const d = digits(s, 8, 10);
    const h = digits(s, 11, 13);
    const mi = digits(s, 14, 16);
    const se = digits(s, 17, 19);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 60) return false;
    const key = ((((y * 13 + mo) * 32 + d) * 24 + h) * 60 + mi) | 0;
    if (key !== this.minuteKey) {
      this.minuteKey = key;
      this.minuteSecs = Date.UTC(y, mo - 1, d, h, mi) / 1000;
    }
    let secs = this.minuteSecs + se;
    let i = 19;
    let nanos = 0;
    if (s.charCodeAt(i) === 46) {
      const start = ++i;
      // Digits past the ninth are finer than a nanosecond: truncated, as Go's time.Parse does.
      for (let c = s.charCodeAt(i); c >= 48 && c <= 57; c = s.charCodeAt(++i)) if (i - start < 9) nanos = nanos * 10 + (c - 48);
      if (i === start) return false;
      for (let k = i - start; k < 9; k++) nanos *= 10;
    }
    const z = s.charCodeAt(i);
    if ((z === 90 || z === 122) && i === n - 1) {
      // Z
    } else if ((z === 43 || z === 45) && n === i + 6 && s.charCodeAt(i + 3) === 58) {
      const oh = digits(s, i + 1, i + 3);
      const om = digits(s, i + 4, i + 6);
      if (oh < 0 || oh > 23 || om < 0 || om > 59) return false;
      secs -= (z === 43 ? 1 : -1) * (oh * 3600 + om * 60);
    } else return false;
    if (secs < 0 || secs > MAX_SECS) return false;
    this.secs = secs;
    this.nanos = nanos;
    this.last = s;
    return true;
  }
}

function digits(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}

/** secs * 1e9 + nanos as the two 32-bit halves of a fixed64, exact (every step stays below 2^53). */
function writeFixed64Nanos(w: protobuf.Writer, secs: number, nanos: number): void {
  const s1 = Math.floor(secs / 65536);
  const s0 = secs - s1 * 65536;
  const t1 = s1 * 1e9;
  const t1hi = Math.floor(t1 / 65536);
  const t1lo = t1 - t1hi * 65536;
  const low = t1lo * 65536 + s0 * 1e9 + nanos;
  const carry = Math.floor(low / 4294967296);
  w.fixed32(low - carry * 4294967296).fixed32(t1hi + carry);
}

/** The same number as a decimal string (OTLP/JSON carries 64-bit integers as strings). */
function decimalNanos(secs: number, nanos: number): string {
  if (secs === 0) return String(nanos);
  const n = String(nanos);
  return String(secs) + '000000000'.slice(n.length) + n;
}

/** Nanoseconds since the epoch of an RFC 3339 time, as a decimal string; '0' when unreadable. */
export function unixNanos(rfc3339: string): string {
  const p = new TimeParser();
  return p.parse(rfc3339) ? decimalNanos(p.secs, p.nanos) : '0';
}

// ---------------------------------------------------------------------------------------------
// AnyValue

type Json = unknown;

/** AnyValue's content (without its own tag and length). */
function writeAnyValue(w: protobuf.Writer, v: Json, depth: number): void {
  switch (typeof v) {
    case 'string':
      w.uint32(T.string).string(wellFormed(v));
      return;
    case 'boolean':
      w.uint32(T.bool).bool(v);
      return;
    case 'number':
      if (Number.isSafeInteger(v)) w.uint32(T.int).int64(v);
      else w.uint32(T.double).double(v);
      return;
    case 'bigint':
      if (v >= -(2n ** 63n) && v < 2n ** 63n) w.uint32(T.int).int64(v.toString());
      else w.uint32(T.string).string(v.toString());
      return;
    case 'undefined':
      return;
    case 'object':
      if (v === null) return;
      if (depth >= MAX_BODY_DEPTH) {
        w.uint32(T.string).string(wellFormed(deepJson(v)));
        return;
      }
      if (Array.isArray(v)) {
        w.uint32(T.array).fork();
        for (const item of v) {
          w.uint32(T.arrayValues).fork();
          writeAnyValue(w, item, depth + 1);
          w.ldelim();
        }
        w.ldelim();
        return;
      }
      w.uint32(T.kvlist).fork();
      for (const key in v) {
        const item = (v as Record<string, unknown>)[key];
        if (item === undefined || !Object.hasOwn(v, key)) continue;
        w.uint32(T.kvlistValues).fork();
        writeKeyValue(w, key, item, depth + 1);
        w.ldelim();
      }
      w.ldelim();
      return;
    default:
      w.uint32(T.string).string(wellFormed(String(v)));
  }
}

function writeKeyValue(w: protobuf.Writer, key: string, value: Json, depth: number): void {
  w.uint32(T.kvKey).string(wellFormed(key));
  w.uint32(T.kvValue).fork();
  writeAnyValue(w, value, depth);
  w.ldelim();
}

/** Every attribute as a repeated KeyValue field with tag `tag`, bytes ready to copy in. */
function encodeKeyValues(attrs: Attributes, tag: number): Uint8Array {
  const w = protobuf.Writer.create();
  for (const key in attrs) {
    const value = attrs[key];
    if (value === undefined) continue;
    w.uint32(tag).fork();
    writeKeyValue(w, key, value, 1);
    w.ldelim();
  }
  return w.finish();
}

function jsonAnyValue(v: Json, depth: number): string {
  switch (typeof v) {
    case 'string':
      return '{"stringValue":' + JSON.stringify(wellFormed(v)) + '}';
    case 'boolean':
      return v ? '{"boolValue":true}' : '{"boolValue":false}';
    case 'number':
      if (Number.isSafeInteger(v)) return '{"intValue":"' + v + '"}';
      // proto3 JSON: non-finite doubles are the strings "NaN", "Infinity", "-Infinity".
      return '{"doubleValue":' + (Number.isFinite(v) ? String(v) : '"' + String(v) + '"') + '}';
    case 'bigint':
      if (v >= -(2n ** 63n) && v < 2n ** 63n) return '{"intValue":"' + v.toString() + '"}';
      return '{"stringValue":"' + v.toString() + '"}';
    case 'undefined':
      return '{}';
    case 'object': {
      if (v === null) return '{}';
      if (depth >= MAX_BODY_DEPTH) return '{"stringValue":' + JSON.stringify(wellFormed(deepJson(v))) + '}';
      if (Array.isArray(v)) {
        if (v.length === 0) return '{"arrayValue":{}}';
        let out = '{"arrayValue":{"values":[';
        for (let i = 0; i < v.length; i++) out += (i > 0 ? ',' : '') + jsonAnyValue(v[i], depth + 1);
        return out + ']}}';
      }
      let out = '';
      for (const key in v) {
        const item = (v as Record<string, unknown>)[key];
        if (item === undefined || !Object.hasOwn(v, key)) continue;
        out += (out ? ',' : '') + jsonKeyValue(key, item, depth + 1);
      }
      return out ? '{"kvlistValue":{"values":[' + out + ']}}' : '{"kvlistValue":{}}';
    }
    default:
      return '{"stringValue":' + JSON.stringify(wellFormed(String(v))) + '}';
  }
}

function jsonKeyValue(key: string, value: Json, depth: number): string {
  return '{"key":' + JSON.stringify(wellFormed(key)) + ',"value":' + jsonAnyValue(value, depth) + '}';
}

/** A KeyValue list as a JSON array ('' when empty: the field is then left out). */
function jsonKeyValues(attrs: Attributes): string {
  let out = '';
  for (const key in attrs) {
    const value = attrs[key];
    if (value === undefined) continue;
    out += (out ? ',' : '') + jsonKeyValue(key, value, 1);
  }
  return out ? '[' + out + ']' : '';
}

// ---------------------------------------------------------------------------------------------
// Grouping by resource

export interface ResourceGroup {
  readonly resource: Attributes;
  readonly records: LogRecord[];
}

interface ResourceInfo {
  /** The resource's JSON: resources equal in content but not identity share one ResourceLogs. */
  readonly key: string;
  proto?: Uint8Array;
  json?: string;
}

export interface OtlpScope {
  name: string;
  version: string;
}

/**
 * Encodes batches; holds the per-identity caches, so one instance lives as long as its output.
 * Caches are WeakMaps: a file's attribute objects go away with the file.
 */
export class OtlpLogsEncoder {
  private readonly resources = new WeakMap<Attributes, ResourceInfo>();
  private readonly protoAttributes = new WeakMap<Attributes, Uint8Array>();
  private readonly jsonAttributes = new WeakMap<Attributes, string>();
  private readonly time = new TimeParser();
  private readonly observed = new TimeParser();
  private readonly scopeProto: Uint8Array;
  private readonly scopeJson: string;

  constructor(scope: OtlpScope = { name: SCOPE_NAME, version: VERSION }) {
    const w = protobuf.Writer.create();
    w.uint32(T.slScope).fork().uint32(T.scopeName).string(scope.name);
    if (scope.version) w.uint32(T.scopeVersion).string(scope.version);
    this.scopeProto = w.ldelim().finish();
    this.scopeJson = JSON.stringify(scope.version ? { name: scope.name, version: scope.version } : { name: scope.name });
  }

  private info(resource: Attributes): ResourceInfo {
    let info = this.resources.get(resource);
    if (!info) {
      info = { key: JSON.stringify(resource) };
      this.resources.set(resource, info);
    }
    return info;
  }

  /**
   * Records by resource, in order of first appearance, each group in batch order. Per record one
   * identity comparison (a file's records come in runs); a resource object not seen yet in this
   * batch costs one Map lookup, and only a new object ever is serialised for its key.
   */
  group(records: readonly LogRecord[]): ResourceGroup[] {
    const groups: ResourceGroup[] = [];
    const byObject = new Map<Attributes, ResourceGroup>();
    let byKey: Map<string, ResourceGroup> | undefined;
    let last: ResourceGroup | undefined;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      if (last === undefined || last.resource !== r.resource) {
        last = byObject.get(r.resource);
        if (last === undefined) {
          const key = this.info(r.resource).key;
          byKey ??= new Map();
          last = byKey.get(key);
          if (last === undefined) {
            last = { resource: r.resource, records: [] };
            byKey.set(key, last);
            groups.push(last);
          }
          byObject.set(r.resource, last);
        }
      }
      last.records.push(r);
    }
    return groups;
  }

  /** The ExportLogsServiceRequest in binary protobuf, appended to `w` (which may be reused). */
  writeProtobuf(records: readonly LogRecord[], w: protobuf.Writer): void {
    for (const g of this.group(records)) {
      w.uint32(T.resourceLogs).fork();
      w.raw(this.resourceProto(g.resource));
      w.uint32(T.rlScopeLogs).fork();
      w.raw(this.scopeProto);
      for (const r of g.records) this.writeRecord(w, r);
      w.ldelim();
      w.ldelim();
    }
  }

  encodeProtobuf(records: readonly LogRecord[]): Uint8Array {
    const w = protobuf.Writer.create();
    this.writeProtobuf(records, w);
    return w.finish();
  }

  private resourceProto(resource: Attributes): Uint8Array {
    const info = this.info(resource);
    if (!info.proto) {
      const attrs = encodeKeyValues(resource, T.resourceAttributes);
      const w = protobuf.Writer.create();
      info.proto = w.uint32(T.rlResource).bytes(attrs).finish();
    }
    return info.proto;
  }

  private attributesProto(attrs: Attributes): Uint8Array {
    let bytes = this.protoAttributes.get(attrs);
    if (!bytes) {
      bytes = encodeKeyValues(attrs, T.attributes);
      this.protoAttributes.set(attrs, bytes);
    }
    return bytes;
  }

  private writeRecord(w: protobuf.Writer, r: LogRecord): void {
    const time = this.time;
    w.uint32(T.slLogRecords).fork();
    if (time.parse(r.timestamp) && (time.secs > 0 || time.nanos > 0)) writeFixed64Nanos(w.uint32(T.time), time.secs, time.nanos);
    const sev = r.severityNumber;
    if (sev !== undefined && sev !== 0 && Number.isInteger(sev)) w.uint32(T.severityNumber).int32(sev);
    if (r.severityText) w.uint32(T.severityText).string(wellFormed(r.severityText));
    w.uint32(T.body).fork();
    writeAnyValue(w, r.body, 0);
    w.ldelim();
    w.raw(this.attributesProto(r.attributes));
    const observed = this.observed;
    if (observed.parse(r.observedTimestamp) && (observed.secs > 0 || observed.nanos > 0))
      writeFixed64Nanos(w.uint32(T.observedTime), observed.secs, observed.nanos);
    w.ldelim();
  }

  /** The ExportLogsServiceRequest in OTLP/JSON (lowerCamelCase keys, integer enums, int64 as strings). */
  encodeJson(records: readonly LogRecord[]): string {
    let out = '{"resourceLogs":[';
    let first = true;
    for (const g of this.group(records)) {
      out += (first ? '' : ',') + '{"resource":' + this.resourceJson(g.resource) + ',"scopeLogs":[{"scope":' + this.scopeJson + ',"logRecords":[';
      first = false;
      for (let i = 0; i < g.records.length; i++) out += (i > 0 ? ',' : '') + this.recordJson(g.records[i]!);
      out += ']}]}';
    }
    return out + ']}';
  }

  private resourceJson(resource: Attributes): string {
    const info = this.info(resource);
    if (info.json === undefined) {
      const attrs = jsonKeyValues(resource);
      info.json = attrs ? '{"attributes":' + attrs + '}' : '{}';
    }
    return info.json;
  }

  private attributesJson(attrs: Attributes): string {
    let json = this.jsonAttributes.get(attrs);
    if (json === undefined) {
      const list = jsonKeyValues(attrs);
      json = list ? ',"attributes":' + list : '';
      this.jsonAttributes.set(attrs, json);
    }
    return json;
  }

  private recordJson(r: LogRecord): string {
    const time = this.time;
    const observed = this.observed;
    let out = '{';
    if (time.parse(r.timestamp) && (time.secs > 0 || time.nanos > 0)) out += '"timeUnixNano":"' + decimalNanos(time.secs, time.nanos) + '",';
    if (observed.parse(r.observedTimestamp) && (observed.secs > 0 || observed.nanos > 0))
      out += '"observedTimeUnixNano":"' + decimalNanos(observed.secs, observed.nanos) + '",';
    const sev = r.severityNumber;
    if (sev !== undefined && sev !== 0 && Number.isInteger(sev)) out += '"severityNumber":' + sev + ',';
    if (r.severityText) out += '"severityText":' + JSON.stringify(wellFormed(r.severityText)) + ',';
    return out + '"body":' + jsonAnyValue(r.body, 0) + this.attributesJson(r.attributes) + '}';
  }
}
