import type { Attributes, LogRecord } from '../record.ts';

/**
 * A record as the disk buffer stores it: its JSON, with the LogRecord field names, attributes and
 * resource first. Attribute and resource objects are shared by the records of one file and stream
 * and never mutated (record.ts), so the encoder caches their JSON by identity, and the decoder
 * recognises the JSON it saw lately and hands back one shared object instead of parsing it again.
 * That keeps identity sharing across the disk (which the NDJSON encoder's cache relies on) and
 * takes about 40% off decoding a typical record.
 */
const objectJson = new WeakMap<object, string>();

function cachedJson(o: Attributes): string {
  let s = objectJson.get(o);
  if (s === undefined) {
    s = JSON.stringify(o);
    objectJson.set(o, s);
  }
  return s;
}

const ATTRIBUTES_KEY = '{"attributes":';
const RESOURCE_KEY = ',"resource":';

export function encodeRecord(r: LogRecord): string {
  let s = `${ATTRIBUTES_KEY}${cachedJson(r.attributes)}${RESOURCE_KEY}${cachedJson(r.resource)},"timestamp":${JSON.stringify(r.timestamp)},"observedTimestamp":${JSON.stringify(r.observedTimestamp)}`;
  if (r.severityText !== undefined) s += `,"severityText":${JSON.stringify(r.severityText)}`;
  if (r.severityNumber !== undefined) s += `,"severityNumber":${JSON.stringify(r.severityNumber)}`;
  return `${s},"body":${JSON.stringify(r.body)}}`;
}

interface Known {
  readonly json: Buffer;
  readonly value: Attributes;
}

const KEEP = 16;
const ATTRIBUTES_AT = Buffer.byteLength(ATTRIBUTES_KEY);
const ATTRIBUTES_KEY_BYTES = Buffer.from(ATTRIBUTES_KEY);
const RESOURCE_KEY_BYTES = Buffer.from(RESOURCE_KEY);
const COMMA = 0x2c;

/** Decodes payloads back into records, sharing the attribute and resource objects it saw lately. */
export class RecordDecoder {
  private readonly attributes: Known[] = [];
  private readonly resources: Known[] = [];

  /**
   * The record back from its JSON; undefined when it is not one (a frame whose CRC matched but
   * whose content is not a record: a bug or a foreign file, treated as corrupt by the caller).
   */
  decode(payload: Buffer): LogRecord | undefined {
    const fast = this.decodeKnown(payload);
    if (fast) return fast;
    const r = decodeRecord(payload.toString('utf8'));
    if (r) {
      r.attributes = remember(this.attributes, r.attributes);
      r.resource = remember(this.resources, r.resource);
    }
    return r;
  }

  /** Parses only timestamps, severity and body when attributes and resource are ones seen lately. */
  private decodeKnown(payload: Buffer): LogRecord | undefined {
    if (!at(payload, ATTRIBUTES_KEY_BYTES, 0)) return undefined;
    let pos = ATTRIBUTES_AT;
    const attributes = find(this.attributes, payload, pos);
    if (!attributes) return undefined;
    pos += attributes.json.length;
    if (!at(payload, RESOURCE_KEY_BYTES, pos)) return undefined;
    pos += RESOURCE_KEY_BYTES.length;
    const resource = find(this.resources, payload, pos);
    if (!resource) return undefined;
    pos += resource.json.length;
    if (payload[pos] !== COMMA) return undefined;
    const r = decodeRecord(`{${payload.toString('utf8', pos + 1)}`, false);
    if (!r) return undefined;
    r.attributes = attributes.value;
    r.resource = resource.value;
    return r;
  }
}

/** Whether `bytes` are at `pos` in `buf` (subarray + equals: far cheaper than compare with offsets). */
function at(buf: Buffer, bytes: Buffer, pos: number): boolean {
  return buf.length >= pos + bytes.length && buf.subarray(pos, pos + bytes.length).equals(bytes);
}

/** The known object whose JSON is at `pos` in `payload`, moved to the front (most recently used first). */
function find(known: Known[], payload: Buffer, pos: number): Known | undefined {
  for (let i = 0; i < known.length; i++) {
    const k = known[i]!;
    if (at(payload, k.json, pos)) {
      if (i > 0) {
        known.splice(i, 1);
        known.unshift(k);
      }
      return k;
    }
  }
  return undefined;
}

/** Keeps a freshly parsed object (its JSON is exactly what was written: the same keys in the same order). */
function remember(known: Known[], value: Attributes): Attributes {
  const json = Buffer.from(JSON.stringify(value));
  for (const k of known) if (k.json.equals(json)) return k.value;
  known.unshift({ json, value });
  if (known.length > KEEP) known.pop();
  return value;
}

/** Parses and checks one record's JSON (`full`: attributes and resource included). */
export function decodeRecord(json: string, full = true): LogRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Partial<LogRecord>;
  if (typeof r.timestamp !== 'string' || typeof r.observedTimestamp !== 'string' || r.body === undefined) return undefined;
  if (full && (!isObject(r.attributes) || !isObject(r.resource))) return undefined;
  return r as LogRecord;
}

function isObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
