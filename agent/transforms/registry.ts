import type { z } from 'zod';
import { Dedupe, dedupeConfig } from './dedupe.ts';
import { Filter, filterConfig } from './filter.ts';
import { LogToMetric, logToMetricConfig } from './log_to_metric.ts';
import { Modify, modifyConfig } from './modify.ts';
import { Redact, redactConfig } from './redact.ts';
import { Route, routeConfig } from './route.ts';
import { Sample, sampleConfig } from './sample.ts';
import { Throttle, throttleConfig } from './throttle.ts';
import type { Transform, TransformContext } from './transform.ts';

/** Every transform type the config accepts: its schema and its factory. A new transform adds one line here. */
export const transformPlugins = {
  filter: { schema: filterConfig, create: (c: z.infer<typeof filterConfig>, ctx: TransformContext) => new Filter(c, ctx) },
  redact: { schema: redactConfig, create: (c: z.infer<typeof redactConfig>, ctx: TransformContext) => new Redact(c, ctx) },
  modify: { schema: modifyConfig, create: (c: z.infer<typeof modifyConfig>, ctx: TransformContext) => new Modify(c, ctx) },
  sample: { schema: sampleConfig, create: (c: z.infer<typeof sampleConfig>, ctx: TransformContext) => new Sample(c, ctx) },
  log_to_metric: {
    schema: logToMetricConfig,
    create: (c: z.infer<typeof logToMetricConfig>, ctx: TransformContext) => new LogToMetric(c, ctx),
  },
  dedupe: { schema: dedupeConfig, create: (c: z.infer<typeof dedupeConfig>, ctx: TransformContext) => new Dedupe(c, ctx) },
  throttle: { schema: throttleConfig, create: (c: z.infer<typeof throttleConfig>, ctx: TransformContext) => new Throttle(c, ctx) },
  route: { schema: routeConfig, create: (c: z.infer<typeof routeConfig>, ctx: TransformContext) => new Route(c, ctx) },
} as const;

export type TransformConfig = z.infer<(typeof transformPlugins)[keyof typeof transformPlugins]['schema']>;

export function createTransform(config: TransformConfig, ctx: TransformContext): Transform {
  // The schema's discriminated union guarantees config matches the plugin picked by its type.
  const create = transformPlugins[config.type].create as (c: TransformConfig, ctx: TransformContext) => Transform;
  return create(config, ctx);
}

/** Whether a reload must replace a transform: its config as written (expressions by their text) changed. */
export function sameTransform(a: TransformConfig | undefined, b: TransformConfig | undefined): boolean {
  return a !== undefined && b !== undefined && JSON.stringify(a) === JSON.stringify(b);
}
