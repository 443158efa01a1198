/**
 * Runs the real agent (`node agent/cli.ts run --config FILE`) as a measured child: waits until one
 * of its counters reaches a target (polling /metrics), reads its CPU time and peak RSS from /proc
 * while it is still alive, then sends SIGTERM and expects exit 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { agentNodeFlags } from '../agent/runtime_flags.ts';
import { TailBuffer, describeExit, procStats, waitForExit, type ExitInfo, type Measurement, type ProcStats } from './measure.ts';

export interface AgentRunOptions {
  name: string;
  repoRoot: string;
  /** Folder for the config file and the agent's log (created). */
  workDir: string;
  /** The config object; written as YAML to `<workDir>/agent.yaml`. Must set server.listen. */
  config: Record<string, unknown>;
  /** host:port of /metrics (the config's server.listen). */
  listen: string;
  /** Counter to wait for, with its labels, e.g. output records sent. */
  metric: { name: string; labels: Record<string, string> };
  /** Stop when the counter reaches this. */
  target: number;
  /** Input bytes, for the measurement. */
  bytes: number;
  pollMs?: number;
  /** Overall limit from spawn. */
  timeoutMs: number;
  /** Limit without any progress of the counter once /metrics answered. Default 60 s. */
  stallMs?: number;
  /** Limit for /metrics to answer the first time. Default 30 s. */
  startupMs?: number;
  /** Limit for the exit after SIGTERM (then SIGKILL). Default 60 s. */
  shutdownMs?: number;
}

/** Value of a sample `name{labels...} value` whose labels include all of `labels`. */
export function metricValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    let labelText = '';
    let valueText: string;
    if (rest.startsWith('{')) {
      const close = rest.lastIndexOf('}');
      labelText = rest.slice(1, close);
      valueText = rest.slice(close + 1).trim();
    } else if (rest.startsWith(' ')) valueText = rest.trim();
    else continue;
    const found: Record<string, string> = {};
    for (const m of labelText.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) found[m[1]!] = m[2]!;
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(valueText.split(' ')[0]);
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runAgent(o: AgentRunOptions): Promise<Measurement> {
  fs.mkdirSync(o.workDir, { recursive: true });
  const configPath = join(o.workDir, 'agent.yaml');
  fs.writeFileSync(configPath, stringify(o.config));
  const logPath = join(o.workDir, 'agent.log');
  const log = fs.openSync(logPath, 'w');
  const tail = new TailBuffer();
  const cli = join(o.repoRoot, 'agent/cli.ts');
  const start = performance.now();
  const child = spawn(process.execPath, [...agentNodeFlags(cli), cli, 'run', '--config', configPath], { cwd: o.repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const onData = (b: Buffer) => {
    tail.push(b);
    fs.writeSync(log, b);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  let exited: ExitInfo | undefined;
  const exitPromise = waitForExit(child).then((e) => (exited = e));
  const fail = (why: string): never => {
    const output = tail.text();
    throw new Error(`${why}${output ? `\n--- agent output (last lines, full log in ${logPath}) ---\n${output}` : ''}`);
  };

  const pollMs = o.pollMs ?? 200;
  const stallMs = o.stallMs ?? 60_000;
  const startupMs = o.startupMs ?? 30_000;
  const url = `http://${o.listen}/metrics`;
  let value: number | undefined;
  let answered = false;
  let lastProgress = performance.now();
  let wallSeconds: number | undefined;
  let stats: ReturnType<typeof procStats> | undefined;
  try {
    for (;;) {
      if (exited) fail(`agent ${describeExit(exited)} before ${o.metric.name} reached ${o.target} (last value ${value ?? 'none'})`);
      const now = performance.now();
      if (now - start > o.timeoutMs) fail(`timed out after ${Math.round(o.timeoutMs / 1000)} s at ${o.metric.name}=${value ?? 'none'} of ${o.target}`);
      if (!answered && now - start > startupMs) fail(`${url} did not answer within ${startupMs / 1000} s`);
      if (answered && now - lastProgress > stallMs) {
        fail(
          value === undefined
            ? `/metrics has no ${o.metric.name}${JSON.stringify(o.metric.labels)} after ${stallMs / 1000} s (nothing sent?)`
            : `no progress for ${stallMs / 1000} s at ${o.metric.name}=${value} of ${o.target}`,
        );
      }
      let text: string | undefined;
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
        if (res.ok) text = await res.text();
      } catch {
        // not listening yet, or busy
      }
      if (text !== undefined) {
        answered = true;
        const v = metricValue(text, o.metric.name, o.metric.labels);
        if (v !== undefined && v !== value) {
          value = v;
          lastProgress = performance.now();
        }
        if (value !== undefined && value >= o.target) {
          wallSeconds = (performance.now() - start) / 1000;
          // Before SIGTERM: shutdown work (flush, checkpoints) is not part of the throughput.
          stats = procStats(child.pid!);
          break;
        }
      }
      await sleep(pollMs);
    }
  } catch (err) {
    if (!exited) {
      child.kill('SIGKILL');
      await exitPromise;
    }
    fs.closeSync(log);
    throw err;
  }

  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), o.shutdownMs ?? 60_000);
  const exit = await exitPromise;
  clearTimeout(timer);
  fs.closeSync(log);
  if (exit.code !== 0) fail(`agent ${describeExit(exit)} after SIGTERM (expected exit 0)`);
  return {
    name: o.name,
    lines: value!,
    bytes: o.bytes,
    wallSeconds: wallSeconds!,
    cpuSeconds: stats!.cpuSeconds,
    peakRssBytes: stats!.peakRssBytes,
  };
}

