import { spawn, spawnSync } from 'node:child_process';
import { agentNodeFlags } from '../../agent/runtime_flags.ts';
import { CLI, NODE } from './child_agent.ts';

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `telemetry-agent <args>` as a user runs it (the pinned Node, the shebang's V8 flags), to its exit. */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(NODE, [...agentNodeFlags(), CLI, ...args], {
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 60_000,
    env: { ...process.env, ...opts.env },
    maxBuffer: 16 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** The same, without blocking the test's event loop (for commands that talk to servers the test runs). */
export function runCliAsync(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [...agentNodeFlags(), CLI, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', reject);
    child.once('exit', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

/** Problem lines of an exit-2 answer (the indented lines under the headline). */
export function problemLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('  '))
    .map((l) => l.trim());
}
