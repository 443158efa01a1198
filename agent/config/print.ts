import { stringify } from 'yaml';
import type { z } from 'zod';
import { configSchema, type AgentConfig } from './schema.ts';
import { isNamedMap, unitSchemas } from './types.ts';
import { formatBytes, formatDuration } from './units.ts';

/**
 * `validate --print`: the config as the agent runs it, every default filled in and `${VAR}`s
 * expanded, written back as YAML the agent accepts again (sizes as `1GiB`, durations as `30s`).
 * Values of keys that hold credentials are masked: the output gets pasted into tickets.
 */

const SECRET_KEYS = new Set(['password', 'bearer_token', 'api_key', 'token', 'secret', 'authorization']);
export const MASK = '<redacted>';

type Def = {
  type: string;
  innerType?: z.core.$ZodType;
  in?: z.core.$ZodType;
  shape?: Record<string, z.core.$ZodType>;
  valueType?: z.core.$ZodType;
  element?: z.core.$ZodType;
  options?: z.core.$ZodType[];
};

function defOf(schema: z.core.$ZodType): Def {
  return schema._zod.def as unknown as Def;
}

/** The schema that describes `value`, through defaults, optionals and the branch of a `type` union. */
function unwrap(schema: z.core.$ZodType, value: unknown): z.core.$ZodType {
  for (;;) {
    if (unitSchemas.size.has(schema) || unitSchemas.duration.has(schema)) return schema;
    const def = defOf(schema);
    if (def.innerType && (def.type === 'default' || def.type === 'prefault' || def.type === 'optional' || def.type === 'nullable' || def.type === 'readonly' || def.type === 'catch')) {
      schema = def.innerType;
    } else if (def.type === 'pipe' && def.in) {
      schema = def.in;
    } else if (def.type === 'union' && def.options && value && typeof value === 'object' && 'type' in value) {
      const branch = def.options.find((o) => {
        const t = defOf(o).shape?.type;
        return t !== undefined && (t._zod.def as unknown as { values?: unknown[] }).values?.includes((value as { type: unknown }).type);
      });
      if (!branch) return schema;
      schema = branch;
    } else {
      return schema;
    }
  }
}

function render(schema: z.core.$ZodType | undefined, value: unknown, key: string | undefined): unknown {
  if (key !== undefined && SECRET_KEYS.has(key.toLowerCase()) && typeof value === 'string' && value !== '') return MASK;
  if (value === undefined || value === null || schema === undefined) return value ?? null;
  const s = unwrap(schema, value);
  if (typeof value === 'number') {
    if (unitSchemas.size.has(s)) {
      const text = formatBytes(value);
      return /^\d+$/.test(text) ? value : text;
    }
    if (unitSchemas.duration.has(s)) return formatDuration(value);
    return value;
  }
  // Values compiled at load (CEL expressions, throttle budgets) write themselves back as written.
  if (typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') return (value as { toJSON(): unknown }).toJSON();
  const def = defOf(s);
  if (Array.isArray(value)) return value.map((v) => render(def.element, v, undefined));
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {};
    const named = isNamedMap(s);
    for (const [k, v] of Object.entries(value)) {
      const child = def.type === 'object' ? def.shape?.[k] : def.type === 'record' ? def.valueType : undefined;
      out[k] = render(child, v, named ? undefined : k);
    }
    return out;
  }
  return value;
}

export function printConfig(config: AgentConfig): string {
  const resolved = render(configSchema, config, undefined);
  return `# resolved by telemetry-agent validate --print: every default filled in, \${VAR}s expanded, credentials masked\n${stringify(resolved, { lineWidth: 0 })}`;
}
