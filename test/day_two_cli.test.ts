import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

import { parseConfig } from '../agent/config/load.ts';
import { renderTop } from '../agent/commands/top.ts';
import { agentNodeFlags, CLI_PATH } from '../agent/runtime_flags.ts';
import type { StatusSnapshot } from '../agent/status/components.ts';
import { AgentHarness, criLine, criTime } from './helpers/agent_harness.ts';
import { NODE, suiteScratch, waitFor } from './helpers/child_agent.ts';
import { requireTool } from './helpers/tools.ts';

/** issue 13, "CLI for day two": `validate --print`, `top` (under tmux), `test` (pipeline unit tests). */

const { root } = suiteScratch('kta-cli-', 'KTA_KEEP_CLI_TESTS');

/** The CLI as a child process; asynchronous, so an agent running in this process keeps answering it. */
function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(NODE, [...agentNodeFlags(), CLI_PATH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('close', (status) => resolve({ status, stdout, stderr })));
}

describe('validate --print', () => {
  it('prints the resolved config: every default, sizes and durations as written units, credentials masked; the output validates again to the same config', async () => {
    const file = join(root, 'print.yaml');
    writeFileSync(
      file,
      [
        'node_name: n1',
        `data_dir: ${root}/data`,
        'sources:',
        '  containers: { type: container_logs, parser: json }',
        'outputs:',
        '  loki:',
        '    type: loki',
        '    inputs: [containers]',
        '    endpoint: http://loki:3100',
        '    auth: { username: agent, password: hunter2 }',
        '    headers: { X-Scope-OrgID: team-a }',
        '    buffer: { type: disk, max_size: 1GB }',
        '  collector:',
        '    type: http',
        '    inputs: [containers]',
        '    endpoint: http://collector:8080/ingest',
        '    headers: { Authorization: Bearer abc }',
        '',
      ].join('\n'),
    );
    const r = await cli(['validate', '--print', '-c', file]);
    expect(r.status, r.stderr).toBe(0);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a YAML document read field by field
    const printed = parseYaml(r.stdout) as Record<string, any>;
    expect(printed.shutdown_timeout).toBe('30s');
    expect(printed.log_format).toBe('text');
    expect(printed.server).toMatchObject({ listen: '0.0.0.0:9464', status_page: false, tap: { enabled: true } });
    const src = printed.sources.containers;
    expect(src).toMatchObject({ include: ['/var/log/containers/*.log'], read_from: 'beginning', max_line_bytes: '1MiB', read_chunk: '64KiB', glob_interval: '1s', parser: 'json' });
    expect(src.kubernetes_metadata.wait_for_pod).toBe('2s');
    const loki = printed.outputs.loki;
    expect(loki.buffer).toMatchObject({ type: 'disk', max_size: '1GB', when_full: 'block', fsync_interval: '500ms' });
    expect(loki.batch).toEqual({ max_bytes: '1MiB', max_events: 5000, timeout: '1s' });
    expect(loki.auth).toEqual({ username: 'agent', password: '<redacted>' });
    expect(loki.headers).toEqual({ 'X-Scope-OrgID': 'team-a' });
    expect(printed.outputs.collector.headers).toEqual({ Authorization: '<redacted>' });
    expect(r.stdout).not.toContain('hunter2');
    expect(r.stdout).not.toContain('Bearer abc');

    // What it prints is a config the agent takes, and means the same (but for the masked secrets).
    const again = join(root, 'printed.yaml');
    writeFileSync(again, r.stdout);
    expect((await cli(['validate', '-c', again])).status).toBe(0);
    const a = parseConfig(r.stdout, 'printed', {});
    const b = parseConfig(r.stdout.replace('<redacted>', 'x'), 'printed', {});
    expect(a.sources).toEqual(parseConfig(readConfig(file), file, {}).sources);
    expect(b.outputs.loki!.buffer).toEqual(parseConfig(readConfig(file), file, {}).outputs.loki!.buffer);
  });
});

function readConfig(file: string): string {
  return spawnSync('cat', [file], { encoding: 'utf8' }).stdout;
}

