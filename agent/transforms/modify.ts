import { z } from 'zod';
import { parseJsonBody } from '../../parsers/json_body.ts';
import { parseLogfmt } from '../../parsers/logfmt.ts';
import { severityFromFields } from '../../parsers/severity.ts';
import type { Attributes, AttributeValue, Body, LogRecord } from '../record.ts';
import { CelFailure, celExpression, celToJs, type CelProgram } from './cel.ts';
import { transformCommon } from './common_config.ts';
import { transformError, type Outlet, type Transform, type TransformContext } from './transform.ts';

const fieldMap = z.record(z.string().min(1), celExpression('any'));
const renames = z.record(z.string().min(1), z.string().min(1));

export const modifyConfig = z.strictObject({
  type: z.literal('modify'),
  ...transformCommon,
  /** Parse a text field with the body parsers: `body` (the text body) or `body.<field>` (a string field of a parsed body). */
  parse: z
    .array(
      z.strictObject({
        field: z.string().regex(/^body(\..+)?$/, 'expected body or body.<field>'),
        format: z.enum(['json', 'logfmt']),
      }),
    )
    .default([]),
  /** Field -> CEL value, per section. Body fields apply to a parsed (object) body. */
  set: z
    .strictObject({
      attributes: fieldMap.default({}),
      resource: fieldMap.default({}),
      body: fieldMap.default({}),
      severity_text: celExpression('any').optional(),
      severity_number: celExpression('number').optional(),
    })
    .prefault({}),
  /** Old name -> new name, per section. */
  rename: z.strictObject({ attributes: renames.default({}), resource: renames.default({}), body: renames.default({}) }).prefault({}),
  /** Field names to remove, per section. */
  delete: z
    .strictObject({
      attributes: z.array(z.string().min(1)).default([]),
      resource: z.array(z.string().min(1)).default([]),
      body: z.array(z.string().min(1)).default([]),
    })
    .prefault({}),
});
export type ModifyConfig = z.infer<typeof modifyConfig>;

type Section = 'attributes' | 'resource';
type Setter = { key: string; value: CelProgram; expression: string };

/** A body path: `a.b` is field `b` of object `a` (body field names with dots are rare; attribute keys have them, so those are never split). */
const pathOf = (field: string) => field.split('.');

/**
 * `modify`: parse, set, rename and delete fields, in that order. The record passes on as a new
 * object; attribute and resource objects stay shared: the changed object is built once per
 * original object when what is set depends only on resource and attributes (the common case,
 * `resource["k8s.pod.label.team"]`), so outputs keep caching their JSON by identity.
 */
export class Modify implements Transform {
  private readonly ctx: TransformContext;
  private readonly c: ModifyConfig;
  private readonly sets: Record<Section, Setter[]>;
  private readonly bodySets: Setter[];
  /** Per section: changed object by (original attributes, original resource), when memoisable. */
  private readonly memo: Record<Section, WeakMap<object, { other: object; result: Attributes }> | undefined>;
  private readonly dropOnError: boolean;
  private readonly touches: { attributes: boolean; resource: boolean; body: boolean };
  private failed = false;

  constructor(config: ModifyConfig, ctx: TransformContext) {
    this.ctx = ctx;
    this.c = config;
    const setters = (section: 'attributes' | 'resource' | 'body') =>
      Object.entries(config.set[section]).map(([key, value]) => ({ key, value, expression: `set.${section}.${key}` }));
    this.sets = { attributes: setters('attributes'), resource: setters('resource') };
    this.bodySets = setters('body');
    const shared = (s: Setter[]) => s.every((x) => x.value.sharedObjectsOnly);
    this.memo = {
      attributes: shared(this.sets.attributes) ? new WeakMap() : undefined,
      resource: shared(this.sets.resource) ? new WeakMap() : undefined,
    };
    this.dropOnError = config.on_error === 'drop';
    this.touches = {
      attributes: this.sets.attributes.length > 0 || Object.keys(config.rename.attributes).length > 0 || config.delete.attributes.length > 0,
      resource: this.sets.resource.length > 0 || Object.keys(config.rename.resource).length > 0 || config.delete.resource.length > 0,
      body:
        config.parse.length > 0 || this.bodySets.length > 0 || Object.keys(config.rename.body).length > 0 || config.delete.body.length > 0,
    };
  }

  process(records: LogRecord[], _batch: unknown, out: Outlet): void {
    const result: LogRecord[] = [];
    let failed = 0;
    for (const r of records) {
      this.failed = false;
      const next: LogRecord = { ...r };
      if (this.touches.body) this.modifyBody(next, r);
      if (this.touches.resource) next.resource = this.section('resource', r);
      if (this.touches.attributes) next.attributes = this.section('attributes', r);
      if (this.c.set.severity_text) {
        const v = this.value(this.c.set.severity_text, r, 'set.severity_text');
        if (v !== undefined) next.severityText = String(v);
      }
      if (this.c.set.severity_number) {
        const v = this.value(this.c.set.severity_number, r, 'set.severity_number');
        if (typeof v === 'number' && v >= 0 && v <= 24) next.severityNumber = Math.trunc(v);
      }
      if (this.failed && this.dropOnError) failed++;
      else result.push(next);
    }
    if (failed > 0) this.ctx.metrics.droppedRecords.inc({ component: this.ctx.name, reason: 'error' }, failed);
    out(result);
  }

