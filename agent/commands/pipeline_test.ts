import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml, stringify } from 'yaml';
import { z } from 'zod';
import { Agent } from '../agent.ts';
import { expandEnv } from '../config/env.ts';
import { ConfigError, parseConfig } from '../config/load.ts';
import { FakeKubeApiServer, makePod, makeJob, makeReplicaSet, uid, writeKubeconfig, type FakeObject } from '../demo/kube_api_server.ts';
import { NodeSimulator } from '../demo/node_simulator.ts';
import { createLogger } from '../log.ts';
import { parseSelector, sampleValue } from '../status/prom_text.ts';

/**
 * `telemetry-agent test FILE...`: pipeline unit tests, like `vector test`. A test file names the
 * agent config it tests and lists cases: a pod (labels, annotations, owner), the lines its
 * container writes, and the records and metric values expected. Each case runs the real pipeline
 * of that config in this process: the lines are written the way containerd writes them into a
 * temporary /var/log tree, a fake Kubernetes API serves the pod, the config's own parsers,
 * multiline rules, enrichment and transforms run, and each output is replaced by a file the test
 * reads. Exit 0 when every case passes, 1 when one fails, 2 when a test file or its config is bad.
 *
 *   config: ../deploy/base/agent.yaml
 *   tests:
 *     - name: checkout's JSON lines are parsed and carry the deployment
 *       pod: { namespace: shop, name: checkout-6b8d7-x2x9q, labels: { app: checkout }, owner: { kind: Deployment, name: checkout } }
 *       input: ['{"level":"warn","msg":"slow","ms":812}']
 *       expect:
 *         records: [{ body: { msg: slow, ms: 812 }, severity_number: 13, resource: { k8s.deployment.name: checkout } }]
 *         metrics: { 'telemetry_agent_parse_errors_total{source="containers"}': 0 }
 */