describe('top', () => {
  let h: AgentHarness;
  let file: string;
  let n = 0;
  const write = (count: number) => {
    let text = '';
    for (let i = 0; i < count; i++, n++) text += criLine(`GET /items/${n} 200`, { time: criTime(n + 1) });
    appendFileSync(file, text);
  };
  beforeAll(async () => {
    h = new AgentHarness();
    file = h.tree.container({ namespace: 'shop', pod: 'web-1' }).logPath;
    await h.start();
  });
  afterAll(() => h?.stop());

  it('renders one row per component with rates from two snapshots', () => {
    const snap = (time: number, records: number): StatusSnapshot => ({
      time,
      node: 'node-1',
      version: '0.1.0',
      ready: false,
      spans: 0,
      components: [
        { name: 'loki', kind: 'output', type: 'loki', inputs: ['containers'], ready: true, records, bytes: records * 100, errors: 3, dropped: 0, listeners: 0, failingSinceSeconds: time / 1000 - 12, lastError: 'connect ECONNREFUSED', buffer: { type: 'disk', bytes: 512 << 20, records: 4200, maxBytes: 1 << 30, oldestAgeSeconds: 12.5 } },
        { name: 'containers', kind: 'source', type: 'container_logs', inputs: [], ready: false, notReadyReason: 'first scan in progress', records: records * 2, bytes: records * 200, errors: 0, dropped: 0, listeners: 1, files: 12, tailLagBytes: 3 << 20 },
      ],
    });
    const screen = renderTop(snap(10_000, 1000), snap(12_000, 3000), { width: 200, intervalMs: 2000 });
    const lines = screen.split('\n');
    expect(lines[0]).toContain('node node-1, version 0.1.0, NOT READY, 2 components');
    expect(lines[2]).toMatch(/^KIND\s+NAME\s+TYPE\s+RECORDS\/S\s+BYTES\/S\s+ERRORS\/S\s+DROPPED\/S\s+BUFFER\s+LAG\s+STATE$/);
    // sources first
    expect(lines[3]).toMatch(/^source\s+containers\s+container_logs\s+2\.0k\s+195 KiB\/s\s+0\s+0\s+3\.0 MiB\s+not ready: first scan in progress$/);
    expect(lines[4]).toMatch(/^output\s+loki\s+loki\s+1\.0k\s+97\.7 KiB\/s\s+0\s+0\s+disk 50% 4200 rec oldest 12\.5s\s+failing 12\.0s: connect ECONNREFUSED$/);
    // The first screen has no rates yet.
    expect(renderTop(undefined, snap(10_000, 1000), { width: 200, intervalMs: 1000 }).split('\n')[3]).toMatch(/container_logs\s+…\s+…/);
  });

  it('--once prints the table of a running agent and exits 0; an unreachable agent exits 1', async () => {
    write(20);
    await h.waitForLines(20);
    const r = await cli(['top', '--once', '--interval', '300ms', '--agent', h.baseUrl]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/source\s+containers\s+container_logs/);
    expect(r.stdout).toMatch(/output\s+out\s+file\s+.*memory/);
    const down = await cli(['top', '--once', '--agent', 'http://127.0.0.1:9']);
    expect(down.status).toBe(1);
    expect(down.stderr).toContain('cannot reach the agent at http://127.0.0.1:9');
  });

  it('runs in a terminal (tmux): live rates while records flow, q quits with exit 0', async (ctx) => {
    const tmux = requireTool(ctx, 'tmux');
    const socket = `kta-top-${process.pid}`;
    const t = (...args: string[]) => spawnSync(tmux, ['-L', socket, ...args], { encoding: 'utf8' });
    // top's exit status goes to a file through the pane's shell: tmux 3.3a sometimes never reaps a
    // pane's process (a zombie with pane_dead 1 and no pane_dead_status), so its own report of the
    // status cannot be waited for.
    const statusFile = join(root, 'top.status');
    const command =
      [NODE, ...agentNodeFlags(), CLI_PATH, 'top', '--interval', '500ms', '--agent', h.baseUrl].map((a) => `'${a}'`).join(' ') +
      `; echo $? > '${statusFile}'`;
    expect(t('-f', '/dev/null', 'new-session', '-d', '-s', 'top', '-x', '180', '-y', '30', command).status).toBe(0);
    try {
      const pane = () => t('capture-pane', '-p', '-t', 'top').stdout;
      await waitFor('the table', () => pane().includes('RECORDS/S'), 20_000);
      // Records flowing: the source's rate is shown above zero.
      const writer = setInterval(() => write(100), 100);
      let screen = '';
      try {
        await waitFor('a rate above zero', () => {
          screen = pane();
          const row = screen.split('\n').find((l) => /^source\s+containers/.test(l));
          const rate = row ? Number(row.split(/\s+/)[3]?.replace('k', 'e3')) : 0;
          return rate > 0;
        }, 20_000);
      } finally {
        clearInterval(writer);
      }
      expect(screen).toMatch(/telemetry-agent top: node test-node, version \S+, ready, 2 components/);
      expect(screen).toMatch(/output\s+out\s+file/);
      t('send-keys', '-t', 'top', 'q');
      const status = await waitFor('top to exit', () => (existsSync(statusFile) ? readFileSync(statusFile, 'utf8').trim() || undefined : undefined), 10_000);
      expect(status).toBe('0');
    } finally {
      t('kill-server');
    }
  });
});

