import { z } from 'zod';
import type { Attributes, AttributeValue, Body, LogRecord } from '../record.ts';
import { namedMap } from '../config/types.ts';
import { transformCommon } from './common_config.ts';
import { BUILTIN_PATTERNS, customPattern, DEFAULT_PATTERNS, type RedactPattern } from './redact_patterns.ts';
import type { Outlet, Transform, TransformContext } from './transform.ts';

interface Counter {
  inc(n?: number): void;
}

const builtinName = z.enum(Object.keys(BUILTIN_PATTERNS) as [string, ...string[]]);

export const redactConfig = z.strictObject({
  type: z.literal('redact'),
  ...transformCommon,
  /** Built-in patterns to apply. */
  patterns: z.array(builtinName).default(DEFAULT_PATTERNS),
  /** Name -> RE2 regex (a name like `password` says what it finds: the regex is no secret). */
  custom: namedMap(
    z.record(
      z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'pattern names are lowercase letters, digits, _ and -'),
      z.string().transform((source, ctx) => {
        try {
          customPattern('check', source);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: `not an RE2 regex: ${(err as Error).message} (RE2 has no lookaround or backreferences)` });
          return z.NEVER;
        }
        return source;
      }),
    ),
  ).default({}),
  /** What a secret is replaced with; `{pattern}` is the pattern's name. */
  replacement: z.string().default('[REDACTED]'),
  /** Redact the body: a text body, or every string in a parsed one. */
  body: z.boolean().default(true),
  /** Attribute keys whose string values are redacted too. */
  attributes: z.array(z.string().min(1)).default([]),
});
export type RedactConfig = z.infer<typeof redactConfig>;

/**
 * `redact`: replaces secrets in the body (text, or every string value of a parsed body; keys stay)
 * and in chosen attributes, counted per pattern. Records without a secret pass on as they are;
 * a record with one passes on as a new record (the original may be read by another branch).
 */
export class Redact implements Transform {
  private readonly patterns: { p: RedactPattern; replacement: string; counter: Counter }[];
  private readonly body: boolean;
  private readonly minLength: number;
  private readonly attributes: readonly string[];
  /** Redacted attribute objects by the shared object they came from (most hold no secret: the same object). */
  private readonly attributesMemo = new WeakMap<Attributes, { result: Attributes; hits: [Counter, number][] }>();
  /** Where redactText counts while redacting a shared attributes object (replayed per record). */
  private tally: [Counter, number][] | undefined;

  constructor(config: RedactConfig, ctx: TransformContext) {
    const all = [
      ...Object.keys(BUILTIN_PATTERNS).filter((name) => config.patterns.includes(name)).flatMap((name) => BUILTIN_PATTERNS[name]!),
      ...Object.entries(config.custom).map(([name, source]) => customPattern(name, source)),
    ];
    this.patterns = all.map((p) => ({
      p,
      replacement: config.replacement.replaceAll('{pattern}', p.name),
      counter: ctx.metrics.redactions.labels({ transform: ctx.name, pattern: p.name }),
    }));
    this.body = config.body;
    this.attributes = config.attributes;
    // No secret a built-in pattern knows is shorter than an e-mail address like a@b.io; a custom one may be.
    this.minLength = Object.keys(config.custom).length > 0 ? 1 : 6;
  }

  process(records: LogRecord[], _batch: unknown, out: Outlet): void {
    let result: LogRecord[] | undefined;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const body = this.body ? this.redactBody(r.body) : r.body;
      const attributes = this.attributes.length > 0 ? this.redactAttributes(r.attributes) : r.attributes;
      if (body === r.body && attributes === r.attributes) {
        result?.push(r);
        continue;
      }
      result ??= records.slice(0, i);
      result.push({ ...r, body, attributes });
    }
    out(result ?? records);
  }

  /** `text` with every secret replaced; the same string when there is none. */
  redactText(text: string): string {
    if (text.length < this.minLength) return text;
    let s = text;
    for (const { p, replacement, counter } of this.patterns) {
      if (p.hint && !p.hint(s)) continue;
      if (!p.regex.test(s)) continue;
      const m = p.regex.matcher(s);
      let out = '';
      let last = 0;
      let found = 0;
      while (m.find()) {
        const start = m.start(p.group);
        const end = m.end(p.group);
        if (start < 0 || end <= start) continue;
        if (p.valid && !p.valid(s.slice(start, end), s, start, end)) continue;
        out += s.slice(last, start) + replacement;
        last = end;
        found++;
      }
      if (found === 0) continue;
      if (this.tally) this.tally.push([counter, found]);
      else counter.inc(found);
      s = out + s.slice(last);
    }
    return s;
  }

  private redactBody(body: Body): Body {
    if (typeof body === 'string') return this.redactText(body);
    return this.redactValue(body) as Body;
  }

  /** Every string in a parsed body, at any depth; unchanged parts keep their objects. */
  private redactValue(v: unknown): unknown {
    if (typeof v === 'string') return this.redactText(v);
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) {
      let copy: unknown[] | undefined;
      for (let i = 0; i < v.length; i++) {
        const r = this.redactValue(v[i]);
        if (r !== v[i]) (copy ??= v.slice())[i] = r;
      }
      return copy ?? v;
    }
    const obj = v as Record<string, unknown>;
    let copy: Record<string, unknown> | undefined;
    for (const k in obj) {
      const val = obj[k];
      const r = this.redactValue(val);
      if (r !== val) (copy ??= { ...obj })[k] = r;
    }
    return copy ?? v;
  }

  private redactAttributes(attrs: Attributes): Attributes {
    const known = this.attributesMemo.get(attrs);
    if (known) {
      for (const [counter, n] of known.hits) counter.inc(n);
      return known.result;
    }
    const hits: [Counter, number][] = [];
    this.tally = hits;
    let copy: Record<string, AttributeValue> | undefined;
    for (const key of this.attributes) {
      const v = attrs[key];
      if (v === undefined) continue;
      const r = typeof v === 'string' ? this.redactText(v) : Array.isArray(v) ? (this.redactValue(v) as readonly string[]) : v;
      if (r !== v) (copy ??= { ...attrs })[key] = r;
    }
    this.tally = undefined;
    for (const [counter, n] of hits) counter.inc(n);
    const result = copy ? Object.freeze(copy) : attrs;
    // Frozen objects are shared by a file's records: redacted once per object, counted per record.
    if (Object.isFrozen(attrs)) this.attributesMemo.set(attrs, { result, hits });
    return result;
  }
}
