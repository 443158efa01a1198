import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { duration, size } from '../config/types.ts';
import type { Attributes, LogRecord } from '../record.ts';
import { CelFailure, celExpression, celToText } from './cel.ts';
import { transformCommon } from './common_config.ts';
import { transformError, type BatchContext, type Outlet, type Transform, type TransformContext } from './transform.ts';

export const dedupeConfig = z.strictObject({
  type: z.literal('dedupe'),
  ...transformCommon,
  /** A run of identical records leaves at most this long after its first record. */
  window: duration('1s').default(1000),
  /** CEL value naming the stream; default: the record's container (resource) and file and stream. */
  key: celExpression('any').optional(),
  /** Streams with an open run at once; beyond, the oldest run leaves early. */
  max_streams: z.number().int().min(1).default(10_000),
  /**
   * Raw bytes of the batches open runs keep unacknowledged; beyond, the oldest runs leave early.
   * Below the smallest read window of a source (256KiB), so a source never waits on a dedupe.
   */
  max_held_bytes: size('128KiB').default(128 * 1024),
});
export type DedupeConfig = z.infer<typeof dedupeConfig>;

export const REPEAT_COUNT = 'kta.repeat.count';
export const REPEAT_LAST = 'kta.repeat.last_timestamp';

/** Identical consecutive records of one stream: the first, how many, when the last was. */
interface Run {
  readonly first: LogRecord;
  count: number;
  last: string;
  readonly startedAt: number;
  /** Holds on every batch a record of the run came from: released once the collapsed record is accepted. */
  readonly releases: (() => void)[];
  /** The batches it holds (their bytes count against max_held_bytes). */
  readonly batches: BatchContext[];
  readonly owner: object;
  readonly key: string;
}

/**
 * `dedupe`: collapses identical consecutive records (same body and severity) of one stream into
 * the first of them, with `kta.repeat.count` and `kta.repeat.last_timestamp` when there were
 * several. A record is held until the next different record of its stream, or `window` after it
 * arrived; the batches it and its repeats came from stay unacknowledged until the collapsed record
 * is accepted, so a crash repeats rather than loses them. Repeats are counted as dropped
 * (`reason="deduplicated"`).
 */
export class Dedupe implements Transform {
  private readonly ctx: TransformContext;
  private readonly c: DedupeConfig;
  /** Open runs by resource object (or, with `key`, one owner), then by file and stream (or key value). */
  private readonly byOwner = new Map<object, Map<string, Run>>();
  /** The same runs, oldest first. */
  private readonly runs = new Set<Run>();
  private readonly keyed = {};
  /** Batches open runs hold, by how many runs hold each, and their raw bytes. */
  private readonly held = new Map<BatchContext, number>();
  private heldBytes = 0;
  private lastAttributes: object | undefined;
  private lastKey = '';
  private readonly timer: NodeJS.Timeout;
  private readonly deduplicated: { inc(n: number): void };

  constructor(config: DedupeConfig, ctx: TransformContext) {
    this.ctx = ctx;
    this.c = config;
    this.deduplicated = ctx.metrics.droppedRecords.labels({ component: ctx.name, reason: 'deduplicated' });
    this.timer = setInterval(() => {
      try {
        this.leave(Date.now());
      } catch (err) {
        // A bug, not bad input: the runs stay held (their records are read again after a restart).
        ctx.warnings.warn('leave', `transform ${ctx.name}: ${(err as Error).stack ?? String(err)}`);
      }
    }, Math.min(1000, Math.max(20, Math.floor(config.window / 4))));
    this.timer.unref();
  }