describe('test: pipeline unit tests', () => {
  const dir = join(root, 'pipeline-tests');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'agent.yaml'),
    [
      'sources:',
      '  containers:',
      '    type: container_logs',
      '    multiline: { mode: auto }',
      '    parser: json',
      '  journal: { type: journald }',
      'outputs:',
      '  loki: { type: loki, inputs: [containers], endpoint: "http://loki.invalid:3100" }',
      '  archive: { type: file, inputs: [journal], path: /nonexistent/archive.ndjson }',
      '',
    ].join('\n'),
  );
  const cases = `
config: agent.yaml
tests:
  - name: JSON lines are parsed, levels numbered, and the pod's deployment and labels added
    pod: { namespace: shop, name: checkout-7d9c5b8f4-x2x9q, labels: { app: checkout }, owner: { kind: Deployment, name: checkout } }
    input:
      - '{"level":"warn","msg":"slow request","ms":812}'
      - '{"level":"ERROR","msg":"payment declined"}'
    expect:
      output: loki
      records:
        - body: { msg: slow request, ms: 812 }
          severity_text: warn
          severity_number: 13
          resource: { k8s.namespace.name: shop, k8s.deployment.name: checkout, k8s.pod.label.app: checkout, k8s.statefulset.name: null }
        - { severity_text: ERROR, severity_number: 17 }
      metrics:
        'telemetry_agent_source_records_total{source="containers"}': 2
        'telemetry_agent_parse_errors_total{source="containers",parser="json"}': 0
  - name: a Java stack trace is one record; text lines fail the json parser and are kept raw
    pod: { namespace: shop, name: ledger-0, owner: { kind: StatefulSet, name: ledger } }
    container: java
    input:
      - |-
        Exception in thread "main" java.lang.IllegalStateException: boom
            at com.example.Ledger.post(Ledger.java:42)
            at com.example.Main.main(Main.java:7)
      - 'ready'
    expect:
      records:
        - { body: "Exception in thread \\"main\\" java.lang.IllegalStateException: boom\\n    at com.example.Ledger.post(Ledger.java:42)\\n    at com.example.Main.main(Main.java:7)", resource: { k8s.statefulset.name: ledger, k8s.container.name: java } }
        - { body: ready }
      metrics:
        'telemetry_agent_parse_errors_total{source="containers",parser="json"}': 2
  - name: an annotation excludes the pod
    pod: { namespace: batch, name: noisy-1, annotations: { telemetry-agent.io/exclude: "true" } }
    input: ['{"msg":"spam"}', '{"msg":"spam"}']
    expect:
      records: []
      metrics:
        'telemetry_agent_dropped_records_total{component="containers",reason="excluded"}': 2
`;
  writeFileSync(join(dir, 'passing.yaml'), cases);
  writeFileSync(
    join(dir, 'failing.yaml'),
    `config: agent.yaml
tests:
  - name: expects the wrong level
    pod: { name: web-1 }
    input: ['{"level":"info","msg":"hello"}']
    expect:
      records: [{ severity_number: 17, body: { msg: hello } }]
      metrics: { 'telemetry_agent_source_records_total{source="containers"}': 5 }
`,
  );
  writeFileSync(join(dir, 'broken.yaml'), 'config: agent.yaml\ntests:\n  - name: no input\n    pod: { name: web-1 }\n    expect: {}\n');

  it('runs the config\'s real pipeline per case and exits 0 when every case passes', async () => {
    const r = await cli(['test', join(dir, 'passing.yaml')]);
    expect(r.stdout).toContain('PASS');
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('PASS  ' + join(dir, 'passing.yaml') + ': JSON lines are parsed, levels numbered, and the pod\'s deployment and labels added (2 records)');
    expect(r.stdout).toContain('a Java stack trace is one record; text lines fail the json parser and are kept raw (2 records)');
    expect(r.stdout).toContain('an annotation excludes the pod (0 records)');
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('3 tests, 3 passed, 0 failed');
  });

  it('deploy/pipeline.test.yaml passes against the shipped node agent config', async () => {
    const r = await cli(['test', fileURLToPath(new URL('../deploy/pipeline.test.yaml', import.meta.url))]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('3 tests, 3 passed, 0 failed');
  });

  it('exits 1 with what differs when a case fails, and 2 for a test file it cannot use', async () => {
    const r = await cli(['test', join(dir, 'failing.yaml')]);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('FAIL  ' + join(dir, 'failing.yaml') + ': expects the wrong level');
    expect(r.stdout).toContain('record 1: severity_number: expected 17, got 9');
    expect(r.stdout).toContain('metric telemetry_agent_source_records_total{source="containers"}: expected 5, got 1');
    expect(r.stdout).toContain('1 tests, 0 passed, 1 failed');

    const bad = await cli(['test', join(dir, 'broken.yaml')]);
    expect(bad.status).toBe(2);
    expect(bad.stdout).toContain('tests.0.input');
    expect((await cli(['test', join(dir, 'missing.yaml')])).status).toBe(2);
    expect((await cli(['test'])).status).toBe(2);
  });
});

