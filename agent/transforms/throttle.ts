import { z } from 'zod';
import { formatBytes, parseSize } from '../config/units.ts';
import type { LogRecord } from '../record.ts';
import { CelFailure, celExpression, celToText, type CelProgram } from './cel.ts';
import { transformCommon } from './common_config.ts';
import { transformError, type BatchContext, type Outlet, type Transform, type TransformContext } from './transform.ts';

/** A budget: records (`2000`) or bytes (`1MiB`), per second for `rate`; written back as it reads (`validate --print`). */
class Amount {
  readonly value: number;
  readonly unit: 'records' | 'bytes';
  readonly perSecond: boolean;
  constructor(value: number, unit: 'records' | 'bytes', perSecond: boolean) {
    this.value = value;
    this.unit = unit;
    this.perSecond = perSecond;
  }
  toJSON(): string {
    return `${this.unit === 'bytes' ? formatBytes(this.value) : String(this.value)}${this.perSecond ? '/s' : ''}`;
  }
}

function amount(text: string | number, perSecond: boolean): Amount | undefined {
  if (typeof text === 'number') return text > 0 ? new Amount(text, 'records', perSecond) : undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) > 0 ? new Amount(Number(text), 'records', perSecond) : undefined;
  const bytes = parseSize(text);
  return bytes !== undefined && bytes > 0 ? new Amount(bytes, 'bytes', perSecond) : undefined;
}

export const throttleConfig = z
  .strictObject({
    type: z.literal('throttle'),
    ...transformCommon,
    /** CEL value: one budget per distinct value (e.g. the pod). Absent: one budget for all. */
    key: celExpression('any').optional(),
    /** `2000/s` (records) or `1MiB/s` (raw bytes read) per key. */
    rate: z.union([z.string(), z.number()]).transform((v, ctx) => {
      const m = typeof v === 'string' ? /^(.+)\/s$/.exec(v.trim()) : null;
      const a = m ? amount(m[1]!.trim(), true) : undefined;
      if (!a) {
        ctx.addIssue({ code: 'custom', message: `expected a rate like 2000/s (records) or 1MiB/s (bytes), got ${JSON.stringify(v)}` });
        return z.NEVER;
      }
      return a;
    }),
    /** What a key may spend at once after being quiet: records, or a size for a bytes rate. Default: one second's worth. */
    burst: z
      .union([z.string(), z.number()])
      .transform((v, ctx) => {
        const a = amount(v, false);
        if (!a) {
          ctx.addIssue({ code: 'custom', message: `expected a count like 10000 or a size like 4MiB, got ${JSON.stringify(v)}` });
          return z.NEVER;
        }
        return a;
      })
      .optional(),
    /** `drop`: records over budget are dropped (counted). `pause`: they pass, and their source reads that file more slowly. */
    when_exceeded: z.enum(['drop', 'pause']).default('drop'),
    /** Keys with a budget in use at once (memory bound). */
    max_keys: z.number().int().min(1).default(10_000),
  })
  .superRefine((c, ctx) => {
    if (c.burst && c.burst.unit !== c.rate.unit) {
      ctx.addIssue({ code: 'custom', path: ['burst'], message: `rate is in ${c.rate.unit}, so burst must be too (${c.rate.unit === 'bytes' ? 'a size like 4MiB' : 'a count like 10000'})` });
    }
  });
export type ThrottleConfig = z.infer<typeof throttleConfig>;

/** A key's token bucket: what it may still spend (below 0: debt, repaid at `rate`), as of `at`. */
interface Bucket {
  tokens: number;
  at: number;
}

/**
 * `throttle`: a token bucket per key, refilled at `rate` up to `burst`.
 * - `drop`: a record its key cannot pay for is dropped (`reason="throttled"`).
 * - `pause`: nothing is dropped. Every record passes and its key pays, into debt if need be; the
 *   batch then asks its source, through the batch's pace (agent/pipeline.ts ReadPace), to read the
 *   file it came from no sooner than the debt is repaid. A loud pod's file is read at its budget
 *   (its lines arrive later, all of them) while the other files keep their pace. A source that
 *   cannot pace per file has its next batch held instead.
 * Buckets that refilled are forgotten; at most `max_keys` are kept (the least recently used key
 * goes first, and starts again with a full burst).
 */
