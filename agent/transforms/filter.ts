import { z } from 'zod';
import type { LogRecord } from '../record.ts';
import { CelFailure, celExpression, type CelProgram } from './cel.ts';
import { transformCommon } from './common_config.ts';
import { transformError, type Outlet, type Transform, type TransformContext } from './transform.ts';

export const filterConfig = z
  .strictObject({
    type: z.literal('filter'),
    ...transformCommon,
    /** Records for which this is true are dropped. */
    drop: celExpression('bool').optional(),
    /** Only records for which this is true are kept. */
    keep: celExpression('bool').optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.drop === undefined) === (c.keep === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['drop'], message: 'a filter takes exactly one of drop or keep' });
    }
  });
export type FilterConfig = z.infer<typeof filterConfig>;

/** `filter`: drops records by a CEL condition (counted, reason `filtered`). */
export class Filter implements Transform {
  private readonly ctx: TransformContext;
  private readonly condition: CelProgram;
  /** The result that drops a record: true for `drop`, false for `keep`. */
  private readonly dropWhen: boolean;
  private readonly dropOnError: boolean;
  private readonly key: string;
  private readonly dropped: { inc(n: number): void };
  private readonly errorsDropped: { inc(n: number): void };

  constructor(config: FilterConfig, ctx: TransformContext) {
    this.ctx = ctx;
    this.dropWhen = config.drop !== undefined;
    this.condition = (config.drop ?? config.keep)!;
    this.key = this.dropWhen ? 'drop' : 'keep';
    this.dropOnError = config.on_error === 'drop';
    this.dropped = ctx.metrics.droppedRecords.labels({ component: ctx.name, reason: 'filtered' });
    this.errorsDropped = ctx.metrics.droppedRecords.labels({ component: ctx.name, reason: 'error' });
  }

  process(records: LogRecord[], _batch: unknown, out: Outlet): void {
    let kept: LogRecord[] | undefined;
    let dropped = 0;
    let failed = 0;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const v = this.condition.evaluate(r);
      let drop: boolean;
      if (v instanceof CelFailure) {
        transformError(this.ctx, this.key, v.message);
        drop = this.dropOnError;
        if (drop) failed++;
      } else {
        drop = v === this.dropWhen;
        if (drop) dropped++;
      }
      if (drop) kept ??= records.slice(0, i);
      else kept?.push(r);
    }
    if (dropped > 0) this.dropped.inc(dropped);
    if (failed > 0) this.errorsDropped.inc(failed);
    out(kept ?? records);
  }
}
