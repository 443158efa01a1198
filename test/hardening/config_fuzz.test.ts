import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ConfigError, MAX_CONFIG_BYTES, parseConfig } from '../../agent/config/load.ts';
import { FuzzRuns } from '../helpers/fuzz_runs.ts';

/**
 * Issue 11 item 10, the config loader: property-based tests (fast-check) of `parseConfig`, which
 * reads what an operator (or whoever can write the ConfigMap) wrote, with `${VAR}` from the
 * environment. For any input it returns a config or throws a ConfigError (one line per problem,
 * capped: 51 lines of at most 1001 characters), never anything else; it ends (each property runs
 * under the test's time limit; alias expansion and `${VAR}` expansion are bounded); what it returns
 * is bounded by what it was given (aliases expand at most 100 nodes); and no value taken from the
 * environment appears in an error. FUZZ_RUNS scales every property's run count (default 1);
 * FUZZ_SEED replays a failure.
 */
const fuzz = new FuzzRuns('config fuzz: {n} generated configs');
const check = fuzz.check.bind(fuzz);

const MAX_MESSAGE = 51 * 1002 + 4096;

/** The loader's contract for one input: a config, or a ConfigError whose message is bounded. */
function load(text: string, env: NodeJS.ProcessEnv = {}): { config?: unknown; error?: ConfigError } {
  try {
    return { config: parseConfig(text, 'fuzz.yaml', env) };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`threw ${(err as Error)?.name}: ${(err as Error)?.message} for ${JSON.stringify(text.slice(0, 300))}`, { cause: err });
    expect(err.problems.length).toBeGreaterThan(0);
    expect(err.problems.length).toBeLessThanOrEqual(51);
    expect(err.message.length).toBeLessThan(MAX_MESSAGE);
    for (const p of err.problems) expect(p).not.toContain('\n');
    // The loader's last resort for a check that threw: a bug to fix, not a contract kept.
    expect(err.message).not.toContain('a bug in the agent');
    return { error: err };
  }
}

// ---- generators -----------------------------------------------------------------------------

const SIZES = ['1MiB', '64kb', '1G', '0', '-1', '1e308', '99999999999999999999GiB', 'lots', '', '1.5KiB', 'NaN'];
const DURATIONS = ['1s', '250ms', '0', '-1s', '1e9h', 'soon', '', '1.5m', '99999999999h'];
const scalar = fc.oneof(
  fc.constantFrom(...SIZES, ...DURATIONS, 'true', 'null', '~', 'yes', '0x1F', '.inf', '-.nan', '0o17', '2026-11-21'),
  fc.string({ maxLength: 40 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
);
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small' }, scalar, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.string({ maxLength: 12 }), tie('v'), { maxKeys: 4 })),
})).v;

/** Keys the schema knows, so generated configs get past "unknown key" into the deeper checks. */
const TOP_KEYS = ['node_name', 'data_dir', 'log_level', 'log_format', 'shutdown_timeout', 'server', 'kubernetes', 'sources', 'transforms', 'outputs'];
const SOURCE_TYPES = ['container_logs', 'journald', 'kubernetes_events', 'nope'];
const OUTPUT_TYPES = ['stdout', 'file', 'http', 'loki', 'otlp', 'elasticsearch', 'splunk_hec', 'syslog', 'kafka'];
const TRANSFORM_TYPES = ['filter', 'route', 'redact', 'throttle', 'sample', 'dedupe', 'modify', 'log_to_metric'];
const OUTPUT_KEYS = ['endpoint', 'path', 'encoding', 'buffer', 'batch', 'retry', 'auth', 'tls', 'headers', 'timeout', 'labels', 'token', 'index', 'mode', 'facility', 'concurrency'];
const SOURCE_KEYS = ['include', 'exclude', 'read_from', 'format', 'multiline', 'max_line_bytes', 'kubernetes_metadata', 'parser', 'directory', 'units', 'priority', 'rules', 'signals'];
const names = fc.constantFrom('a', 'b', 'containers', 'out', 'x-1', 'Bad Name', '');

const component = (types: string[], keys: string[]) =>
  fc.record({ type: fc.constantFrom(...types), inputs: fc.array(names, { maxLength: 3 }), extra: fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 4 }) }).map(({ type, inputs, extra }) => ({ type, inputs, ...extra }));

const configShaped = fc
  .record({
    top: fc.dictionary(fc.constantFrom(...TOP_KEYS), value, { maxKeys: 4 }),
    sources: fc.dictionary(names, component(SOURCE_TYPES, SOURCE_KEYS), { maxKeys: 3 }),
    transforms: fc.dictionary(names, component(TRANSFORM_TYPES, ['drop', 'routes', 'rate', 'key', 'patterns', 'metrics', 'set']), { maxKeys: 2 }),
    outputs: fc.dictionary(names, component(OUTPUT_TYPES, OUTPUT_KEYS), { maxKeys: 3 }),
  })
  .map(({ top, sources, transforms, outputs }) => ({ ...top, sources, transforms, outputs }));