export class Throttle implements Transform {
  private readonly ctx: TransformContext;
  private readonly key: CelProgram | undefined;
  private readonly perMs: number;
  private readonly burst: number;
  private readonly bytes: boolean;
  private readonly pause: boolean;
  private readonly maxKeys: number;
  private readonly dropOnError: boolean;
  private readonly buckets = new Map<string, Bucket>();
  private readonly exceeded: { inc(n: number): void };
  private readonly throttled: { inc(n: number): void };
  private readonly keysGauge: { set(n: number): void };

  constructor(config: ThrottleConfig, ctx: TransformContext) {
    this.ctx = ctx;
    this.key = config.key;
    this.perMs = config.rate.value / 1000;
    this.burst = config.burst?.value ?? config.rate.value;
    this.bytes = config.rate.unit === 'bytes';
    this.pause = config.when_exceeded === 'pause';
    this.maxKeys = config.max_keys;
    this.dropOnError = config.on_error === 'drop';
    this.exceeded = ctx.metrics.throttleExceeded.labels({ transform: ctx.name, when_exceeded: config.when_exceeded });
    this.throttled = ctx.metrics.droppedRecords.labels({ component: ctx.name, reason: 'throttled' });
    this.keysGauge = ctx.metrics.throttleKeys.labels({ transform: ctx.name });
  }

  process(records: LogRecord[], batch: BatchContext, out: Outlet): void {
    const now = Date.now();
    // Bytes: each record's share of the raw bytes its batch was read from (one file's, for containers).
    const share = this.bytes && batch.bytes > 0 ? batch.bytes / records.length : undefined;
    let kept: LogRecord[] | undefined;
    let over = 0;
    let failed = 0;
    let debt = 0;
    let lastKey: string | undefined;
    let bucket: Bucket | undefined;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const key = this.keyOf(r);
      if (key === undefined && this.dropOnError) {
        kept ??= records.slice(0, i);
        failed++;
        continue;
      }
      if (bucket === undefined || key !== lastKey) {
        bucket = this.bucket(key ?? '', now);
        lastKey = key;
      }
      const cost = this.bytes ? (share ?? bodySize(r)) : 1;
      if (this.pause) {
        if (bucket.tokens < cost) over++;
        bucket.tokens -= cost;
        if (bucket.tokens < 0) debt = Math.max(debt, -bucket.tokens);
        kept?.push(r);
        continue;
      }
      // A record larger than the whole burst passes when the bucket is full (else it never could).
      if (bucket.tokens >= Math.min(cost, this.burst)) {
        bucket.tokens -= cost;
        kept?.push(r);
        continue;
      }
      over++;
      kept ??= records.slice(0, i);
    }
    if (over > 0) this.exceeded.inc(over);
    if (over > 0 && !this.pause) this.throttled.inc(over);
    if (failed > 0) this.ctx.metrics.droppedRecords.inc({ component: this.ctx.name, reason: 'error' }, failed);
    if (this.pause && debt > 0) batch.pause(Math.ceil(debt / this.perMs));
    this.keysGauge.set(this.buckets.size);
    out(kept ?? records);
  }

  /** The key's bucket, refilled to `now`; the map keeps the most recently used last. */
  private bucket(key: string, now: number): Bucket {
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.perMs);
      b.at = now;
      this.buckets.delete(key);
    } else {
      if (this.buckets.size >= this.maxKeys) this.forget(now);
      b = { tokens: this.burst, at: now };
    }
    this.buckets.set(key, b);
    return b;
  }

  /**
   * Makes room for a key, looking at a few of the least recently used: a bucket full again is the
   * same as a new one and goes first; else the least recently used goes (and will start full).
   */
  private forget(now: number): void {
    let looked = 0;
    for (const [key, b] of this.buckets) {
      if (b.tokens + (now - b.at) * this.perMs >= this.burst) {
        this.buckets.delete(key);
        return;
      }
      if (++looked >= 32) break;
    }
    this.buckets.delete(this.buckets.keys().next().value!);
  }

  private keyOf(r: LogRecord): string | undefined {
    if (!this.key) return '';
    const v = this.key.evaluate(r);
    if (v instanceof CelFailure) {
      transformError(this.ctx, 'key', v.message);
      return undefined;
    }
    return celToText(v);
  }
}

function bodySize(r: LogRecord): number {
  return typeof r.body === 'string' ? r.body.length : 256;
}
