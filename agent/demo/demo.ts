import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../agent.ts';
import { parseConfig } from '../config/load.ts';
import { runUntilSignal } from '../lifecycle.ts';
import { createLogger } from '../log.ts';
import { NodeSimulator } from './node_simulator.ts';

export const DEMO_HELP = 'npm start: the demo\n';

/**
 * `npm start`: a simulated node writes a realistic log tree (several pods, JSON and text, partial
 * lines, stack traces, rotation, a restarting container) into a temporary folder while a real agent
 * tails it, prints records as text and serves /metrics. Ctrl-C stops both.
 */
export async function runDemo(opts: { seconds?: number; port?: number } = {}): Promise<number> {
  const root = mkdtempSync(join(tmpdir(), 'telemetry-agent-demo-'));
  const port = opts.port ?? Number(process.env.DEMO_PORT ?? 9464);
  const config = parseConfig(
    `
node_name: demo-node
data_dir: ${join(root, 'data')}
shutdown_timeout: 5s
server:
  listen: 127.0.0.1:${port}
kubernetes:
  mode: disabled
sources:
  containers:
    type: container_logs
    include: [${join(root, 'var/log/containers')}/*.log]
    glob_interval: 500ms
    partial_timeout: 2s
    rotate_wait: 2s
outputs:
  console:
    type: stdout
    inputs: [containers]
    encoding: text
`,
    'demo config',
  );
  const log = createLogger('info');
  const simulator = new NodeSimulator({ root, clock: 'wall', seed: Date.now() % 100_000 });
  simulator.startDemo();
  log.info(`demo: simulated node under ${root}; metrics at http://127.0.0.1:${port}/metrics; Ctrl-C to stop`);
  const agent = new Agent(config, log);
  if (opts.seconds !== undefined) setTimeout(() => process.kill(process.pid, 'SIGTERM'), opts.seconds * 1000).unref();
  try {
    return await runUntilSignal(agent, { beforeStop: async () => simulator.stop() });
  } finally {
    simulator.stop();
    rmSync(root, { recursive: true, force: true });
  }
}