  /** The record's attributes or resource after set, rename, delete. Expressions see the original record. */
  private section(section: Section, r: LogRecord): Attributes {
    const original = r[section];
    const other = section === 'attributes' ? r.resource : r.attributes;
    const memo = this.memo[section];
    const hit = memo?.get(original);
    if (hit && hit.other === other) return hit.result;
    const out: Record<string, AttributeValue> = { ...original };
    let unshareable = false;
    for (const s of this.sets[section]) {
      const v = this.value(s.value, r, s.expression);
      if (v === undefined) continue;
      out[s.key] = toAttribute(v);
    }
    unshareable ||= this.failed;
    for (const [from, to] of Object.entries(this.c.rename[section])) {
      if (!(from in out)) continue;
      out[to] = out[from]!;
      delete out[from];
    }
    for (const key of this.c.delete[section]) delete out[key];
    const result = Object.freeze(out);
    // A failure is counted per record: only successful results are shared.
    if (memo && !unshareable) memo.set(original, { other, result });
    return result;
  }

  private modifyBody(next: LogRecord, r: LogRecord): void {
    let body: Body = r.body;
    for (const p of this.c.parse) body = parseField(body, p.field, p.format, next);
    if (typeof body === 'string' || Array.isArray(body)) {
      next.body = body;
      return;
    }
    const obj: Record<string, unknown> = body === r.body ? { ...(body as Record<string, unknown>) } : (body as Record<string, unknown>);
    for (const s of this.bodySets) {
      const v = this.value(s.value, r, s.expression);
      if (v !== undefined) setPath(obj, pathOf(s.key), v);
    }
    for (const [from, to] of Object.entries(this.c.rename.body)) {
      const v = takePath(obj, pathOf(from));
      if (v !== undefined) setPath(obj, pathOf(to), v);
    }
    for (const field of this.c.delete.body) takePath(obj, pathOf(field));
    next.body = obj;
  }

  /** The expression's value as a record value; undefined for null or a failure (counted). */
  private value(p: CelProgram, r: LogRecord, expression: string): unknown {
    const v = p.evaluate(r);
    if (v instanceof CelFailure) {
      transformError(this.ctx, expression, v.message);
      this.failed = true;
      return undefined;
    }
    return celToJs(v);
  }
}

function toAttribute(v: unknown): AttributeValue {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  return JSON.stringify(v);
}

/** `body` parsed whole, or its field at `body.<path>` replaced by the object parsed from it; severity from a newly parsed body. */
function parseField(body: Body, field: string, format: 'json' | 'logfmt', next: LogRecord): Body {
  const parse = (text: string) => (format === 'json' ? parseJsonBody(text)?.body : parseLogfmt(text));
  if (field === 'body') {
    if (typeof body !== 'string') return body;
    const fields = parse(body);
    if (!fields) return body;
    if (next.severityNumber === undefined) {
      const severity = severityFromFields(fields);
      if (severity) {
        next.severityText = severity.text;
        next.severityNumber = severity.number;
      }
    }
    return fields;
  }
  if (typeof body !== 'object' || Array.isArray(body)) return body;
  const path = pathOf(field).slice(1);
  const copy = copyAlong(body as Record<string, unknown>, path);
  const text = getPath(copy, path);
  if (typeof text !== 'string') return body;
  const fields = parse(text);
  if (!fields) return body;
  setPath(copy, path, fields);
  return copy;
}

function getPath(obj: Record<string, unknown>, path: readonly string[]): unknown {
  let cur: unknown = obj;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

/** A copy of `obj` in which the objects along `path` are copies too (the rest is shared). */
function copyAlong(obj: Record<string, unknown>, path: readonly string[]): Record<string, unknown> {
  const root = { ...obj };
  let cur = root;
  for (const p of path.slice(0, -1)) {
    const child = cur[p];
    if (child === null || typeof child !== 'object' || Array.isArray(child)) break;
    cur = cur[p] = { ...(child as Record<string, unknown>) };
  }
  return root;
}

/** Sets `path` in `obj` (a copy the caller owns), copying the objects on the way. */
function setPath(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur = obj;
  for (const p of path.slice(0, -1)) {
    const child = cur[p];
    cur = cur[p] = child !== null && typeof child === 'object' && !Array.isArray(child) ? { ...(child as Record<string, unknown>) } : {};
  }
  cur[path[path.length - 1]!] = value;
}

/** Removes `path` from `obj` (a copy the caller owns), copying the objects on the way; returns what was there. */
function takePath(obj: Record<string, unknown>, path: readonly string[]): unknown {
  let cur = obj;
  for (const p of path.slice(0, -1)) {
    const child = cur[p];
    if (child === null || typeof child !== 'object' || Array.isArray(child)) return undefined;
    cur = cur[p] = { ...(child as Record<string, unknown>) };
  }
  const last = path[path.length - 1]!;
  if (!(last in cur)) return undefined;
  const v = cur[last];
  delete cur[last];
  return v;
}
