import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentNodeFlags } from '../../agent/runtime_flags.ts';
import { CLI, freePort, NODE, waitFor } from '../helpers/child_agent.ts';
import type { ControlPlane, Identity } from './control_plane.ts';

/**
 * The agent as a separate process against the real API server, as a node runs it: killed with
 * SIGKILL for real and restarted from its data_dir. Its event log records go to a file (NDJSON), its
 * spans to an OTLP receiver (OTEL_EXPORTER_OTLP_ENDPOINT), its metrics are scraped from /metrics.
 */

export interface AgentOptions {
  /** Identity on the Lease and the folder name under `root`; the same name again is a restart. */
  name: string;
  root: string;
  identity: Identity;
  nodeName: string;
  /** The `sources:` block (YAML lines, indented under `sources:`). */
  sources: string[];
  /** Inputs of the file output; default every source named in `sources` is not known, so give them. */
  inputs: string[];
  otlpEndpoint?: string;
  extraConfig?: string[];
  env?: Record<string, string>;
}

export class RealAgent {
  readonly o: AgentOptions;
  readonly dir: string;
  readonly recordsFile: string;
  proc: ChildProcess | undefined;
  port = 0;
  stderr = '';
  /** Every scrape of this incarnation's /metrics, newest last (the last one is what Prometheus last saw). */
  lastScrape = '';

  constructor(o: AgentOptions) {
    this.o = o;
    this.dir = join(o.root, o.name);
    mkdirSync(this.dir, { recursive: true });
    this.recordsFile = join(this.dir, 'records.ndjson');
  }

  async start(): Promise<void> {
    this.port = await freePort();
    const config = join(this.dir, 'agent.yaml');
    writeFileSync(
      config,
      [
        `node_name: ${this.o.nodeName}`,
        `data_dir: ${join(this.dir, 'data')}`,
        'log_level: debug',
        `server: { listen: 127.0.0.1:${this.port} }`,
        `kubernetes: { mode: kubeconfig, kubeconfig: ${this.o.identity.kubeconfig} }`,
        'sources:',
        ...this.o.sources.map((l) => `  ${l}`),
        'outputs:',
        '  records:',
        '    type: file',
        `    path: ${this.recordsFile}`,
        `    inputs: [${this.o.inputs.join(', ')}]`,
        '    batch: { timeout: 100ms }',
        ...(this.o.extraConfig ?? []),
        '',
      ].join('\n'),
    );
    this.stderr = '';
    this.lastScrape = '';
    const env: Record<string, string> = { ...(process.env as Record<string, string>), ...this.o.env };
    if (this.o.otlpEndpoint) {
      env.OTEL_EXPORTER_OTLP_ENDPOINT = this.o.otlpEndpoint;
      env.OTEL_BSP_SCHEDULE_DELAY = '200';
    }
    this.proc = spawn(NODE, [...agentNodeFlags(), CLI, 'run', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'], env });
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      if (this.stderr.length > 2_000_000) this.stderr = this.stderr.slice(-1_000_000);
    });
    await waitFor(
      `agent ${this.o.name} serving /metrics`,
      async () => {
        if (!this.running) throw new Error(`agent ${this.o.name} exited early:\n${this.stderr.slice(-3000)}`);
        return fetch(`http://127.0.0.1:${this.port}/healthz`).then((r) => r.status === 200, () => false);
      },
      60_000,
      100,
    );
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** /metrics as text (remembered as this incarnation's last scrape). */
  async scrape(): Promise<string> {
    const text = await (await fetch(`http://127.0.0.1:${this.port}/metrics`)).text();
    this.lastScrape = text;
    return text;
  }

  async ready(): Promise<boolean> {
    return fetch(`http://127.0.0.1:${this.port}/readyz`).then((r) => r.status === 200, () => false);
  }

  /** SIGKILL: no shutdown, no release of the Lease, checkpoints as they were. */
  async kill9(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** SIGTERM and wait for the exit (a clean stop: the Lease is released). */
  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const p = this.proc;
    if (!p || !this.running) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(sig);
    await exited;
  }

  /** The event log records written so far (every incarnation appends to the same file). */
  records(): Record<string, unknown>[] {
    if (!existsSync(this.recordsFile)) return [];
    return readFileSync(this.recordsFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

/** Prometheus text: the sum of every sample of `name` whose labels include `labels`. */
export function sumMetric(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^([^{ ]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) total += Number(m[3]);
  }
  return total;
}

/** Every sample of `name` as `{labels}` -> value, for diffs. */
export function samples(text: string, name: string, labels: Record<string, string> = {}): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([^{ ]+)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...m[2]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (!Object.entries(labels).every(([k, v]) => got[k] === v)) continue;
    out.set(m[2]!, (out.get(m[2]!) ?? 0) + Number(m[3]));
  }
  return out;
}

/** The control plane's view: Event occurrences in a namespace, by reason (series.count, count, or 1). */
export async function apiOccurrences(cp: ControlPlane, namespace: string): Promise<Map<string, number>> {
  const list = await cp.must<{ items: ApiEvent[] }>('GET', `/api/v1/namespaces/${namespace}/events`);
  const out = new Map<string, number>();
  for (const e of list.items) out.set(e.reason, (out.get(e.reason) ?? 0) + occurrencesOf(e));
  return out;
}

export interface ApiEvent {
  metadata: { name: string; uid: string; resourceVersion: string };
  reason: string;
  count?: number;
  series?: { count?: number } | null;
  involvedObject: { kind: string; name: string; uid?: string; namespace?: string };
}

export function occurrencesOf(e: ApiEvent): number {
  if (e.series?.count && e.series.count > 0) return e.series.count;
  if (e.count && e.count > 0) return e.count;
  return 1;
}
