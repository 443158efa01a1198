/**
 * Transforms: the CPU cost per record of each transform type against the plain path, in one run,
 * on the JSON corpus of enrich-parse (40 pods, `parser: json`, no API). Every transform is set up
 * to pass every record on (the output gets the whole corpus), so what is measured is the work of
 * deciding, not the saving of writing less:
 *   raw               bench/baseline_raw.ts: read + count lines, the floor
 *   plain             container_logs (parser json) -> file
 *   filter-resource   filter on resource["k8s.namespace.name"] (evaluated once per container)
 *   filter-body       filter on a parsed body field (per record)
 *   redact            the eight default built-in patterns over every string of the body
 *   route             two routes (namespace; severity), disjoint, all read by the output
 *   modify            set an attribute from the resource, a body field from the body, delete one
 *   sample            rate 1 per pod (every record through the accumulator)
 *   throttle          a budget per pod no record exceeds
 *   dedupe            no two lines alike: every record held until the next
 *   log_to_metric     a counter with two labels (namespace from the resource, code from the body)
 * Then the same transforms in process (bench/micro/transform_costs.ts) on the decoded corpus: each
 * one's own CPU per record, free of the run-to-run noise of whole agents on a shared machine.
 * Targets: a filter on resource fields < 0.5 µs per record (near free); the others are reported.
 *
 * Env: BENCH_TRANSFORMS_MIB (64), BENCH_ONLY, BENCH_REPEAT (1), BENCH_KEEP=1.
 */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runAgent } from '../agent_process.ts';
import { countLines, freePort, intEnv, medianRun, runChoices, runReportingChild, throughputTable, warmPageCache, type Measurement, type Scenario, type ScenarioOutcome, type Target } from '../measure.ts';
import { ensureCorpus } from './enrich_parse.ts';
import { decodeCorpus, transformCosts } from '../micro/transform_costs.ts';

const RESOURCE_FILTER_TARGET_US = 0.5;

/** Each run's transform (named `t`, read by the output), or none for the plain path. */
const TRANSFORMS: Record<string, Record<string, unknown> | undefined> = {
  plain: undefined,
  'filter-resource': { type: 'filter', drop: 'resource["k8s.namespace.name"] == "kube-system"' },
  'filter-body': { type: 'filter', drop: 'has(body.path) && body.path.startsWith("/healthz")' },
  redact: { type: 'redact' },
  route: { type: 'route', routes: { shop: 'resource["k8s.namespace.name"] == "shop"', errors: 'severity_number >= 17 && resource["k8s.namespace.name"] != "shop"' } },
  modify: {
    type: 'modify',
    set: { attributes: { team: 'resource["k8s.namespace.name"] + "-team"' }, body: { slow: 'body.duration_ms > 20.0' } },
    delete: { body: ['request_id'] },
  },
  sample: { type: 'sample', rate: 1, key: 'resource["k8s.pod.name"]' },
  throttle: { type: 'throttle', key: 'resource["k8s.pod.name"]', rate: '10000000/s' },
  dedupe: { type: 'dedupe' },
  log_to_metric: {
    type: 'log_to_metric',
    metrics: [{ name: 'bench_requests_total', type: 'counter', labels: { namespace: 'resource["k8s.namespace.name"]', code: 'string(int(body.status))' } }],
  },
};
const RUNS = ['raw', ...Object.keys(TRANSFORMS)] as const;