/** The agent as a child: spawned, its /metrics read, its /proc read, stopped. */
export class AgentChild {
  readonly child: ChildProcess;
  readonly logPath: string;
  private readonly url: string;
  private readonly tail = new TailBuffer();
  private readonly logFd: number;
  exited: ExitInfo | undefined;
  private readonly exit: Promise<ExitInfo>;

  constructor(repoRoot: string, workDir: string, listen: string, config: Record<string, unknown>) {
    fs.mkdirSync(workDir, { recursive: true });
    const configPath = join(workDir, 'agent.yaml');
    fs.writeFileSync(configPath, stringify(config));
    this.logPath = join(workDir, 'agent.log');
    this.logFd = fs.openSync(this.logPath, 'w');
    this.url = `http://${listen}/metrics`;
    const cli = join(repoRoot, 'agent/cli.ts');
    this.child = spawn(process.execPath, [...agentNodeFlags(cli), cli, 'run', '--config', configPath], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    const onData = (b: Buffer) => {
      this.tail.push(b);
      fs.writeSync(this.logFd, b);
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exit = waitForExit(this.child).then((e) => (this.exited = e));
  }

  error(why: string): Error {
    const output = this.tail.text();
    return new Error(`${why}${output ? `\n--- agent output (last lines, full log in ${this.logPath}) ---\n${output}` : ''}`);
  }

  alive(): void {
    if (this.exited) throw this.error(`agent ${describeExit(this.exited)} unexpectedly`);
  }

  stats(): ProcStats {
    this.alive();
    return procStats(this.child.pid!);
  }

  async metrics(): Promise<string | undefined> {
    try {
      const res = await fetch(this.url, { signal: AbortSignal.timeout(2000) });
      return res.ok ? await res.text() : undefined;
    } catch {
      return undefined;
    }
  }

  async waitForMetrics(timeoutMs: number): Promise<void> {
    const start = performance.now();
    while ((await this.metrics()) === undefined) {
      this.alive();
      if (performance.now() - start > timeoutMs) throw this.error(`${this.url} did not answer within ${timeoutMs / 1000} s`);
      await sleep(200);
    }
  }

  /** SIGTERM, then SIGKILL after `timeoutMs`; throws unless it exits 0. */
  async stop(timeoutMs = 60_000): Promise<void> {
    if (!this.exited) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
      await this.exit;
      clearTimeout(timer);
    }
    fs.closeSync(this.logFd);
    if (this.exited!.code !== 0) throw this.error(`agent ${describeExit(this.exited!)} after SIGTERM (expected exit 0)`);
  }

  async kill(): Promise<void> {
    if (!this.exited) {
      this.child.kill('SIGKILL');
      await this.exit;
    }
    try {
      fs.closeSync(this.logFd);
    } catch {
      // closed by stop()
    }
  }
}
