import { z } from 'zod';
import { celEnv, celMap, isCelError, isCelList, isCelMap, isCelUint, parse, plan, CelScalar, mapType, type CelValue } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { isMessage } from '@bufbuild/protobuf';
import { DurationSchema, TimestampSchema, timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import type { Attributes, LogRecord } from '../record.ts';
import { Checker, CheckFailed, type Kind } from './cel_check.ts';
import { CelError, compileFast, FALLBACK, type FastEval } from './cel_fast.ts';

/**
 * CEL (the Common Expression Language Kubernetes uses for validation rules) over a record, with
 * @bufbuild/cel, which passes the CEL conformance suite. An expression is parsed, checked and
 * planned once, when the config is loaded; a problem is a config error with the key path.
 *
 * The variables: `body` (text, or the parsed object), `attributes` and `resource` (maps of string
 * to value), `severity_number` (int, 0 when unknown), `severity_text` (string, "" when unknown),
 * `timestamp` (a CEL timestamp). JSON numbers in a parsed body are doubles, as in Kubernetes CEL.
 *
 * Cost: attribute and resource objects are shared by the records of one file and stream, so their
 * CEL maps are built once per object; an expression that reads only `resource` (and `attributes`)
 * is evaluated once per such object and its result reused for every record that carries it.
 */
const VARIABLES = new Map<string, Kind>([
  ['body', 'dyn'],
  ['attributes', 'map'],
  ['resource', 'map'],
  ['severity_number', 'int'],
  ['severity_text', 'string'],
  ['timestamp', 'timestamp'],
]);

const ENV = celEnv({
  variables: {
    body: CelScalar.DYN,
    attributes: mapType(CelScalar.STRING, CelScalar.DYN),
    resource: mapType(CelScalar.STRING, CelScalar.DYN),
    severity_number: CelScalar.INT,
    severity_text: CelScalar.STRING,
    timestamp: CelScalar.DYN,
  },
  funcs: strings,
});

/** What the expression must produce: checked statically where the types are known, and at run time. */
export type Want = 'bool' | 'number' | 'any';

/** A failed evaluation (missing field, type mismatch): the caller counts it and applies its on_error. */
export class CelFailure {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

type Plan = (ctx: Record<string, unknown>) => unknown;

const SEVERITIES = Array.from({ length: 25 }, (_, i) => BigInt(i));
/** CEL maps of shared attribute and resource objects, built once per object. */
const maps = new WeakMap<object, CelValue>();

function celMapOf(obj: Attributes): CelValue {
  let m = maps.get(obj);
  if (m === undefined) {
    m = celMap(new Map(Object.entries(obj)));
    maps.set(obj, m);
  }
  return m;
}

function timestampOf(rfc3339: string): Timestamp | string {
  // `2026-11-21T10:00:00.123456789Z`: seconds from the part Date reads, nanoseconds kept.
  const dot = rfc3339.indexOf('.', 19);
  const ms = Date.parse(dot < 0 ? rfc3339 : rfc3339.slice(0, dot) + 'Z');
  if (Number.isNaN(ms)) return rfc3339;
  const frac = dot < 0 ? '' : rfc3339.slice(dot + 1, rfc3339.length - 1);
  const nanos = Number((frac + '000000000').slice(0, 9));
  return { $typeName: 'google.protobuf.Timestamp', seconds: BigInt(Math.floor(ms / 1000)), nanos } as Timestamp;
}

export class CelProgram {
  readonly source: string;
  readonly want: Want;
  /** The record's fields the expression reads. */
  readonly uses: ReadonlySet<string>;
  private readonly run: Plan;
  /** The compiled hot path (cel_fast.ts), when the expression stays within it. */
  private readonly fast: FastEval | undefined;
  private readonly ctx: Record<string, unknown> = {};
  private readonly useBody: boolean;
  private readonly useAttributes: boolean;
  private readonly useResource: boolean;
  private readonly useSeverity: boolean;
  private readonly useSeverityText: boolean;
  private readonly useTimestamp: boolean;
  /** Reads `resource` and/or `attributes` only: one result per (resource, attributes) pair of objects. */
  private readonly perObject: boolean;
  private lastResource: object | undefined;
  private lastAttributes: object | undefined;
  private lastResult: unknown;
  private readonly memo = new WeakMap<object, { other: object | undefined; result: unknown }>();

  constructor(source: string, want: Want, uses: ReadonlySet<string>, run: Plan, fast?: FastEval) {
    this.source = source;
    this.want = want;
    this.uses = uses;
    this.run = run;
    this.fast = fast;
    this.useBody = uses.has('body');
    this.useAttributes = uses.has('attributes');
    this.useResource = uses.has('resource');
    this.useSeverity = uses.has('severity_number');
    this.useSeverityText = uses.has('severity_text');
    this.useTimestamp = uses.has('timestamp');
    this.perObject = !this.useBody && !this.useSeverity && !this.useSeverityText && !this.useTimestamp;
  }

  /** True when the result depends only on the record's shared resource and attributes objects. */
  get sharedObjectsOnly(): boolean {
    return this.perObject;
  }

  /** The result as a JavaScript value (bigint for CEL ints), or a CelFailure. Never throws. */
  evaluate(r: LogRecord): unknown {
    if (!this.perObject) return this.evaluateNow(r);
    const key: object = this.useResource ? r.resource : r.attributes;
    const other = this.useResource && this.useAttributes ? r.attributes : undefined;
    if (key === this.lastResource && other === this.lastAttributes) return this.lastResult;
    let hit = this.memo.get(key);
    if (hit === undefined || hit.other !== other) {
      hit = { other, result: this.evaluateNow(r) };
      this.memo.set(key, hit);
    }
    this.lastResource = key;
    this.lastAttributes = other;
    this.lastResult = hit.result;
    return hit.result;
  }

  /** True when evaluation runs on the compiled hot path (cel_fast.ts) rather than @bufbuild/cel's evaluator. */
  get compiled(): boolean {
    return this.fast !== undefined;
  }

  private evaluateNow(r: LogRecord): unknown {
    if (this.fast) {
      let v: unknown;
      try {
        v = this.fast(r);
      } catch (err) {
        if (err !== FALLBACK) return new CelFailure((err as Error).message);
        return this.check(this.reference(r));
      }
      return v instanceof CelError ? new CelFailure(v.message) : this.check(v);
    }
    return this.check(this.reference(r));
  }

  /** @bufbuild/cel's own evaluation of the record: a CelFailure or the value, unchecked. */
  reference(r: LogRecord): unknown {
    const ctx = this.ctx;
    if (this.useBody) ctx.body = r.body;
    if (this.useAttributes) ctx.attributes = celMapOf(r.attributes);
    if (this.useResource) ctx.resource = celMapOf(r.resource);
    if (this.useSeverity) {
      const n = r.severityNumber ?? 0;
      ctx.severity_number = SEVERITIES[n] ?? BigInt(Math.trunc(n));
    }
    if (this.useSeverityText) ctx.severity_text = r.severityText ?? '';
    if (this.useTimestamp) ctx.timestamp = timestampOf(r.timestamp);
    let v: unknown;
    try {
      v = this.run(ctx);
    } catch (err) {
      return new CelFailure((err as Error).message);
    }
    return isCelError(v) ? new CelFailure(v.message) : v;
  }

  private check(v: unknown): unknown {
    if (v instanceof CelFailure) return v;
    if (this.want === 'bool' && typeof v !== 'boolean') return new CelFailure(`expected a bool, got ${describe(v)}`);
    if (this.want === 'number' && typeof v !== 'number' && typeof v !== 'bigint' && !isCelUint(v)) {
      return new CelFailure(`expected a number, got ${describe(v)}`);
    }
    return v;
  }

  toJSON(): string {
    return this.source;
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (v === null) return 'null';
  if (isCelList(v)) return 'a list';
  if (isCelMap(v)) return 'a map';
  return typeof v;
}

/** Parses, checks and plans `source`; the error text is what `validate` prints after the key path. */
export function compileCel(source: string, want: Want): CelProgram | { problem: string } {
  let parsed;
  try {
    parsed = parse(source);
  } catch (err) {
    return { problem: `CEL syntax error: ${(err as Error).message.replace(/^<input>:(\d+):(\d+): /, 'line $1, column $2: ')}` };
  }
  const checker = new Checker(ENV, VARIABLES, parsed.sourceInfo?.positions ?? {});
  let kind: Kind;
  try {
    kind = checker.check(parsed.expr);
  } catch (err) {
    if (!(err instanceof CheckFailed)) throw err;
    return { problem: `CEL: ${err.message}${where(source, err.offset)}` };
  }
  if (want === 'bool' && kind !== 'bool' && kind !== 'dyn') return { problem: `CEL: the condition must be a bool, its type is ${kind}` };
  if (want === 'number' && !['int', 'uint', 'double', 'dyn'].includes(kind)) return { problem: `CEL: the value must be a number, its type is ${kind}` };
  return new CelProgram(source, want, checker.uses, plan(ENV, parsed) as Plan, compileFast(parsed.expr));
}

function where(source: string, offset: number | undefined): string {
  if (offset === undefined) return '';
  const before = source.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  return line > 1 ? ` (line ${line}, column ${column})` : ` (column ${column})`;
}

/**
 * A CEL result as the record's own kind of value: ints become numbers, lists arrays, maps plain
 * objects, timestamps RFC 3339 text, bytes base64. `undefined` for null.
 */
export function celToJs(v: unknown): unknown {
  switch (typeof v) {
    case 'bigint':
      return Number(v);
    case 'string':
    case 'number':
    case 'boolean':
      return v;
    case 'object':
      break;
    default:
      return undefined;
  }
  if (v === null) return undefined;
  if (isCelUint(v)) return Number(v.value);
  if (isCelList(v)) return [...v].map(celToJs);
  if (isCelMap(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, val] of v) out[String(isCelUint(k) ? k.value : k)] = celToJs(val);
    return out;
  }
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (isMessage(v, TimestampSchema)) return timestampDate(v).toISOString();
  if (isMessage(v, DurationSchema)) return `${Number(v.seconds) + v.nanos / 1e9}s`;
  if (Array.isArray(v)) return v.map(celToJs);
  return v;
}

/** A CEL result as a label or key: text as is, numbers in decimal, anything else as JSON. */
export function celToText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  const js = celToJs(v);
  return js === undefined ? '' : typeof js === 'string' ? js : JSON.stringify(js);
}

/** A config value holding a CEL expression: compiled at load, a problem is a config error at its key path. */
export function celExpression(want: Want) {
  return z.string().transform((source, ctx) => {
    const compiled = compileCel(source, want);
    if (compiled instanceof CelProgram) return compiled;
    ctx.addIssue({ code: 'custom', message: compiled.problem });
    return z.NEVER;
  });
}