const OWNER_KINDS = ['Deployment', 'ReplicaSet', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob'] as const;

const inputLine = z.union([z.string(), z.strictObject({ line: z.string(), stream: z.enum(['stdout', 'stderr']).default('stdout') })]);

const testCase = z.strictObject({
  name: z.string().min(1),
  /** A container_logs source of the config; default its first one. */
  source: z.string().optional(),
  pod: z.strictObject({
    namespace: z.string().min(1).default('default'),
    name: z.string().min(1),
    labels: z.record(z.string(), z.string()).default({}),
    annotations: z.record(z.string(), z.string()).default({}),
    owner: z.strictObject({ kind: z.enum(OWNER_KINDS), name: z.string().min(1) }).optional(),
  }),
  container: z.string().min(1).default('app'),
  /** Lines the container writes, in order; a string with line breaks is several lines. */
  input: z.array(inputLine).min(1),
  expect: z.strictObject({
    /** Records as this output gets them; default the first output that reads the source. */
    output: z.string().optional(),
    /** Every record, in order, each matched on the fields given (see `mismatch`). Absent: not checked. */
    records: z.array(z.record(z.string(), z.unknown())).optional(),
    /** `name{label="value"}: number`, read from /metrics after the case ran. */
    metrics: z.record(z.string(), z.number()).default({}),
  }),
});
type TestCase = z.infer<typeof testCase>;

const testFile = z.strictObject({
  /** The agent config under test, relative to the test file. */
  config: z.string().min(1),
  tests: z.array(testCase).min(1),
});

export class TestFileError extends Error {}

interface Outcome {
  name: string;
  problems: string[];
  records: number;
}

export async function runPipelineTests(files: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  let failed = 0;
  let total = 0;
  for (const file of files) {
    let outcomes: Outcome[];
    try {
      outcomes = await runFile(file);
    } catch (err) {
      if (err instanceof TestFileError || err instanceof ConfigError) {
        out(`${file}: ${err.message}\n`);
        return 2;
      }
      throw err;
    }
    for (const o of outcomes) {
      total++;
      if (o.problems.length === 0) {
        out(`PASS  ${file}: ${o.name} (${o.records} records)\n`);
      } else {
        failed++;
        out(`FAIL  ${file}: ${o.name}\n${o.problems.map((p) => `      ${p.replaceAll('\n', '\n      ')}`).join('\n')}\n`);
      }
    }
  }
  out(`${total} tests, ${total - failed} passed, ${failed} failed\n`);
  return failed > 0 ? 1 : 0;
}

async function runFile(file: string): Promise<Outcome[]> {
  let data: unknown;
  try {
    data = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new TestFileError(`cannot read the test file: ${(err as Error).message}`);
  }
  const parsed = testFile.safeParse(data);
  if (!parsed.success) {
    throw new TestFileError(`not a test file:\n${parsed.error.issues.map((i) => `  ${i.path.join('.') || '(top level)'}: ${i.message}`).join('\n')}`);
  }
  const configFile = resolve(dirname(file), parsed.data.config);
  let configText: string;
  try {
    configText = readFileSync(configFile, 'utf8');
  } catch (err) {
    throw new TestFileError(`cannot read its config ${configFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const outcomes: Outcome[] = [];
  for (const c of parsed.data.tests) outcomes.push(await runCase(configFile, configText, c));
  return outcomes;
}

/** The config rewritten for one case: its source reads the case's tree, its outputs write files, the API is the fake. */
function caseConfig(configFile: string, text: string, c: TestCase, dir: string, kubeconfig: string): { yaml: string; source: string; outputs: string[] } {
  // Variables the test machine does not have (NODE_NAME, an output's credentials) expand as empty: the
  // node name and the outputs are replaced for the case anyway.
  const env = new Proxy(process.env, { get: (e, k) => (typeof k === 'string' ? (e[k] ?? '') : undefined) });
  const expanded = expandEnv(text, env);
  if (expanded.problems.length) throw new ConfigError(configFile, expanded.problems.map((p) => `line ${p.line}: ${p.message}`));
  const raw = (parseYaml(expanded.text) ?? {}) as Record<string, unknown>;
  const sources = (raw.sources ?? {}) as Record<string, Record<string, unknown>>;
  const containerSources = Object.keys(sources).filter((n) => sources[n]!.type === 'container_logs');
  const source = c.source ?? containerSources[0];
  if (!source || !containerSources.includes(source)) {
    throw new TestFileError(`${c.name}: the config has no container_logs source ${c.source ? JSON.stringify(c.source) : ''} (has: ${containerSources.join(', ') || 'none'})`);
  }
  raw.node_name = 'test-node';
  raw.data_dir = join(dir, 'data');
  raw.log_level = 'warn';
  raw.server = { listen: '127.0.0.1:0' };
  raw.kubernetes = { ...((raw.kubernetes as object | undefined) ?? {}), mode: 'kubeconfig', kubeconfig, context: null };
  raw.sources = {
    [source]: {
      ...sources[source],
      include: [join(dir, 'var/log/containers/*.log')],
      exclude: [],
      allowed_roots: [join(dir, 'var/log/pods')],
      read_from: 'beginning',
      glob_interval: '100ms',
      poll_interval: '100ms',
    },
  };
  // Components fed only by the sources left out go too (transforms first, then what reads them).
  const sections = ['transforms', 'outputs'].filter((s) => raw[s] && typeof raw[s] === 'object');
  const alive = new Set([source]);
  for (let changed = true; changed; ) {
    changed = false;
    for (const s of sections) {
      for (const [name, comp] of Object.entries(raw[s] as Record<string, { inputs?: string[] }>)) {
        if (alive.has(`${s}:${name}`)) continue;
        if ((comp.inputs ?? []).some((i) => alive.has(i.split('.')[0]!))) {
          alive.add(`${s}:${name}`);
          if (s === 'transforms') alive.add(name);
          changed = true;
        }
      }
    }
  }
  for (const s of sections) {
    const section = raw[s] as Record<string, { inputs?: string[] }>;
    for (const name of Object.keys(section)) {
      if (!alive.has(`${s}:${name}`)) delete section[name];
      else section[name]!.inputs = section[name]!.inputs!.filter((i) => alive.has(i.split('.')[0]!));
    }
  }
  const outputs = Object.keys((raw.outputs ?? {}) as object);
  raw.outputs = Object.fromEntries(
    Object.entries((raw.outputs ?? {}) as Record<string, { inputs: string[] }>).map(([name, o]) => [name, { type: 'file', inputs: o.inputs, path: join(dir, 'out', `${name}.ndjson`) }]),
  );
  return { yaml: stringify(raw), source, outputs };
}

/** The pod and its owners as the API server has them. */
function podObjects(c: TestCase): { resource: string; obj: FakeObject }[] {
  const p = c.pod;
  const objects: { resource: string; obj: FakeObject }[] = [];
  let owner: { apiVersion: string; kind: string; name: string; uid: string } | undefined;
  if (p.owner?.kind === 'Deployment') {
    const rs = makeReplicaSet(p.namespace, `${p.owner.name}-7d9c5b8f4`, { name: p.owner.name, uid: uid() }, uid());
    objects.push({ resource: 'replicasets', obj: rs });
    owner = { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata.name, uid: rs.metadata.uid! };
  } else if (p.owner?.kind === 'CronJob') {
    const job = makeJob(p.namespace, `${p.owner.name}-29400000`, { name: p.owner.name, uid: uid() }, uid());
    objects.push({ resource: 'jobs', obj: job });
    owner = { apiVersion: 'batch/v1', kind: 'Job', name: job.metadata.name, uid: job.metadata.uid! };
  } else if (p.owner?.kind === 'ReplicaSet') {
    const rs = makeReplicaSet(p.namespace, p.owner.name, undefined, uid());
    objects.push({ resource: 'replicasets', obj: rs });
    owner = { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: p.owner.name, uid: rs.metadata.uid! };
  } else if (p.owner?.kind === 'Job') {
    const job = makeJob(p.namespace, p.owner.name, undefined, uid());
    objects.push({ resource: 'jobs', obj: job });
    owner = { apiVersion: 'batch/v1', kind: 'Job', name: p.owner.name, uid: job.metadata.uid! };
  } else if (p.owner) {
    owner = { apiVersion: 'apps/v1', kind: p.owner.kind, name: p.owner.name, uid: uid() };
  }
  const pod = makePod({ name: p.name, namespace: p.namespace, nodeName: 'test-node', uid: uid(), labels: p.labels, annotations: p.annotations, owner, containers: [c.container] });
  objects.push({ resource: 'pods', obj: pod });
  return objects;
}

async function runCase(configFile: string, configText: string, c: TestCase): Promise<Outcome> {
  const dir = mkdtempSync(join(tmpdir(), 'telemetry-agent-test-'));
  const api = new FakeKubeApiServer();
  const logs: string[] = [];
  let agent: Agent | undefined;
  try {
    await api.start();
    const kubeconfig = writeKubeconfig(dir, { server: api.url, insecure: true });
    const { yaml, source, outputs } = caseConfig(configFile, configText, c, dir, kubeconfig);
    const outputName = c.expect.output ?? outputs[0];
    if (c.expect.output !== undefined && !outputs.includes(c.expect.output)) {
      throw new TestFileError(`${c.name}: expect.output ${JSON.stringify(c.expect.output)} is not an output of the config (has: ${outputs.join(', ')})`);
    }
    const config = parseConfig(yaml, configFile, {});
    if (!outputName || !config.outputs[outputName]) {
      return { name: c.name, problems: [`no output of the config reads source ${source}`], records: 0 };
    }
    let pod: FakeObject | undefined;
    for (const { resource, obj } of podObjects(c)) {
      const created = api.create(resource, obj);
      if (resource === 'pods') pod = created;
    }
    const sim = new NodeSimulator({ root: dir, clock: 'wall' });
    const handle = sim.createPod({ namespace: c.pod.namespace, name: c.pod.name, uid: pod!.metadata.uid, containers: [c.container] }).containers[0]!;

    agent = new Agent(config, createLogger('warn', (l) => void logs.push(l)));
    await agent.start();
    // Lines are written once the pod is in the agent's cache (its watch of the node's pods runs), so records are enriched, not held.
    await until(() => api.requests.some((r) => r.verb === 'watch' && r.resource === 'pods'), 10_000);
    for (const entry of c.input) {
      const { line, stream } = typeof entry === 'string' ? { line: entry, stream: 'stdout' as const } : entry;
      sim.writeText(handle, line, stream);
    }
    const written = sim.stats().bytes;
    sim.stop();
    const metrics = agent.metrics;
    const read = async () => sampleValue(await metrics.registry.metrics(), 'telemetry_agent_source_bytes_total', { source }) ?? 0;
    if (!(await until(async () => (await read()) >= written, 10_000))) {
      return { name: c.name, problems: [`the source read ${await read()} of the ${written} bytes written in 10 s`, ...logs], records: 0 };
    }
    // Stopping flushes what waits (multiline groups, batches) and delivers it: the outputs' files are complete after it.
    const stopping = agent;
    agent = undefined;
    await stopping.stop();
    const text = await metrics.registry.metrics();
    const records = readNdjson(join(dir, 'out', `${outputName}.ndjson`));
    const problems: string[] = [];
    if (c.expect.records) problems.push(...compareRecords(c.expect.records, records));
    for (const [selector, want] of Object.entries(c.expect.metrics)) {
      const sel = parseSelector(selector);
      if (!sel) {
        problems.push(`metric ${JSON.stringify(selector)}: not a selector like name{label="value"}`);
        continue;
      }
      const got = sampleValue(text, sel.name, sel.labels);
      if (got !== want) problems.push(`metric ${selector}: expected ${want}, got ${got === undefined ? 'no such series' : got}`);
    }
    return { name: c.name, problems, records: records.length };
  } finally {
    await agent?.stop();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function readNdjson(path: string): Record<string, unknown>[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function compareRecords(expected: Record<string, unknown>[], actual: Record<string, unknown>[]): string[] {
  const problems: string[] = [];
  if (expected.length !== actual.length) {
    problems.push(`expected ${expected.length} records, got ${actual.length}${actual.length ? `:\n${actual.map((r) => JSON.stringify(r)).join('\n')}` : ''}`);
    return problems;
  }
  expected.forEach((want, i) => {
    const why = mismatch(want, actual[i], '');
    if (why) problems.push(`record ${i + 1}: ${why}\n  got: ${JSON.stringify(actual[i])}`);
  });
  return problems;
}

/**
 * Why `actual` does not match `expected`, or undefined when it does. Objects match on the keys
 * given (others may be present; `null` means the key must be absent), arrays and scalars exactly.
 */
export function mismatch(expected: unknown, actual: unknown, path: string): string | undefined {
  const at = path || 'record';
  if (expected !== null && typeof expected === 'object' && !Array.isArray(expected)) {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return `${at}: expected an object, got ${JSON.stringify(actual)}`;
    for (const [k, v] of Object.entries(expected)) {
      const child = (actual as Record<string, unknown>)[k];
      const p = path ? `${path}.${k}` : k;
      if (v === null) {
        if (child !== undefined) return `${p}: expected absent, got ${JSON.stringify(child)}`;
        continue;
      }
      if (child === undefined) return `${p}: missing (expected ${JSON.stringify(v)})`;
      const why = mismatch(v, child, p);
      if (why) return why;
    }
    return undefined;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) return `${at}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`;
    for (let i = 0; i < expected.length; i++) {
      const why = mismatch(expected[i], actual[i], `${at}[${i}]`);
      if (why) return why;
    }
    return undefined;
  }
  return expected === actual ? undefined : `${at}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`;
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}
