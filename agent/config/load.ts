import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { expandEnv } from './env.ts';
import { closest } from './did_you_mean.ts';
import { configSchema, type AgentConfig } from './schema.ts';

/** A config that cannot be used: one line per problem, each naming its key path. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(file: string, problems: string[], headline = 'invalid config') {
    super(`${file}: ${headline}\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.problems = problems;
  }
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new ConfigError(file, [`cannot read config file: ${why}`], 'cannot read config file');
  }
  return parseConfig(text, file, env);
}

export function parseConfig(text: string, file = '<config>', env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const expanded = expandEnv(text, env);
  if (expanded.problems.length) throw new ConfigError(file, expanded.problems.map((p) => `line ${p.line}: ${p.message}`));

  const doc = parseDocument(expanded.text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => `line ${e.linePos?.[0].line ?? '?'}: YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`),
    );
  }
  const data: unknown = doc.toJS() ?? {};
  const result = configSchema.safeParse(data);
  if (!result.success) throw new ConfigError(file, result.error.issues.flatMap((i) => describeIssue(i, data)));
  return result.data;
}

function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out ? `.${String(part)}` : String(part);
  return out || '(top level)';
}

function describeIssue(issue: z.core.$ZodIssue, data: unknown): string[] {
  const where = keyPath(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = knownKeys(configSchema, issue.path, data);
      return issue.keys.map((key) => {
        const near = closest(key, known);
        const hint = near ? ` (did you mean ${near}?)` : known.length ? ` (known keys: ${known.join(', ')})` : '';
        return `${keyPath([...issue.path, key])}: unknown key${hint}`;
      });
    }
    case 'invalid_union':
      if ('discriminator' in issue && issue.discriminator === 'type') {
        const got = valueAt(data, issue.path);
        const options = (issue as { options?: unknown[] }).options ?? [];
        return [
          `${where}: ${got === undefined ? 'missing' : `unknown type ${JSON.stringify(got)}`} (expected one of: ${options.join(', ')})`,
        ];
      }
      return [`${where}: ${issue.message}`];
    case 'invalid_type':
      if (valueAt(data, issue.path) === undefined) return [`${where}: required key is missing (expected ${issue.expected})`];
      return [`${where}: expected ${issue.expected}, got ${JSON.stringify(valueAt(data, issue.path))}`];
    case 'invalid_key':
      return issue.issues.map((i) => `${where}: ${i.message}`);
    case 'invalid_value':
      return [`${where}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}, got ${JSON.stringify(valueAt(data, issue.path))}`];
    default:
      return [`${where}: ${issue.message}`];
  }
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let cur = data;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}

/** The keys the schema allows at `path`, found by walking the schema alongside the data. */
function knownKeys(schema: z.core.$ZodType, path: readonly PropertyKey[], data: unknown): string[] {
  let cur: z.core.$ZodType | undefined = schema;
  let value = data;
  for (let i = 0; i <= path.length && cur; ) {
    const def = cur._zod.def as unknown as Record<string, unknown> & { type: string };
    if (def.innerType) cur = def.innerType as z.core.$ZodType;
    else if (def.type === 'pipe') cur = def.in as z.core.$ZodType;
    else if (def.type === 'union') {
      const type = (value as { type?: unknown } | undefined)?.type;
      cur = (def.options as z.core.$ZodType[]).find(
        (o) => ((o._zod.def as unknown as { shape?: Record<string, z.core.$ZodType> }).shape?.type?._zod.def as { values?: unknown[] } | undefined)?.values?.includes(type),
      );
    } else if (i === path.length) break;
    else if (def.type === 'object') {
      cur = (def.shape as Record<string, z.core.$ZodType>)[String(path[i])];
      value = valueAt(value, [path[i]!]);
      i++;
    } else if (def.type === 'record') {
      cur = def.valueType as z.core.$ZodType;
      value = valueAt(value, [path[i]!]);
      i++;
    } else return [];
  }
  const def = cur?._zod.def as { type?: string; shape?: Record<string, unknown> } | undefined;
  return def?.type === 'object' && def.shape ? Object.keys(def.shape) : [];
}
