import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../agent/version.ts';
import { AgentHarness, criLines } from './helpers/agent_harness.ts';
import { freePort, waitFor } from './helpers/child_agent.ts';
import { requireTool } from './helpers/tools.ts';

/** design.md "Metrics the agent exposes about itself": names are product surface. */
const CONTRACT_METRICS: [string, 'counter' | 'gauge' | 'histogram'][] = [
  ['telemetry_agent_source_records_total', 'counter'],
  ['telemetry_agent_source_bytes_total', 'counter'],
  ['telemetry_agent_output_records_total', 'counter'],
  ['telemetry_agent_output_bytes_total', 'counter'],
  ['telemetry_agent_output_retries_total', 'counter'],
  ['telemetry_agent_output_request_duration_seconds', 'histogram'],
  ['telemetry_agent_buffer_bytes', 'gauge'],
  ['telemetry_agent_buffer_records', 'gauge'],
  ['telemetry_agent_dropped_records_total', 'counter'],
  ['telemetry_agent_parse_errors_total', 'counter'],
  ['telemetry_agent_files_tailed', 'gauge'],
  ['telemetry_agent_tail_lag_bytes', 'gauge'],
  ['telemetry_agent_checkpoint_writes_total', 'counter'],
  ['telemetry_agent_kube_watch_restarts_total', 'counter'],
  ['telemetry_agent_config_reloads_total', 'counter'],
  ['telemetry_agent_leader', 'gauge'],
  ['telemetry_agent_build_info', 'gauge'],
  // prom-client's defaults
  ['process_cpu_user_seconds_total', 'counter'],
];

describe('HTTP server: /metrics, /healthz, /readyz', () => {
  let h: AgentHarness;
  beforeAll(async () => {
    h = new AgentHarness();
    await h.start();
  });
  afterAll(() => h?.stop());

  it('/healthz answers 200', async () => {
    const res = await fetch(`${h.baseUrl}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok\n');
  });

  it('/readyz answers 200 once started', async () => {
    const res = await fetch(`${h.baseUrl}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ready\n');
  });

  it('an unknown path is 404', async () => {
    const res = await fetch(`${h.baseUrl}/nope`);
    expect(res.status).toBe(404);
    expect(await res.text()).toContain('/metrics');
  });

  it('a query string does not change the route', async () => {
    expect((await fetch(`${h.baseUrl}/healthz?verbose=1`)).status).toBe(200);
  });

  it('POST is 405 with Allow: GET, HEAD', async () => {
    for (const path of ['/metrics', '/healthz', '/readyz']) {
      const res = await fetch(`${h.baseUrl}${path}`, { method: 'POST', body: 'x' });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, HEAD');
    }
  });

  it('HEAD is allowed', async () => {
    expect((await fetch(`${h.baseUrl}/healthz`, { method: 'HEAD' })).status).toBe(200);
  });

  it('/metrics declares every metric of design.md with its type', async () => {
    const res = await fetch(`${h.baseUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    const missing = CONTRACT_METRICS.filter(([name, type]) => types.get(name) !== type).map(
      ([name, type]) => `${name} (want ${type}, got ${types.get(name) ?? 'nothing'})`,
    );
    expect(missing).toEqual([]);
    for (const [name] of CONTRACT_METRICS) expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'));
  });

  it('/metrics carries the version in telemetry_agent_build_info', async () => {
    const text = await (await fetch(`${h.baseUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('telemetry_agent_build_info{'));
    expect(line).toBeDefined();
    expect(line).toContain(`version="${VERSION}"`);
    expect(line).toContain(`node_version="${process.version}"`);
    expect(line!.endsWith(' 1')).toBe(true);
  });

  it('/metrics passes `promtool check metrics`', async (ctx) => {
    const promtool = requireTool(ctx, 'promtool');
    // Some traffic first, so labelled series exist and are checked too.
    const c = h.tree.container();
    writeFileSync(c.logPath, criLines(['one', 'two', 'three']));
    await h.waitForLines(3);
    const text = await (await fetch(`${h.baseUrl}/metrics`)).text();
    expect(text).toMatch(/^telemetry_agent_source_records_total\{source="containers"\} 3$/m);
    const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
    expect(r.error).toBeUndefined();
    expect(r.status, `promtool check metrics exited ${r.status}:\n${r.stdout}${r.stderr}`).toBe(0);
  });
});

describe('HTTP server during and after stop', () => {
  it('/readyz turns 503 or closes once stop() begins, and the port closes after', async () => {
    const h = new AgentHarness();
    try {
      await h.start();
      const base = h.baseUrl;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const stopped = h.agent!.stop();
      const during = await fetch(`${base}/readyz`).then(
        (r) => r.status,
        () => 'closed',
      );
      expect([503, 'closed']).toContain(during);
      await stopped;
      await expect(fetch(`${base}/readyz`)).rejects.toThrow();
      await expect(fetch(`${base}/healthz`)).rejects.toThrow();
    } finally {
      await h.stop();
    }
  });
});

describe('a real Prometheus scrapes the agent', () => {
  it('finds telemetry_agent_build_info with our version and up == 1', async (ctx) => {
    const prometheus = requireTool(ctx, 'prometheus');
    const h = new AgentHarness();
    const dir = mkdtempSync(join(tmpdir(), 'kta-prom-'));
    let proc: ReturnType<typeof spawn> | undefined;
    let log = '';
    try {
      await h.start();
      const port = await freePort();
      const job = 'telemetry-agent-test';
      const configFile = join(dir, 'prometheus.yml');
      writeFileSync(
        configFile,
        `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n` +
          `scrape_configs:\n  - job_name: ${job}\n    scrape_interval: 1s\n    scrape_timeout: 1s\n` +
          `    static_configs:\n      - targets: ["127.0.0.1:${h.agent!.address!.port}"]\n`,
      );
      proc = spawn(
        prometheus,
        [`--config.file=${configFile}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
      proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      const query = async (q: string) => {
        const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`).catch(() => undefined);
        if (!res || res.status !== 200) return [];
        const body = (await res.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
        return body.data.result;
      };

      const info = await waitFor(
        'telemetry_agent_build_info in Prometheus',
        async () => {
          if (proc!.exitCode !== null) throw new Error(`prometheus exited ${proc!.exitCode}:\n${log}`);
          const result = await query('telemetry_agent_build_info');
          return result.length > 0 ? result : undefined;
        },
        30_000,
        250,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nprometheus log:\n${log.slice(-4000)}`, { cause: err });
      });
      expect(info).toHaveLength(1);
      expect(info[0]!.metric).toMatchObject({ __name__: 'telemetry_agent_build_info', job, version: VERSION, node_version: process.version });
      expect(info[0]!.value[1]).toBe('1');

      const up = await query(`up{job="${job}"}`);
      expect(up).toHaveLength(1);
      expect(up[0]!.value[1]).toBe('1');
      // The scrape itself reported no problem (a sample Prometheus could not parse fails the scrape).
      const samples = await query(`scrape_samples_scraped{job="${job}"}`);
      expect(Number(samples[0]?.value[1])).toBeGreaterThan(CONTRACT_METRICS.length);
    } finally {
      if (proc && proc.exitCode === null) {
        const exited = new Promise((r) => proc!.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      await h.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
