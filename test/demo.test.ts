import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { agentNodeFlags, CLI_PATH } from '../agent/runtime_flags.ts';
import { freePort, NODE } from './helpers/child_agent.ts';

/** `npm start`: the simulated node and the agent together, stopped by a signal as Ctrl-C would. */
describe('demo (npm start)', () => {
  it('prints readable records from the simulated node, serves /metrics, and stops cleanly on SIGINT', async () => {
    const port = await freePort();
    const child = spawn(NODE, [...agentNodeFlags(), CLI_PATH, 'demo'], {
      env: { ...process.env, DEMO_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // 'close', not 'exit': only then has all of its stdout been read.
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));

    let metrics = '';
    const until = Date.now() + 20_000;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 250));
      try {
        metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      } catch {
        continue;
      }
      const sent = /telemetry_agent_output_records_total\{output="console",status="sent"\} (\d+)/.exec(metrics);
      // The simulator's pods start logging over its first ticks: wait until several have been heard.
      const containers = new Set(stdout.split('\n').map((l) => l.split(' ')[1]).filter(Boolean));
      if (sent && Number(sent[1]) >= 50 && stdout.split('\n').length > 50 && containers.size > 3) break;
    }
    child.kill('SIGINT');
    expect(await exited, stderr).toBe(0);

    const lines = stdout.split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(50);
    // text encoding: time, namespace/pod/container, stream, body
    const shape = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z [a-z0-9-]+\/[a-z0-9.-]+\/[a-z0-9-]+ (stdout|stderr) /;
    expect(lines.filter((l) => !shape.test(l))).toEqual([]);
    expect(new Set(lines.map((l) => l.split(' ')[1])).size).toBeGreaterThan(3);
    expect(metrics).toContain('telemetry_agent_files_tailed{source="containers"}');
    expect(stderr).toContain('SIGINT: stopping');
  }, 40_000);
});
