import { z } from 'zod';
import { parseDuration, parseSize } from './units.ts';

/** Schema pieces shared by every plugin's config, so each plugin file states only its own keys. */

/** The schemas of sizes and durations, so `validate --print` writes them back as `1MiB` and `30s`. */
export const unitSchemas = { size: new WeakSet<object>(), duration: new WeakSet<object>() };

function marked<T extends object>(set: WeakSet<object>, schema: T): T {
  set.add(schema);
  return schema;
}

/**
 * Maps whose keys are names the user picks for things that are not credentials (redact's custom
 * patterns): `validate --print` shows their values even under a key like `password`.
 */
const namedMaps = new WeakSet<object>();
export const namedMap = <T extends object>(schema: T): T => marked(namedMaps, schema);
export const isNamedMap = (schema: object): boolean => namedMaps.has(schema);

export const size = (example = '1MiB') =>
  marked(unitSchemas.size, z.union([z.string(), z.number()]).transform((value, ctx) => {
    const bytes = parseSize(value);
    if (bytes === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a size like ${example}, got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    return bytes;
  }));

export const duration = (example = '1s') =>
  marked(unitSchemas.duration, z.union([z.string(), z.number()]).transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a duration like ${example}, got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    return ms;
  }));

/**
 * A period a timer runs at: a duration of at least 10 ms. `0s` would turn the timer into a busy
 * loop that takes a core, which a config `validate` accepts must never do.
 */
export const interval = (example = '1s') => duration(example).pipe(z.number().min(10, { error: 'expected at least 10ms (a period; 0 would spin)' }));

/** A non-empty list of source names an output or stage reads from. */
export const inputs = z.array(z.string().min(1)).min(1, { message: 'expected at least one input (a source, transform or route)' });
