import fc from 'fast-check';
import { isCelList, isCelMap } from '@bufbuild/cel';
import { describe, expect, it } from 'vitest';
import type { LogRecord } from '../agent/record.ts';
import { CelFailure, CelProgram, compileCel } from '../agent/transforms/cel.ts';

/**
 * The compiled hot path (agent/transforms/cel_fast.ts) against @bufbuild/cel, the reference: on
 * generated expressions over generated records, both give the same value, or both fail.
 */
function norm(v: unknown): unknown {
  if (v instanceof CelFailure) return 'ERROR';
  if (typeof v === 'bigint') return `int:${v}`;
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : Object.is(v, -0) ? 'double:-0' : `double:${v}`;
  if (isCelList(v)) return [...v].map(norm);
  if (Array.isArray(v)) return v.map(norm);
  if (isCelMap(v)) return Object.fromEntries([...v].map(([k, x]) => [String(k), norm(x)]));
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
}

const leaf = fc.constantFrom(
  'body',
  'body.s',
  'body.n',
  'body.f',
  'body.b',
  'body.nul',
  'body.arr',
  'body.o',
  'body.o.a',
  'body.missing',
  'severity_number',
  'severity_text',
  'resource["k8s.namespace.name"]',
  'attributes["log.iostream"]',
  'attributes["n"]',
  '0',
  '1',
  '-7',
  '200',
  '9223372036854775807',
  '1.5',
  '0.0',
  '-2.25',
  '1e300',
  '"abc"',
  '""',
  '"é😀"',
  '"200"',
  'true',
  'false',
  'null',
  '[1, "a", 2.0]',
  '["shop", "pay"]',
);

/** A field against a constant: the shape of most conditions, generated often so that each pairing is met. */
const fieldLeaf = fc.constantFrom('body.n', 'body.f', 'body.s', 'body.b', 'body.o.a', 'severity_number', 'severity_text', 'attributes["n"]', 'resource["k8s.namespace.name"]');
const constLeaf = fc.constantFrom('0', '1', '-7', '200', '3', '1.5', '200.0', '-2.25', '"abc"', '"shop"', '""', 'true', 'null', '["shop", 200]');
const condition = fc
  .tuple(fieldLeaf, fc.constantFrom('==', '!=', '<', '<=', '>', '>=', '+', '-', '*', '/', '%', 'in'), constLeaf)
  .map(([a, op, b]) => (op === 'in' ? `${a} in ${b.startsWith('[') ? b : `[${b}]`}` : `${a} ${op} ${b}`));

const expr = fc.letrec<{ e: string }>((tie) => ({
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    condition,
    condition,
    fc.tuple(fc.constantFrom('!', '-', 'size', 'int', 'double', 'string', 'lower', 'has'), tie('e'), fc.constantFrom('s', 'o', 'nul', 'zz')).map(([op, a, f]) =>
      op === 'lower' ? `(${a}).lowerAscii()` : op === 'has' ? `has(body.${f})` : op === '!' || op === '-' ? `${op}(${a})` : `${op}(${a})`,
    ),
    fc
      .tuple(tie('e'), fc.constantFrom('==', '!=', '<', '<=', '>', '>=', '+', '-', '*', '/', '%', '&&', '||', 'in', 'startsWith', 'endsWith', 'contains', '[]'), tie('e'))
      .map(([a, op, b]) =>
        op === 'startsWith' || op === 'endsWith' || op === 'contains' ? `(${a}).${op}(${b})` : op === '[]' ? `(${a})[${b}]` : `(${a}) ${op} (${b})`,
      ),
    fc.tuple(tie('e'), tie('e'), tie('e')).map(([c, a, b]) => `(${c}) ? (${a}) : (${b})`),
  ),
})).e;

const record: fc.Arbitrary<LogRecord> = fc
  .record({
    text: fc.option(fc.string({ maxLength: 6 }), { nil: undefined }),
    s: fc.oneof(fc.constantFrom('abc', 'ABC', '', '/healthz', '200', 'é😀'), fc.string({ maxLength: 4 })),
    // Biased to the constants of the expressions, so equalities and comparisons go both ways.
    n: fc.oneof(fc.constantFrom(0, 1, -7, 200, 3), fc.integer({ min: -300, max: 300 })),
    f: fc.oneof(fc.double({ noNaN: false }), fc.constantFrom(0.5, 1.5, -0, 200, -2.25, 1e20, 2 ** 63)),
    b: fc.boolean(),
    arr: fc.array(fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom('a', 'shop')), { maxLength: 3 }),
    oa: fc.oneof(fc.integer({ min: -2, max: 2 }), fc.constant(null)),
    sev: fc.integer({ min: 0, max: 24 }),
    sevText: fc.constantFrom(undefined, 'INFO', 'error', ''),
    ns: fc.constantFrom('shop', 'pay', ''),
  })
  .map((g) => ({
    timestamp: '2026-11-21T10:00:00.000000000Z',
    observedTimestamp: '',
    body: g.text !== undefined ? g.text : { s: g.s, n: g.n, f: g.f, b: g.b, nul: null, arr: g.arr, o: { a: g.oa } },
    severityNumber: g.sev === 0 ? undefined : g.sev,
    severityText: g.sevText,
    attributes: Object.freeze({ 'log.iostream': 'stdout', n: 3 }),
    resource: Object.freeze({ 'k8s.namespace.name': g.ns }),
  }));