export const transformsBench: Scenario = {
  name: 'transforms',
  description: 'each transform type: CPU per record against the plain path (container_logs, parser json -> file)',

  async run(ctx): Promise<ScenarioOutcome> {
    const env = ctx.env;
    const mib = intEnv(env, 'BENCH_TRANSFORMS_MIB', 64);
    const { only, repeat, keep } = runChoices(env, RUNS);
    const timeoutMs = intEnv(env, 'BENCH_AGENT_TIMEOUT_S', 60 + mib * 2) * 1000;
    const corpus = ensureCorpus(ctx.dataDir, mib);
    ctx.log(`corpus: ${corpus.lines} JSON records in ${corpus.paths.length} pods, ${(corpus.bytes / 1048576).toFixed(1)} MiB`);
    warmPageCache(corpus.paths);
    const scratch = fs.mkdtempSync(join(tmpdir(), 'kta-bench-transforms-'));
    const measurements: Measurement[] = [];
    const errors: string[] = [];
    let runNo = 0;

    const agentRun = async (name: string): Promise<Measurement> => {
      const work = join(scratch, `${name}-${++runNo}`);
      const out = join(work, 'out.ndjson');
      const listen = `127.0.0.1:${await freePort()}`;
      const t = TRANSFORMS[name];
      const inputs = !t ? ['containers'] : t.type === 'route' ? ['t.shop', 't.errors', 't._unmatched'] : ['t'];
      const m = await runAgent({
        name,
        repoRoot: ctx.repoRoot,
        workDir: work,
        listen,
        config: {
          node_name: 'bench-node',
          data_dir: join(work, 'data'),
          log_level: 'warn',
          server: { listen },
          kubernetes: { mode: 'disabled' },
          sources: { containers: { type: 'container_logs', include: [join(corpus.containersDir, '*.log')], parser: 'json' } },
          ...(t ? { transforms: { t: { ...t, inputs: ['containers'] } } } : {}),
          outputs: { out: { type: 'file', inputs, path: out } },
        },
        metric: { name: 'telemetry_agent_output_records_total', labels: { output: 'out', status: 'sent' } },
        target: corpus.lines,
        bytes: corpus.bytes,
        timeoutMs,
      });
      const n = countLines(out);
      if (n !== corpus.lines) throw new Error(`output has ${n} lines, expected ${corpus.lines}`);
      if (!keep) fs.rmSync(work, { recursive: true, force: true });
      m.lines = corpus.lines;
      return m;
    };

    const measure = async (name: string, fn: () => Promise<Measurement>) => {
      if (!only.has(name)) return;
      try {
        measurements.push(await medianRun(name, repeat, ctx.log, fn));
      } catch (err) {
        errors.push(`${name} run failed: ${(err as Error).message}`);
      }
    };
    try {
      await measure('raw', async () => {
        const m = await runReportingChild('raw', join(ctx.repoRoot, 'bench/baseline_raw.ts'), [corpus.containersDir], ctx.repoRoot);
        if (m.lines !== corpus.lines) throw new Error(`counted ${m.lines} lines, expected ${corpus.lines}`);
        return m;
      });
      for (const name of Object.keys(TRANSFORMS)) await measure(name, () => agentRun(name));
    } finally {
      if (!keep) fs.rmSync(scratch, { recursive: true, force: true });
    }

    const by = new Map(measurements.map((m) => [m.name, m]));
    const plain = by.get('plain');
    const notes: string[] = [];
    const perRecordUs = (name: string) => {
      const m = by.get(name);
      return m && plain ? ((m.cpuSeconds - plain.cpuSeconds) / corpus.lines) * 1e6 : undefined;
    };
    for (const name of Object.keys(TRANSFORMS)) {
      const us = perRecordUs(name);
      if (name !== 'plain' && us !== undefined) notes.push(`${name}: ${us.toFixed(2)} µs of CPU per record over the plain path`);
    }
    // The same transforms in process, on decoded records: each one's own cost, without the noise of whole runs.
    const decoded = decodeCorpus(corpus.paths, 200_000);
    const own = transformCosts(decoded, TRANSFORMS);
    for (const [name, us] of own) notes.push(`${name}, in process: ${us.toFixed(3)} µs of CPU per record (${decoded.length} records, best of 3)`);
    const resourceUs = own.get('filter-resource') ?? perRecordUs('filter-resource');
    const targets: Target[] = [
      {
        description: `filter on resource fields < ${RESOURCE_FILTER_TARGET_US} µs CPU per record`,
        pass: resourceUs === undefined ? undefined : resourceUs < RESOURCE_FILTER_TARGET_US,
        detail: resourceUs === undefined ? 'not measured' : `${resourceUs.toFixed(2)} µs per record`,
      },
    ];
    return { measurements, table: throughputTable(measurements, ['raw', 'plain']), notes, targets, errors };
  },
};
