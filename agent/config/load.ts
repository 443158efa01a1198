import { parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { expandEnv, type Substitution } from './env.ts';
import { closest } from './did_you_mean.ts';
import { configSchema, type AgentConfig } from './schema.ts';
import { ConfigError } from './config_error.ts';
import { MAX_CONFIG_BYTES, readConfigText } from './read.ts';

export { ConfigError } from './config_error.ts';
export { MAX_CONFIG_BYTES, readConfigText } from './read.ts';

/** Aliases resolved while building the document: a few are handy, a billion laughs are not. */
export const MAX_ALIAS_COUNT = 100;
/** Problems printed; more say how many more there were. */
const MAX_PROBLEMS = 50;
const MAX_PROBLEM_CHARS = 1000;

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  return parseConfig(readConfigText(file), file, env);
}

/**
 * Text to config, or a ConfigError with one line per problem. Nothing in the text makes it throw
 * anything else, loop, or hold more than a few times MAX_CONFIG_BYTES (test/hardening/config_fuzz.test.ts).
 */
export function parseConfig(text: string, file = '<config>', env: NodeJS.ProcessEnv = process.env): AgentConfig {
  if (text.length > MAX_CONFIG_BYTES) {
    throw new ConfigError(file, [`the config is larger than ${MAX_CONFIG_BYTES / 1024 / 1024} MiB`], 'config file too large');
  }
  const expanded = expandEnv(text, env, 2 * MAX_CONFIG_BYTES);
  if (expanded.problems.length) throw new ConfigError(file, capped(expanded.problems.map((p) => `line ${p.line}: ${p.message}`)));
  const secrets = new SecretValues(expanded.substitutions);

  let doc: Document.Parsed;
  let data: unknown;
  try {
    // logLevel error: what the library would only warn about on stderr (a map used as a key) is
    // left to the schema, which names the key.
    doc = parseDocument(expanded.text, { prettyErrors: true, uniqueKeys: true, logLevel: 'error' });
    if (doc.errors.length) {
      throw new ConfigError(
        file,
        capped(
          doc.errors.map((e) =>
            secrets.hide(`line ${e.linePos?.[0].line ?? '?'}: YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`),
          ),
        ),
      );
    }
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) ?? {};
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(file, capped([yamlFailure(err)]));
  }
  let result: ReturnType<typeof configSchema.safeParse>;
  try {
    result = configSchema.safeParse(data);
  } catch (err) {
    // A check that threw instead of reporting (a bug, which the config fuzz tests hunt): still one
    // line and exit 2, never a stack trace and exit 1.
    throw new ConfigError(file, capped([`(top level): the config could not be checked: ${(err as Error).message} (a bug in the agent: please report it with this line)`]));
  }
  if (!result.success) {
    const shown = (path: readonly PropertyKey[]) => secrets.show(doc, path, valueAt(data, path));
    throw new ConfigError(file, capped(result.error.issues.flatMap((i) => describeIssue(i, data, shown).map((line) => secrets.hideAt(doc, i.path, line)))));
  }
  return result.data;
}

/** The parser's own limits, in words: an alias bomb, or nesting deeper than its stack. */
function yamlFailure(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (/alias/i.test(message)) return `YAML: aliases expand to more than ${MAX_ALIAS_COUNT} nodes (a "billion laughs" document?); write the values out instead`;
  if (err instanceof RangeError) return 'YAML: the document nests too deeply to be read';
  return `YAML: ${message.split('\n')[0]}`;
}

/** At most MAX_PROBLEMS lines of at most MAX_PROBLEM_CHARS each: an error message stays readable whatever the file holds (a megabyte-long key). */
function capped(problems: string[]): string[] {
  const lines = problems.slice(0, MAX_PROBLEMS).map((line) => {
    // A key can be anything YAML allows (a map, a string with line breaks): one problem, one line.
    const p = line.replace(/\r?\n/g, '\\n');
    return p.length > MAX_PROBLEM_CHARS ? `${p.slice(0, MAX_PROBLEM_CHARS)}…` : p;
  });
  if (problems.length > MAX_PROBLEMS) lines.push(`... and ${problems.length - MAX_PROBLEMS} more problems`);
  return lines;
}

/**
 * Values that came from `${VAR}`: an error never shows them (one may be a password put under the
 * wrong key), it names the variable instead.
 */
class SecretValues {
  private readonly subs: Substitution[];

  constructor(subs: Substitution[]) {
    this.subs = subs;
  }

  /** The substitutions inside the node at `path`, by its position in the text. */
  private at(doc: Document.Parsed, path: readonly PropertyKey[]): Substitution[] {
    if (this.subs.length === 0) return [];
    let node: unknown;
    try {
      node = path.length === 0 ? doc.contents : doc.getIn(path as unknown[], true);
    } catch {
      return [];
    }
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (!range) return [];
    return this.subs.filter((s) => s.start < range[2] && s.end > range[0]);
  }

  /** How an error shows the value at `path`: JSON, or which variables it came from. */
  show(doc: Document.Parsed, path: readonly PropertyKey[], value: unknown): string {
    const from = this.at(doc, path);
    if (from.length === 0) return JSON.stringify(value);
    return `the value of ${[...new Set(from.map((s) => `\${${s.name}}`))].join(', ')} (not shown)`;
  }

  /** `line` with every value substituted into the node at `path` replaced by its variable's name. */
  hideAt(doc: Document.Parsed, path: readonly PropertyKey[], line: string): string {
    let out = line;
    for (const s of this.at(doc, path)) out = out.split(JSON.stringify(s.value)).join(`the value of \${${s.name}} (not shown)`).split(s.value).join(`\${${s.name}}`);
    return this.hide(out);
  }

  /** Any value of six characters or more from the environment, wherever it appears in `line`. */
  hide(line: string): string {
    let out = line;
    for (const s of this.subs) if (s.value.length >= 6) out = out.split(s.value).join(`\${${s.name}}`);
    return out;
  }
}

function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out ? `.${String(part)}` : String(part);
  return out || '(top level)';
}

function describeIssue(issue: z.core.$ZodIssue, data: unknown, shown: (path: readonly PropertyKey[]) => string): string[] {
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
        return [`${where}: ${got === undefined ? 'missing' : `unknown type ${shown(issue.path)}`} (expected one of: ${options.join(', ')})`];
      }
      return [`${where}: ${issue.message}`];
    case 'invalid_type':
      if (valueAt(data, issue.path) === undefined) return [`${where}: required key is missing (expected ${issue.expected})`];
      return [`${where}: expected ${issue.expected}, got ${shown(issue.path)}`];
    case 'invalid_key':
      return issue.issues.map((i) => `${where}: ${i.message}`);
    case 'invalid_value':
      return [`${where}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}, got ${shown(issue.path)}`];
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