describe('CEL: the compiled hot path agrees with @bufbuild/cel', () => {
  it('on 8,000 generated expressions and records', () => {
    let compared = 0;
    let compiled = 0;
    fc.assert(
      fc.property(expr, fc.array(record, { minLength: 1, maxLength: 4 }), (source, records) => {
        const p = compileCel(source, 'any');
        if (!(p instanceof CelProgram)) return; // the checker refused it: validate would report it
        if (p.compiled) compiled++;
        for (const r of records) {
          expect(norm(p.evaluate(r)), `${source} on ${JSON.stringify(r.body)}`).toEqual(norm(p.reference(r)));
          compared++;
        }
      }),
      { numRuns: 8000 },
    );
    expect(compiled).toBeGreaterThan(2000);
    expect(compared).toBeGreaterThan(5000);
  });

  it('on every field × operator × constant, over records holding each constant', () => {
    const fields = ['body.n', 'body.f', 'body.s', 'body.b', 'body.o.a', 'body.nul', 'severity_number', 'severity_text', 'attributes["n"]', 'resource["k8s.namespace.name"]'];
    const ops = ['==', '!=', '<', '<=', '>', '>=', '+', '-', '*', '/', '%', 'in'];
    const constants = ['0', '1', '-7', '200', '3', '1.5', '200.0', '-2.25', '"abc"', '"shop"', '""', 'true', 'false', 'null', '["shop", 200]', '9223372036854775807'];
    const values: unknown[] = [0, 1, -7, 200, 3, 1.5, -2.25, 'abc', 'shop', '', true, false, null, 2 ** 63, Number.NaN, -0];
    const records: LogRecord[] = values.map((v, i) => ({
      timestamp: '2026-11-21T10:00:00.000000000Z',
      observedTimestamp: '',
      body: { n: typeof v === 'number' && Number.isInteger(v) ? v : 1, f: v, s: typeof v === 'string' ? v : 'abc', b: v === true, o: { a: v }, nul: null },
      severityNumber: [0, 1, 3, 17][i % 4] || undefined,
      severityText: typeof v === 'string' ? v : undefined,
      attributes: Object.freeze({ n: typeof v === 'number' ? v : 3 }),
      resource: Object.freeze({ 'k8s.namespace.name': typeof v === 'string' ? v : 'pay' }),
    }));
    let compared = 0;
    for (const f of fields) {
      for (const op of ops) {
        for (const c of constants) {
          for (const source of [`${f} ${op} ${op === 'in' && !c.startsWith('[') ? `[${c}]` : c}`, `${op === 'in' ? `${c} in [${f}]` : `${c} ${op} ${f}`}`]) {
            const p = compileCel(source, 'any');
            if (!(p instanceof CelProgram)) continue;
            expect(p.compiled, source).toBe(true);
            for (const r of records) {
              expect(norm(p.evaluate(r)), `${source} on ${JSON.stringify(r.body)}`).toEqual(norm(p.reference(r)));
              compared++;
            }
          }
        }
      }
    }
    expect(compared).toBeGreaterThan(30_000);
  });

  it('compiles the expressions of the README and the benchmark', () => {
    for (const source of [
      'severity_number < 9 || (has(body.path) && body.path.startsWith("/healthz"))',
      'resource["k8s.namespace.name"].startsWith("payments")',
      'string(int(body.status))',
      'int(body.status) >= 500 ? "ERROR" : severity_text',
      'body.duration_ms / 1000.0',
      'resource["k8s.namespace.name"] in ["kube-system", "monitoring"]',
    ]) {
      const p = compileCel(source, 'any') as CelProgram;
      expect(p.compiled, source).toBe(true);
    }
    // Macros and timestamps stay with @bufbuild/cel.
    expect((compileCel('body.tags.exists(t, t == "x")', 'bool') as CelProgram).compiled).toBe(false);
    expect((compileCel('timestamp.getHours() < 6', 'bool') as CelProgram).compiled).toBe(false);
  });
});