/** Bytes a YAML parser finds awkward: flow/block mixes, tags, anchors, directives, stray quotes. */
const yamlNoise = fc.constantFrom('{', '}', '[', ']', ':', '- ', '&a ', '*a', '!!binary ', '!foo ', '%YAML 1.2\n---\n', '"', "'", '|', '>', '\t', '\n', '  ', '#', '? ', '---\n', '...\n', '<<: *a\n', '\\', '${', '$${', '${X', '}');
const mutated = fc.tuple(configShaped.map((c) => stringify(c)), fc.array(fc.tuple(fc.nat(), yamlNoise), { maxLength: 8 })).map(([text, edits]) => {
  let t = text;
  for (const [at, piece] of edits) {
    const i = at % (t.length + 1);
    t = t.slice(0, i) + piece + t.slice(i);
  }
  return t;
});

describe('config loader fuzz: parseConfig keeps its contract for any input', { timeout: 600_000 }, () => {
  it('arbitrary text, unicode and binary: a config or a bounded ConfigError', () => {
    check(400, fc.oneof(fc.string({ maxLength: 400 }), fc.string({ unit: 'grapheme', maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 300 })), (t) => void load(t));
  });

  it('config-shaped YAML with wrong types, unknown keys, bad names and edge values', () => {
    check(600, configShaped.map((c) => stringify(c)), (t) => void load(t));
  });

  it('config-shaped YAML with YAML syntax spliced in (anchors, tags, flow, directives, ${)', () => {
    check(600, mutated, (t) => void load(t));
  });

  it('anchors and aliases nest as they like: the result stays within 100 expansions of the input', () => {
    const aliasDoc = fc.tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 12 })).map(([levels, fan]) => {
      let doc = 'a0: &a0 [x, y, z]\n';
      for (let i = 1; i <= levels; i++) doc += `a${i}: &a${i} [${Array(fan).fill(`*a${i - 1}`).join(', ')}]\n`;
      return `${doc}sources: *a${levels}\n`;
    });
    check(200, aliasDoc, (t) => {
      const { config, error } = load(t);
      if (error) return;
      expect(JSON.stringify(config).length).toBeLessThan(101 * t.length + 64 * 1024);
    });
  });

  it('deep nesting, long keys and many problems do not exhaust the stack or the message', () => {
    check(
      60,
      fc.oneof(
        fc.integer({ min: 1, max: 20_000 }).map((n) => `sources: ${'['.repeat(n)}${']'.repeat(n)}\n`),
        fc.integer({ min: 1, max: 20_000 }).map((n) => `${'a: {'.repeat(n)}${'}'.repeat(n)}\n`),
        fc.integer({ min: 1, max: 200_000 }).map((n) => `${'k'.repeat(n)}: 1\n`),
        fc.integer({ min: 1, max: 3000 }).map((n) => Array.from({ length: n }, (_, i) => `unknown_${i}: ${i}`).join('\n')),
      ),
      (t) => void load(t),
    );
  });

  it('${VAR} expansion: bounded by the size limit, and no value from the environment in any error', () => {
    const secret = fc.string({ minLength: 6, maxLength: 60 }).filter((s) => !/[\n\r\0]/.test(s) && s.trim().length >= 6);
    const doc = fc.tuple(configShaped, fc.array(fc.constantFrom(...TOP_KEYS, 'sources.containers.max_line_bytes', 'outputs.out.endpoint', 'outputs.out.headers.Authorization'), { minLength: 1, maxLength: 4 }));
    check(
      500,
      fc.tuple(doc, secret, fc.integer({ min: 0, max: 3 })),
      ([[cfg, places], value, repeat]) => {
        let text = stringify(cfg);
        for (const p of places) text += `\n${p.split('.')[0]}: \${SECRET}${repeat ? ` \${SECRET}`.repeat(repeat) : ''}\n`;
        const { error } = load(text, { SECRET: value });
        if (error) expect(error.message).not.toContain(value);
      },
    );
    // A variable whose value would blow the expanded text past the limit is one problem line.
    const big = 'x'.repeat(64 * 1024);
    const text = `node_name: ${'${BIG}'.repeat(40)}\n`;
    const { error } = load(text, { BIG: big });
    expect(error?.problems).toEqual([`line 1: with \${BIG} and the references before it expanded, the config is larger than ${2 * MAX_CONFIG_BYTES} bytes`]);
  });
});
