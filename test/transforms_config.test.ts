import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, NODE } from './helpers/child_agent.ts';
import { ConfigError, parseConfig } from '../agent/config/load.ts';
import { printConfig } from '../agent/config/print.ts';
import { describeGraph, outputsFedBy, topologicalOrder } from '../agent/transforms/graph.ts';

/** A config with one container source `c`, the given transforms block, and outputs. */
function config(transforms: string, outputs = '  out: { type: stdout, inputs: [t] }\n', sources = '  c: { type: container_logs }\n  j: { type: journald }\n'): string {
  return `sources:\n${sources}transforms:\n${transforms}outputs:\n${outputs}`;
}
const ONLY_C = '  c: { type: container_logs }\n';

function problems(text: string): string[] {
  try {
    parseConfig(text, 'agent.yaml', {});
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error(`config was accepted:\n${text}`);
}

describe('transforms: the graph validate checks', () => {
  it('accepts the graph of design.md and describes it as components and edges', () => {
    const cfg = parseConfig(
      config(
        `  noise: { type: filter, inputs: [c, j], drop: 'severity_number < 9' }
  tenants:
    type: route
    inputs: [noise]
    routes: { payments: 'resource["k8s.namespace.name"].startsWith("payments")' }
  t: { type: filter, inputs: [tenants._unmatched], keep: 'true' }
`,
        '  out: { type: stdout, inputs: [t] }\n  pay: { type: stdout, inputs: [tenants.payments, c] }\n',
      ),
      'agent.yaml',
      {},
    );
    const graph = describeGraph(cfg);
    expect(graph.components).toEqual([
      { name: 'c', kind: 'source', type: 'container_logs' },
      { name: 'j', kind: 'source', type: 'journald' },
      { name: 'noise', kind: 'transform', type: 'filter' },
      { name: 'tenants', kind: 'transform', type: 'route' },
      { name: 't', kind: 'transform', type: 'filter' },
      { name: 'out', kind: 'output', type: 'stdout' },
      { name: 'pay', kind: 'output', type: 'stdout' },
    ]);
    expect(graph.edges).toEqual([
      { from: 'c', to: 'noise' },
      { from: 'c', to: 'pay' },
      { from: 'j', to: 'noise' },
      { from: 'noise', to: 'tenants' },
      { from: 'tenants._unmatched', to: 't' },
      { from: 't', to: 'out' },
      { from: 'tenants.payments', to: 'pay' },
    ]);
    expect(outputsFedBy(cfg, 'j').sort()).toEqual(['out', 'pay']);
    expect(topologicalOrder(cfg)).toEqual(['noise', 'tenants', 't']);
  });

  it('names unknown inputs, a route read without its route, and a source without readers', () => {
    expect(
      problems(
        config(`  t: { type: filter, inputs: [c, nope], drop: 'false' }
  r: { type: route, inputs: [c], routes: { a: 'true' } }
  u: { type: filter, inputs: [r], drop: 'false' }
`,
          '  out: { type: stdout, inputs: [t, u, r.a, r.b] }\n',
        ).replace('  j: { type: journald }\n', '  j: { type: journald }\n  lonely: { type: journald }\n'),
      ),
    ).toEqual([
      'transforms.t.inputs[1]: unknown input "nope" (sources, transforms and routes: c, j, lonely, t, r.a, r._unmatched, u)',
      'transforms.u.inputs[0]: r is a route transform: read one of its routes (r.a, r._unmatched)',
      'outputs.out.inputs[3]: unknown input "r.b" (sources, transforms and routes: c, j, lonely, t, r.a, r._unmatched, u)',
      'sources.j: no output or transform lists this source in its inputs',
      'sources.lonely: no output or transform lists this source in its inputs',
    ]);
  });

  it('finds a cycle, a transform nobody reads and a route nobody reads', () => {
    expect(
      problems(
        config(`  a: { type: filter, inputs: [c, b], drop: 'false' }
  b: { type: filter, inputs: [a], drop: 'false' }
  t: { type: filter, inputs: [j], drop: 'false' }
  idle: { type: filter, inputs: [j], drop: 'false' }
  r: { type: route, inputs: [t], routes: { used: 'true', unused: 'false' } }
`,
          '  out: { type: stdout, inputs: [r.used, b] }\n',
        ),
      ),
    ).toEqual([
      'transforms.a.inputs[1]: cycle: a -> b -> a',
      'transforms.idle: nothing reads this transform: add it to the inputs of an output or transform',
      'transforms.r.routes.unused: nothing reads r.unused: add it to the inputs of an output or transform',
    ]);
  });

  it('a transform may not take the name of a source', () => {
    expect(problems(config(`  c: { type: filter, inputs: [j], drop: 'false' }\n  t: { type: filter, inputs: [c], drop: 'false' }\n`))).toEqual([
      'transforms.c: the name c is taken by a source: inputs could not tell them apart',
    ]);
  });
});

describe('transforms: CEL expressions are checked at load, with their key path', () => {
  const bad = (expr: string) => problems(config(`  t: { type: filter, inputs: [c], drop: ${JSON.stringify(expr)} }\n`, undefined, ONLY_C));

  it('reports syntax errors, unknown names and functions, overloads and non-bool conditions', () => {
    expect(bad('body.x ==')).toEqual(['transforms.t.drop: CEL syntax error: line 1, column 8: found = but expecting end of input']);
    expect(bad('bdy.level == "debug"')).toEqual(["transforms.t.drop: CEL: undeclared reference to 'bdy' (did you mean body?) (column 1)"]);
    expect(bad('body.path.startswith("/healthz")')).toEqual([
      "transforms.t.drop: CEL: unknown function 'startswith' (did you mean startsWith?) (column 10)",
    ]);
    expect(bad('severity_number < "9"')).toEqual(['transforms.t.drop: CEL: found no matching overload for _<_(int, string) (column 16)']);
    expect(bad('severity_text.startsWith(1)')).toEqual(['transforms.t.drop: CEL: found no matching overload for string.startsWith(int) (column 14)']);
    expect(bad('severity_text.level')).toEqual(["transforms.t.drop: CEL: type 'string' has no fields (selecting .level) (column 14)"]);
    expect(bad('severity_number + 1')).toEqual(['transforms.t.drop: CEL: the condition must be a bool, its type is int']);
    expect(bad('severity_number == "x"')).toEqual([
      "transforms.t.drop: CEL: found no matching overload for '_==_' applied to (int, string): values of these types are never equal (column 16)",
    ]);
  });

  it('accepts what CEL allows over the record: macros, string extensions, timestamps, dyn bodies', () => {
    for (const expr of [
      'has(body.path) && body.path.startsWith("/healthz")',
      'resource["k8s.namespace.name"] in ["kube-system", "monitoring"]',
      'attributes["log.iostream"] == "stderr" && severity_text.lowerAscii() == "debug"',
      'body.tags.exists(t, t == "noise")',
      'timestamp.getHours() < 6',
      'body.matches("^GET /healthz")',
      'int(body.status) >= 500',
    ]) {
      expect(() => parseConfig(config(`  t: { type: filter, inputs: [c], drop: ${JSON.stringify(expr)} }\n`, undefined, ONLY_C), 'agent.yaml', {}), expr).not.toThrow();
    }
  });

  it('a filter takes exactly one of drop and keep', () => {
    expect(problems(config('  t: { type: filter, inputs: [c] }\n', undefined, ONLY_C))).toEqual(['transforms.t.drop: a filter takes exactly one of drop or keep']);
    expect(problems(config(`  t: { type: filter, inputs: [c], drop: 'true', keep: 'true' }\n`, undefined, ONLY_C))).toEqual([
      'transforms.t.drop: a filter takes exactly one of drop or keep',
    ]);
  });
});

describe('transforms: `telemetry-agent validate` on a bad expression', () => {
  it('exits 2 with one line per problem, each with its key path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kta-validate-'));
    try {
      const path = join(dir, 'agent.yaml');
      writeFileSync(
        path,
        config(
          `  noise:
    type: filter
    inputs: [c]
    drop: 'body.path.startswith("/healthz")'
  tenants:
    type: route
    inputs: [noise]
    routes: { payments: 'resorce["k8s.namespace.name"] == "payments"' }
`,
          '  out: { type: stdout, inputs: [tenants.payments, tenants._unmatched] }\n',
          ONLY_C,
        ),
      );
      const r = spawnSync(NODE, [CLI, 'validate', '--config', path], { encoding: 'utf8', timeout: 30_000 });
      expect(r.status).toBe(2);
      expect(r.stderr.trimEnd().split('\n')).toEqual([
        `${path}: invalid config`,
        "  transforms.noise.drop: CEL: unknown function 'startswith' (did you mean startsWith?) (column 10)",
        "  transforms.tenants.routes.payments: CEL: undeclared reference to 'resorce' (did you mean resource?) (column 1)",
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('transforms: validate --print', () => {
  it('writes every transform type back as it reads: the printed config validates again to the same config', () => {
    const text = config(
      `  f: { type: filter, inputs: [c], drop: 'severity_number < 9' }
  r: { type: route, inputs: [f], routes: { a: 'resource["k8s.namespace.name"] == "a"' } }
  x: { type: redact, inputs: [r.a], custom: { tok: 'tok_[a-z]{8}' }, attributes: [http.url] }
  m: { type: modify, inputs: [r._unmatched], set: { attributes: { team: '"core"' } }, rename: { body: { msg: message } }, parse: [{ field: body, format: json }] }
  s: { type: sample, inputs: [m], rate: 10%, key: 'resource["k8s.pod.name"]', always_keep: 'severity_number >= 17' }
  t: { type: throttle, inputs: [s, x], rate: 1MiB/s, burst: 4MiB, when_exceeded: pause, key: 'resource["k8s.pod.name"]' }
  d: { type: dedupe, inputs: [t], window: 5s }
  l: { type: log_to_metric, inputs: [d], metrics: [{ name: app_total, type: counter, labels: { code: 'string(int(body.status))' } }, { name: app_seconds, type: histogram, value: 'body.ms / 1000.0', buckets: [0.1, 1] }] }
`,
      '  out: { type: stdout, inputs: [l] }\n',
      ONLY_C,
    );
    const first = parseConfig(text, 'a.yaml', {});
    const printed = printConfig(first);
    expect(printed).toContain('rate: 1MiB/s');
    expect(printed).toContain('drop: severity_number < 9');
    const again = parseConfig(printed, 'printed.yaml', {});
    expect(JSON.stringify(again.transforms)).toBe(JSON.stringify(first.transforms));
  });

  it("shows redact's custom regexes whatever their names, and still masks credentials under the same names elsewhere", () => {
    const text = config(
      `  x: { type: redact, inputs: [c], custom: { password: 'password=\\S+', token: 'tok_[a-z]{8}' } }
`,
      "  out: { type: http, inputs: [x], endpoint: 'http://127.0.0.1:1/in', headers: { Authorization: 'Bearer s3cr3t', token: 'h3ad3r' } }\n",
      ONLY_C,
    );
    const printed = printConfig(parseConfig(text, 'a.yaml', {}));
    expect(printed).toMatch(/password: password=\\S\+/);
    expect(printed).toContain('token: tok_[a-z]{8}');
    expect(printed).not.toContain('s3cr3t');
    expect(printed).not.toContain('h3ad3r');
    expect(printed).toMatch(/Authorization: <redacted>/);
  });
});
