import { z } from 'zod';
import type { LogRecord } from '../record.ts';
import { CelFailure, celExpression, type CelProgram } from './cel.ts';
import { transformCommon } from './common_config.ts';
import { UNMATCHED } from './graph.ts';
import { transformError, type Outlet, type Transform, type TransformContext } from './transform.ts';

const routeName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]*$/, 'route names are lowercase letters, digits, _ and -')
  .refine((n) => n !== UNMATCHED, { message: `${UNMATCHED} is the route of records no other route takes` });

export const routeConfig = z.strictObject({
  type: z.literal('route'),
  ...transformCommon,
  /** Route name -> CEL condition; readers name `<transform>.<route>`. */
  routes: z.record(routeName, celExpression('bool')).refine((r) => Object.keys(r).length > 0, { message: 'at least one route is needed' }),
});
export type RouteConfig = z.infer<typeof routeConfig>;

/**
 * `route`: a record goes to every route whose condition holds, or to `_unmatched` when none does.
 * A record in two routes is the same object in both (transforms never change what they are given).
 * A condition that fails counts as not matching (`on_error: drop`: the record is dropped instead).
 */
export class Route implements Transform {
  private readonly ctx: TransformContext;
  private readonly routes: { name: string; condition: CelProgram; key: string }[];
  private readonly dropOnError: boolean;

  constructor(config: RouteConfig, ctx: TransformContext) {
    this.ctx = ctx;
    this.routes = Object.entries(config.routes).map(([name, condition]) => ({ name, condition, key: `routes.${name}` }));
    this.dropOnError = config.on_error === 'drop';
  }

  process(records: LogRecord[], _batch: unknown, out: Outlet): void {
    const routed: LogRecord[][] = this.routes.map(() => []);
    const unmatched: LogRecord[] = [];
    let failed = 0;
    for (const r of records) {
      let matched = false;
      let error = false;
      for (let i = 0; i < this.routes.length; i++) {
        const route = this.routes[i]!;
        const v = route.condition.evaluate(r);
        if (v === true) {
          routed[i]!.push(r);
          matched = true;
        } else if (v instanceof CelFailure) {
          transformError(this.ctx, route.key, v.message);
          error = true;
        }
      }
      if (matched) continue;
      if (error && this.dropOnError) failed++;
      else unmatched.push(r);
    }
    if (failed > 0) this.ctx.metrics.droppedRecords.inc({ component: this.ctx.name, reason: 'error' }, failed);
    for (let i = 0; i < this.routes.length; i++) if (routed[i]!.length > 0) out(routed[i]!, this.routes[i]!.name);
    if (unmatched.length > 0) out(unmatched, UNMATCHED);
  }
}
