/**
 * Enrichment and body parsing: the cost per record of the enrich stage (pod metadata from the
 * Kubernetes API) and of JSON body parsing, against the plain container path, on one corpus of JSON
 * container logs (40 pods of Deployments, 5 labels each). Runs, each its own process:
 *   raw             bench/baseline_raw.ts: read + count lines, the floor
 *   agent-plain     container_logs -> file, kubernetes disabled, parser none
 *   agent-enrich    + pod metadata from a FakeKubeApiServer (test/fakes) in this process
 *   agent-enrich-json  + parser json (object bodies, severity from `level`)
 * Targets: enrichment costs < 1 µs of CPU per record; JSON parsing (JSON.parse, plus serialising an object body instead of a string) < 5 µs per record.
 *
 * Env: BENCH_ENRICH_MIB (128), BENCH_ONLY (e.g. `agent-plain,agent-enrich`), BENCH_REPEAT (1),
 * BENCH_AGENT_TIMEOUT_S (60 + 1 per MiB), BENCH_KEEP=1.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeKubeApiServer, makePod, makeReplicaSet, writeKubeconfig } from '../../agent/demo/kube_api_server.ts';
import { runAgent } from '../agent_process.ts';
import {
  MiB,
  countLines,
  firstAndLastLine,
  freePort,
  intEnv,
  runChoices,
  medianRun,
  runReportingChild,
  throughputTable,
  warmPageCache,
  type Measurement,
  type Scenario,
  type ScenarioOutcome,
  type Target,
} from '../measure.ts';

const RUNS = ['raw', 'agent-plain', 'agent-enrich', 'agent-enrich-json'] as const;
const NODE = 'bench-node';
const PODS = 40;
const ENRICH_TARGET_US = 1;
const JSON_TARGET_US = 5;

export interface EnrichCorpus {
  containersDir: string;
  paths: string[];
  lines: number;
  bytes: number;
  pods: { namespace: string; name: string; uid: string; deployment: string }[];
}

function podUid(i: number): string {
  const h = createHash('sha256').update(`bench-pod-${i}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** JSON bodies as a Go or Node service writes them, ~190 bytes per CRI line. */
export function ensureCorpus(dataDir: string, mib: number): EnrichCorpus {
  const dir = join(dataDir, `enrich-v1-${mib}mib`);
  const manifest = join(dir, 'corpus.json');
  if (fs.existsSync(manifest)) return JSON.parse(fs.readFileSync(manifest, 'utf8')) as EnrichCorpus;
  fs.rmSync(dir, { recursive: true, force: true });
  const containersDir = join(dir, 'containers');
  fs.mkdirSync(containersDir, { recursive: true });
  const pods: EnrichCorpus['pods'] = [];
  const paths: string[] = [];
  const perFile = Math.ceil((mib * MiB) / PODS);
  let lines = 0;
  let bytes = 0;
  const levels = ['info', 'info', 'info', 'debug', 'warn', 'error'];
  for (let p = 0; p < PODS; p++) {
    const namespace = ['shop', 'payments', 'search', 'auth'][p % 4]!;
    const deployment = `svc-${p % 10}`;
    const name = `${deployment}-7d4b9c${p % 10}f8-${p.toString(36).padStart(5, 'x')}`;
    const uid = podUid(p);
    pods.push({ namespace, name, uid, deployment });
    const podDir = join(dir, 'pods', `${namespace}_${name}_${uid}`, 'app');
    fs.mkdirSync(podDir, { recursive: true });
    const path = join(podDir, '0.log');
    const id = createHash('sha256').update(`c-${p}`).digest('hex');
    fs.symlinkSync(path, join(containersDir, `${name}_${namespace}_app-${id}.log`));
    const fd = fs.openSync(path, 'w');
    let written = 0;
    let chunk = '';
    for (let i = 0; written < perFile; i++) {
      const ms = i % 1000;
      const body = `{"level":"${levels[i % levels.length]}","ts":"2026-11-21T10:00:${String(i % 60).padStart(2, '0')}.${String(ms).padStart(3, '0')}Z","msg":"request served","method":"GET","path":"/api/v1/items/${i % 977}","status":200,"duration_ms":${(i % 250) / 10},"request_id":"${(i * 2654435761).toString(16)}"}`;
      const line = `2026-11-21T10:00:00.${String(i % 1e9).padStart(9, '0')}Z stdout F ${body}\n`;
      chunk += line;
      written += line.length;
      lines++;
      if (chunk.length > 1 << 20) {
        fs.writeSync(fd, chunk);
        chunk = '';
      }
    }
    fs.writeSync(fd, chunk);
    fs.closeSync(fd);
    bytes += written;
    paths.push(path);
  }
  const corpus: EnrichCorpus = { containersDir, paths, lines, bytes, pods };
  fs.writeFileSync(manifest, JSON.stringify(corpus));
  return corpus;
}

