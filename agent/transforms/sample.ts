import { z } from 'zod';
import type { LogRecord } from '../record.ts';
import { CelFailure, celExpression, celToText, type CelProgram } from './cel.ts';
import { transformCommon } from './common_config.ts';
import { transformError, type Outlet, type Transform, type TransformContext } from './transform.ts';

/** `0.1` or `"10%"`: the share of records kept. */
const share = z.union([z.number(), z.string().regex(/^\d+(\.\d+)?%$/, 'expected a fraction like 0.1 or a percentage like "10%"')]).transform((v, ctx) => {
  const n = typeof v === 'number' ? v : Number(v.slice(0, -1)) / 100;
  if (!(n > 0 && n <= 1)) {
    ctx.addIssue({ code: 'custom', message: `the share kept is above 0 and at most 1 (100%), got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return n;
});

export const sampleConfig = z.strictObject({
  type: z.literal('sample'),
  ...transformCommon,
  /** Share of each key's records kept. */
  rate: share,
  /** CEL value: records are sampled per distinct value (e.g. the container). Absent: one key for all. */
  key: celExpression('any').optional(),
  /** CEL bool: records for which it holds are always kept (and not counted against the share). */
  always_keep: celExpression('bool').optional(),
  /** Keys remembered at once; beyond, the least recently seen starts again from its hash phase. */
  max_keys: z.number().int().min(1).default(10_000),
});
export type SampleConfig = z.infer<typeof sampleConfig>;

/** FNV-1a, 32 bits: a key's phase, the same on every node and after every restart. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * `sample`: keeps `rate` of each key's records, exactly: every record adds `rate` to its key's
 * accumulator, and a record is kept when the accumulator passes a whole number. The accumulator
 * starts at a hash of the key, so keys do not all keep their first record, and the decisions are
 * deterministic (the same stream gives the same records on every node and run); kept records of a
 * key are evenly spread, never bunched. Dropped records are counted (`reason="sampled"`).
 */
export class Sample implements Transform {
  private readonly ctx: TransformContext;
  private readonly rate: number;
  private readonly key: CelProgram | undefined;
  private readonly alwaysKeep: CelProgram | undefined;
  private readonly maxKeys: number;
  private readonly dropOnError: boolean;
  private readonly phases = new Map<string, number>();
  private readonly sampled: { inc(n: number): void };

  constructor(config: SampleConfig, ctx: TransformContext) {
    this.ctx = ctx;
    this.rate = config.rate;
    this.key = config.key;
    this.alwaysKeep = config.always_keep;
    this.maxKeys = config.max_keys;
    this.dropOnError = config.on_error === 'drop';
    this.sampled = ctx.metrics.droppedRecords.labels({ component: ctx.name, reason: 'sampled' });
  }

  process(records: LogRecord[], _batch: unknown, out: Outlet): void {
    let kept: LogRecord[] | undefined;
    let dropped = 0;
    let failed = 0;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const verdict = this.keep(r);
      if (verdict === true) {
        kept?.push(r);
        continue;
      }
      kept ??= records.slice(0, i);
      if (verdict === false) dropped++;
      else failed++;
    }
    if (dropped > 0) this.sampled.inc(dropped);
    if (failed > 0) this.ctx.metrics.droppedRecords.inc({ component: this.ctx.name, reason: 'error' }, failed);
    out(kept ?? records);
  }

  /** true: keep; false: sampled out; 'error': an expression failed and on_error is drop. */
  private keep(r: LogRecord): boolean | 'error' {
    let error = false;
    if (this.alwaysKeep) {
      const v = this.alwaysKeep.evaluate(r);
      if (v === true) return true;
      if (v instanceof CelFailure) {
        transformError(this.ctx, 'always_keep', v.message);
        error = true;
      }
    }
    let key = '';
    if (this.key) {
      const v = this.key.evaluate(r);
      if (v instanceof CelFailure) {
        transformError(this.ctx, 'key', v.message);
        error = true;
      } else key = celToText(v);
    }
    if (error && this.dropOnError) return 'error';
    let acc = this.phases.get(key);
    if (acc === undefined) {
      if (this.phases.size >= this.maxKeys) this.phases.delete(this.phases.keys().next().value!);
      acc = hash32(key) / 2 ** 32;
    } else this.phases.delete(key); // re-inserted below: the Map's order is least recently seen first
    acc += this.rate;
    const keep = acc >= 1;
    if (keep) acc -= 1;
    this.phases.set(key, acc);
    return keep;
  }
}