  process(records: LogRecord[], batch: BatchContext, out: Outlet): void {
    const now = Date.now();
    const passed: LogRecord[] = [];
    const releases: (() => void)[] = [];
    let repeats = 0;
    let failed = 0;
    for (const r of records) {
      const owner = this.c.key ? this.keyed : r.resource;
      const key = this.streamKey(r);
      if (key === undefined) {
        if (this.c.on_error === 'drop') failed++;
        else passed.push(r);
        continue;
      }
      let streams = this.byOwner.get(owner);
      const run = streams?.get(key);
      if (run && same(run.first, r)) {
        run.count++;
        run.last = r.timestamp;
        this.hold(run, batch);
        repeats++;
        continue;
      }
      if (run) {
        passed.push(this.collapse(run));
        releases.push(...run.releases);
        streams = this.byOwner.get(owner); // gone when that was its last run
      }
      if (!streams) this.byOwner.set(owner, (streams = new Map()));
      const next: Run = { first: r, count: 1, last: r.timestamp, startedAt: now, releases: [], batches: [], owner, key };
      this.hold(next, batch);
      streams.set(key, next);
      this.runs.add(next);
    }
    if (repeats > 0) this.deduplicated.inc(repeats);
    if (failed > 0) this.ctx.metrics.droppedRecords.inc({ component: this.ctx.name, reason: 'error' }, failed);
    // Too many streams, or too much of the sources' read windows held: the oldest runs leave now.
    for (const run of this.runs) {
      if (this.runs.size <= this.c.max_streams && this.heldBytes <= this.c.max_held_bytes) break;
      passed.push(this.collapse(run));
      releases.push(...run.releases);
    }
    out(passed, undefined, releases.length ? () => releases.forEach((f) => f()) : undefined);
  }

  flush(): void {
    this.emitRuns([...this.runs]);
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Ends a run: the record that goes on for it. */
  private collapse(run: Run): LogRecord {
    for (const batch of run.batches) {
      const holders = this.held.get(batch)! - 1;
      if (holders > 0) this.held.set(batch, holders);
      else {
        this.held.delete(batch);
        this.heldBytes -= batch.bytes;
      }
    }
    const streams = this.byOwner.get(run.owner)!;
    streams.delete(run.key);
    if (streams.size === 0) this.byOwner.delete(run.owner);
    this.runs.delete(run);
    if (run.count === 1) return run.first;
    const attributes: Attributes = Object.freeze({ ...run.first.attributes, [REPEAT_COUNT]: run.count, [REPEAT_LAST]: run.last });
    return { ...run.first, attributes };
  }

  /** Runs older than `window` leave now. */
  private leave(now: number): void {
    const due: Run[] = [];
    for (const run of this.runs) {
      if (now - run.startedAt < this.c.window) break; // oldest first
      due.push(run);
    }
    this.emitRuns(due);
  }

  private emitRuns(runs: Run[]): void {
    if (runs.length === 0) return;
    const releases = runs.flatMap((r) => r.releases);
    this.ctx.emit(
      runs.map((r) => this.collapse(r)),
      () => releases.forEach((f) => f()),
    );
  }

  private hold(run: Run, batch: BatchContext): void {
    if (run.batches[run.batches.length - 1] === batch) return;
    run.batches.push(batch);
    run.releases.push(batch.hold());
    const holders = this.held.get(batch) ?? 0;
    if (holders === 0) this.heldBytes += batch.bytes;
    this.held.set(batch, holders + 1);
  }

  /** The record's stream within its owner; undefined when `key` failed on it (counted). */
  private streamKey(r: LogRecord): string | undefined {
    if (!this.c.key) {
      // Attribute objects are shared by a file's records: the key is built once per object.
      if (r.attributes === this.lastAttributes) return this.lastKey;
      this.lastAttributes = r.attributes;
      this.lastKey = `${String(r.attributes['log.file.path'] ?? '')}\u0000${String(r.attributes['log.iostream'] ?? '')}`;
      return this.lastKey;
    }
    const v = this.c.key.evaluate(r);
    if (v instanceof CelFailure) {
      transformError(this.ctx, 'key', v.message);
      return undefined;
    }
    return celToText(v);
  }
}

function same(a: LogRecord, b: LogRecord): boolean {
  if (a.severityNumber !== b.severityNumber || a.severityText !== b.severityText) return false;
  if (a.body === b.body) return true;
  return typeof a.body === 'object' && typeof b.body === 'object' && isDeepStrictEqual(a.body, b.body);
}