export const enrichParse: Scenario = {
  name: 'enrich-parse',
  description: 'pod metadata enrichment and JSON body parsing: cost per record against the plain container path',

  async run(ctx): Promise<ScenarioOutcome> {
    const env = ctx.env;
    const mib = intEnv(env, 'BENCH_ENRICH_MIB', 128);
    const { only, repeat, keep } = runChoices(env, RUNS);
    const timeoutMs = intEnv(env, 'BENCH_AGENT_TIMEOUT_S', 60 + mib) * 1000;
    const corpus = ensureCorpus(ctx.dataDir, mib);
    ctx.log(`corpus: ${corpus.lines} JSON records in ${PODS} pods, ${(corpus.bytes / MiB).toFixed(1)} MiB`);
    warmPageCache(corpus.paths);

    const fake = new FakeKubeApiServer({ token: 'bench' });
    await fake.start();
    for (let d = 0; d < 10; d++) {
      for (const ns of ['shop', 'payments', 'search', 'auth']) {
        fake.create('replicasets', makeReplicaSet(ns, `svc-${d}-7d4b9c${d}f8`, { name: `svc-${d}`, uid: podUid(1000 + d) }));
      }
    }
    for (const p of corpus.pods) {
      const rs = fake.get('replicasets', p.namespace, `${p.deployment}-7d4b9c${p.deployment.slice(4)}f8`)!;
      fake.create(
        'pods',
        makePod({
          uid: p.uid,
          name: p.name,
          namespace: p.namespace,
          nodeName: NODE,
          labels: { app: p.deployment, 'app.kubernetes.io/name': p.deployment, 'app.kubernetes.io/part-of': 'shop', 'pod-template-hash': '7d4b9c', team: p.namespace },
          owner: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata.name!, uid: rs.metadata.uid! },
        }),
      );
    }

    const scratch = fs.mkdtempSync(join(tmpdir(), 'kta-bench-enrich-'));
    const kubeconfig = writeKubeconfig(scratch, { server: fake.url, token: 'bench', insecure: true });
    const measurements: Measurement[] = [];
    const errors: string[] = [];
    const notes: string[] = [];
    let runNo = 0;

    const agentRun = async (name: string, kube: boolean, parser: string): Promise<Measurement> => {
      const work = join(scratch, `${name}-${++runNo}`);
      const out = join(work, 'out.ndjson');
      const listen = `127.0.0.1:${await freePort()}`;
      const m = await runAgent({
        name,
        repoRoot: ctx.repoRoot,
        workDir: work,
        listen,
        config: {
          node_name: NODE,
          data_dir: join(work, 'data'),
          log_level: 'warn',
          server: { listen },
          kubernetes: kube ? { mode: 'kubeconfig', kubeconfig } : { mode: 'disabled' },
          sources: { containers: { type: 'container_logs', include: [join(corpus.containersDir, '*.log')], parser } },
          outputs: { out: { type: 'file', inputs: ['containers'], path: out } },
        },
        metric: { name: 'telemetry_agent_output_records_total', labels: { output: 'out', status: 'sent' } },
        target: corpus.lines,
        bytes: corpus.bytes,
        timeoutMs,
      });
      const n = countLines(out);
      if (n !== corpus.lines) throw new Error(`output has ${n} lines, expected ${corpus.lines}`);
      // The last record: the first ones may have been sent before the first LIST answered, by design
      // (the backlog read at start-up overflows wait_max_bytes); they are counted, not wrong.
      const { last } = firstAndLastLine(out);
      for (const line of [last]) {
        const r = JSON.parse(line) as { body: unknown; resource: Record<string, unknown> };
        if (kube && r.resource['k8s.deployment.name'] === undefined) throw new Error(`record without pod metadata: ${line.slice(0, 300)}`);
        if (parser === 'json' && typeof r.body !== 'object') throw new Error(`body not parsed: ${line.slice(0, 300)}`);
      }
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
      await measure('agent-plain', () => agentRun('agent-plain', false, 'none'));
      await measure('agent-enrich', () => agentRun('agent-enrich', true, 'none'));
      await measure('agent-enrich-json', () => agentRun('agent-enrich-json', true, 'json'));
    } finally {
      await fake.close();
      if (!keep) fs.rmSync(scratch, { recursive: true, force: true });
    }

    const by = new Map(measurements.map((m) => [m.name, m]));
    const perRecordUs = (a: string, b: string): number | undefined => {
      const x = by.get(a);
      const y = by.get(b);
      return x && y ? ((x.cpuSeconds - y.cpuSeconds) / corpus.lines) * 1e6 : undefined;
    };
    const enrichUs = perRecordUs('agent-enrich', 'agent-plain');
    const jsonUs = perRecordUs('agent-enrich-json', 'agent-enrich');
    const targets: Target[] = [
      {
        description: `enrichment < ${ENRICH_TARGET_US} µs CPU per record`,
        pass: enrichUs === undefined ? undefined : enrichUs < ENRICH_TARGET_US,
        detail: enrichUs === undefined ? 'not measured' : `${enrichUs.toFixed(2)} µs per record (agent-enrich - agent-plain CPU) / records`,
      },
      {
        description: `JSON body parsing < ${JSON_TARGET_US} µs CPU per record`,
        pass: jsonUs === undefined ? undefined : jsonUs < JSON_TARGET_US,
        detail: jsonUs === undefined ? 'not measured' : `${jsonUs.toFixed(2)} µs per record (agent-enrich-json - agent-enrich CPU) / records`,
      },
    ];
    notes.push(`API requests during the enrich runs: ${fake.requests.length} (pods list/watch per run, one ReplicaSet GET per Deployment revision)`);
    return { measurements, table: throughputTable(measurements, ['raw', 'agent-plain']), notes, targets, errors };
  },
};
