import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

import { agentNodeFlags, CLI_PATH } from '../../agent/runtime_flags.ts';

export const CLI = CLI_PATH;

/**
 * The Node 24 that runs the agent's .ts files: the pinned devDependency. `node_modules/.bin/vitest`
 * starts through `#!/usr/bin/env node`, which may find an older system node, so process.execPath
 * is only the fallback.
 */
const PINNED_NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
export const NODE = existsSync(PINNED_NODE) ? PINNED_NODE : process.execPath;

/** A free TCP port on loopback (bound, read, released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** The agent as a separate process, as a node runs it: killed for real, restarted from its checkpoints. */
export class ChildAgent {
  proc: ChildProcess | undefined;
  stderr = '';
  private readonly configPath: string;
  private readonly user: { uid?: number; gid?: number };

  /** `user` runs the child as another user (uid/gid), e.g. nobody when the tests run as root. */
  constructor(configPath: string, user: { uid?: number; gid?: number } = {}) {
    this.configPath = configPath;
    this.user = user;
  }

  start(): void {
    this.proc = spawn(NODE, [...agentNodeFlags(), CLI, 'run', '--config', this.configPath], { stdio: ['ignore', 'ignore', 'pipe'], ...this.user });
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      if (this.stderr.length > 200_000) this.stderr = this.stderr.slice(-100_000);
    });
  }

  /** Resolves once /readyz answers 200. */
  async ready(port: number, timeoutMs = 15_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if (this.proc?.exitCode !== null) throw new Error(`agent exited early:\n${this.stderr.slice(-3000)}`);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/readyz`);
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`agent not ready after ${timeoutMs} ms:\n${this.stderr.slice(-3000)}`);
  }

  /** Resolves with the exit code (or the signal's name). */
  exited(): Promise<number | string> {
    const p = this.proc!;
    if (p.exitCode !== null) return Promise.resolve(p.exitCode);
    if (p.signalCode !== null) return Promise.resolve(p.signalCode);
    return new Promise((resolve) => p.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  }

  async kill(signal: NodeJS.Signals): Promise<number | string> {
    this.proc!.kill(signal);
    return this.exited();
  }
}

export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs: number,
  everyMs = 100,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * A temporary folder for one suite, removed after it (kept for a look when the environment variable
 * `keepVar` is set), and a place to register clean-ups, so a failed assertion never leaves an agent
 * running. Call inside `describe`.
 */
export function suiteScratch(prefix: string, keepVar: string): { root: string; onCleanup(f: () => void): void } {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const cleanup: (() => void)[] = [];
  afterAll(() => {
    for (const f of cleanup) f();
    if (!process.env[keepVar]) rmSync(root, { recursive: true, force: true });
  });
  return { root, onCleanup: (f) => cleanup.push(f) };
}
