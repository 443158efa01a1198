import { accessSync, closeSync, constants, openSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { connect as netConnect, createServer, type Socket } from 'node:net';
import { delimiter, dirname, join, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { outputPlugins, type OutputConfig } from '../../outputs/registry.ts';
import { describeNetworkError } from '../../outputs/http_client.ts';
import { resolveConnection } from '../kube/connection.ts';
import type { Logger } from '../log.ts';
import { redactUrl } from '../redact.ts';
import { listenProblem as describeListenError } from '../server.ts';
import { sourcePlugins, type SourceConfig } from '../sources/registry.ts';
import type { AgentConfig } from './schema.ts';

/**
 * What a config needs from the node it runs on, checked before anything is built.
 *
 * Plain `validate` is pure: the config text and the environment variables it names, nothing else,
 * so it gives the same answer on a laptop, in CI and on the node (a ConfigMap is validated long
 * before it reaches a node, where `/var/run/secrets/...` does not exist). What only the node can
 * answer is checked here, in three scopes:
 * - `start` and `reload`: what building the parts needs: files they read (credentials, TLS
 *   material) readable and not empty, paths they write (data_dir, a file output's file) writable.
 *   `run` exits 2 with one line per problem instead of starting half-broken; a reload that fails
 *   them is rejected and the running config stays. (`server.listen` is checked by binding it.)
 * - `target` (`validate --check`, run on the node or in its image): the same, plus what the agent
 *   survives at run time but an operator wants to know before a rollout: programs the sources run
 *   (journalctl), `server.listen` free to bind, every receiver resolved and connected to (TLS
 *   handshake with the configured CA and client certificate), and the Kubernetes connection that
 *   `kubernetes.mode` asks for (files, context, the API server answering). At run time a receiver
 *   that is down is retried, a missing journalctl or an unusable kubeconfig leaves the parts that
 *   need them not ready (logged, /readyz 503) while container logs keep flowing.
 */
export type CheckScope = 'start' | 'reload' | 'target';

/** TLS settings of an endpoint, as the outputs' `tls` keys give them. */
export interface EndpointTls {
  ca_file?: string;
  cert_file?: string;
  key_file?: string;
  server_name?: string;
  insecure_skip_verify?: boolean;
}

/** What one source or output needs from the node; keys are relative to the component's own. */
export interface TargetNeeds {
  /** Files read when the part is built: readable, a file, not empty. */
  files?: { key: string; path: string }[];
  /** Files or folders the part writes: they, or their nearest existing parent folder, must be writable. */
  writes?: { key: string; path: string; kind: 'file' | 'folder' }[];
  /** Programs the part runs: a path, or a name found on PATH, executable. */
  programs?: { key: string; command: string }[];
  /** Receivers the part connects to (http, https, tcp or tls URLs). */
  endpoints?: { key: string; url: string; tls?: EndpointTls }[];
}

export interface TargetReport {
  /** `key.path: what is wrong`, one per problem. */
  problems: string[];
  /** What was found that is worth knowing but not wrong (e.g. the API turned off by mode auto). */
  notes: string[];
  /** What was checked, counted, for the one line `validate --check` prints when all is well. */
  checked: string[];
}

export interface CheckOptions {
  scope: CheckScope;
  /** Only these outputs and sources (a reload checks what it builds anew; the rest runs already). */
  parts?: (section: 'outputs' | 'sources', name: string) => boolean;
  /** Per network check (resolve, connect, handshake, API answer). */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443, 'tcp:': 514, 'tls:': 6514 };

export function needsOfOutput(config: OutputConfig): TargetNeeds {
  const plugin = outputPlugins[config.type] as { needs?: (c: OutputConfig) => TargetNeeds };
  return plugin.needs?.(config) ?? {};
}

export function needsOfSource(config: SourceConfig): TargetNeeds {
  const plugin = sourcePlugins[config.type] as { needs?: (c: SourceConfig) => TargetNeeds };
  return plugin.needs?.(config) ?? {};
}

/** Whether any source reads the Kubernetes API (then `kubernetes.mode` must work). */
export function usesKubernetesApi(config: AgentConfig): boolean {
  if (config.kubernetes.mode === 'disabled') return false;
  return Object.values(config.sources).some((s) => s.type === 'kubernetes_events' || (s.type === 'container_logs' && s.kubernetes_metadata.enabled));
}

export async function checkTarget(config: AgentConfig, opts: CheckOptions): Promise<TargetReport> {
  const report: TargetReport = { problems: [], notes: [], checked: [] };
  const timeoutMs = opts.timeoutMs ?? 5000;
  const target = opts.scope === 'target';
  const count = new Map<string, number>();
  const tick = (what: string) => count.set(what, (count.get(what) ?? 0) + 1);

  const parts: [prefix: string, needs: TargetNeeds][] = [
    [
      '',
      {
        writes: [{ key: 'data_dir', path: config.data_dir, kind: 'folder' }],
        files: config.server.tap.token_file ? [{ key: 'server.tap.token_file', path: config.server.tap.token_file }] : [],
      },
    ],
    ...Object.entries(config.outputs)
      .filter(([name]) => opts.parts?.('outputs', name) ?? true)
      .map(([name, c]): [string, TargetNeeds] => [`outputs.${name}.`, needsOfOutput(c)]),
    ...Object.entries(config.sources)
      .filter(([name]) => opts.parts?.('sources', name) ?? true)
      .map(([name, c]): [string, TargetNeeds] => [`sources.${name}.`, needsOfSource(c)]),
  ];
  const network: Promise<void>[] = [];
  for (const [prefix, needs] of parts) {
    for (const f of needs.files ?? []) {
      tick('files readable');
      const problem = fileProblem(f.path);
      if (problem) report.problems.push(`${prefix}${f.key}: cannot read ${f.path}: ${problem}`);
    }
    for (const w of needs.writes ?? []) {
      tick('paths writable');
      const problem = writeProblem(w.path, w.kind);
      if (problem) report.problems.push(`${prefix}${w.key}: ${problem}`);
    }
    if (!target) continue;
    for (const p of needs.programs ?? []) {
      tick('programs found');
      const problem = programProblem(p.command, opts.env ?? process.env);
      if (problem) report.problems.push(`${prefix}${p.key}: ${problem}`);
    }
    for (const e of needs.endpoints ?? []) {
      tick('endpoints reachable');
      network.push(
        endpointProblem(e.url, e.tls, timeoutMs).then((problem) => {
          if (problem) report.problems.push(`${prefix}${e.key}: ${problem}`);
        }),
      );
    }
  }
  if (target) {
    tick('server.listen free');
    network.push(
      listenProblem(config.server.listen, timeoutMs).then((r) => {
        if (r?.problem) report.problems.push(`server.listen: ${r.problem}`);
        if (r?.note) report.notes.push(`server.listen: ${r.note}`);
      }),
    );
  }
  if (target && usesKubernetesApi(config)) {
    tick('Kubernetes connection');
    network.push(kubernetesProblem(config, target, timeoutMs, report));
  }
  await Promise.all(network);
  report.checked = CHECKED_ORDER.filter((what) => count.has(what)).map((what) => {
    const n = count.get(what)!;
    if (what === 'server.listen free' || what === 'Kubernetes connection') return what;
    return n === 1 ? `1 ${what.replace(/^(\w+)s /, '$1 ')}` : `${n} ${what}`;
  });
  return report;
}

const CHECKED_ORDER = ['paths writable', 'files readable', 'programs found', 'endpoints reachable', 'server.listen free', 'Kubernetes connection'];

/** Why `path` cannot be read as a non-empty file, or undefined. */
export function fileProblem(path: string): string | undefined {
  let st;
  try {
    st = statSync(path);
    if (st.isDirectory()) return 'is a folder, not a file';
    accessSync(path, constants.R_OK);
  } catch (e) {
    return fsProblem(e);
  }
  if (st.isFile() && st.size === 0) return 'the file is empty';
  return undefined;
}

function fsProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOTDIR') return 'a part of the path is not a folder';
  if (code === 'ELOOP') return 'too many symbolic links';
  return (e as Error).message;
}

/**
 * Why the agent could not write `path` (a file it appends to, or a folder it creates files in),
 * or undefined. The path, or the nearest parent folder that exists, is opened for writing the way
 * the agent would: an existing file for append, a folder by creating and at once removing an
 * empty probe file in it. Permission bits alone would pass root on a read-only mount or in /proc.
 * Nothing is left behind.
 */
export function writeProblem(path: string, kind: 'file' | 'folder'): string | undefined {
  const wanted = resolve(path);
  let at = wanted;
  for (;;) {
    let st;
    try {
      st = statSync(at);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // ENOTDIR: a parent is a file; walking up finds it and says so.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return `cannot use ${at}: ${fsProblem(e)}`;
      const parent = dirname(at);
      if (parent === at) return `cannot use ${path}: no such folder`;
      at = parent;
      continue;
    }
    const exists = at === wanted;
    try {
      if (exists && kind === 'file' && !st.isDirectory()) {
        closeSync(openSync(at, 'a'));
        return undefined;
      }
      if (!st.isDirectory()) return exists ? `${at} is not a folder` : `cannot create ${path}: ${at} is not a folder`;
      const probe = join(at, `.telemetry-agent-write-check-${process.pid}-${Math.random().toString(36).slice(2)}`);
      closeSync(openSync(probe, 'wx', 0o600));
      unlinkSync(probe);
      return undefined;
    } catch (e) {
      const why = writeFsProblem(e);
      if (exists) return kind === 'file' && !st.isDirectory() ? `cannot write ${at}: ${why}` : `cannot write in ${at}: ${why}`;
      return `cannot create ${path} in ${at}: ${why}`;
    }
  }
}

function writeFsProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EROFS') return 'read-only file system';
  if (code === 'ENOSPC') return 'no space left on the device';
  if (code === 'ENOENT') return 'the file system takes no new files there';
  return fsProblem(e);
}

/** Why `command` cannot be run (a path, or a name looked up in PATH as spawn does), or undefined. */
export function programProblem(command: string, env: NodeJS.ProcessEnv): string | undefined {
  const executable = (file: string) => {
    try {
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  };
  if (command.includes('/')) return executable(command) ? undefined : `${command} is not an executable file`;
  const dirs = (env.PATH ?? '').split(delimiter).filter(Boolean);
  if (dirs.some((d) => executable(join(d, command)))) return undefined;
  return `${command} not found in PATH (${env.PATH ?? 'unset'})`;
}

/** Resolves, connects and (for https and tls) completes a TLS handshake with the configured material. */
async function endpointProblem(url: string, tls: EndpointTls | undefined, timeoutMs: number): Promise<string | undefined> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(u.port || DEFAULT_PORTS[u.protocol] || 0);
  const shown = redactUrl(u);
  try {
    await withTimeout(lookup(host, { all: true }), timeoutMs, 'timeout');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    return `${shown}: the host name ${host} cannot be resolved (${code})`;
  }
  const secure = u.protocol === 'https:' || u.protocol === 'tls:';
  let material: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  try {
    material = {
      ca: tls?.ca_file ? readFileSync(tls.ca_file) : undefined,
      cert: tls?.cert_file ? readFileSync(tls.cert_file) : undefined,
      key: tls?.key_file ? readFileSync(tls.key_file) : undefined,
    };
  } catch {
    // Reported by the file checks; connect without it.
  }
  return new Promise((done) => {
    let socket: Socket;
    const finish = (problem: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      done(problem);
    };
    const timer = setTimeout(() => finish(`${shown}: no connection within ${timeoutMs / 1000} s`), timeoutMs);
    if (secure) {
      socket = tlsConnect({
        host,
        port,
        servername: tls?.server_name ?? (/^[\d.:]+$/.test(host) ? undefined : host),
        rejectUnauthorized: !tls?.insecure_skip_verify,
        ...material,
      });
      socket.once('secureConnect', () => finish(undefined));
    } else {
      socket = netConnect({ host, port });
      socket.once('connect', () => finish(undefined));
    }
    socket.once('error', (e) => finish(`${shown}: ${describeNetworkError(e, u, { insecure_skip_verify: false, ...tls })}`));
  });
}

/** Whether `listen` can be bound; in use by a telemetry-agent is a note (checking beside the running agent). */
async function listenProblem(listen: string, timeoutMs: number): Promise<{ problem?: string; note?: string } | undefined> {
  const at = listen.lastIndexOf(':');
  const host = listen.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(at + 1));
  const error = await new Promise<NodeJS.ErrnoException | undefined>((done) => {
    const server = createServer();
    server.once('error', (e) => done(e));
    server.listen(port, host, () => server.close(() => done(undefined)));
  });
  if (!error) return undefined;
  if (error.code === 'EADDRINUSE' && (await isTelemetryAgent(host, port, timeoutMs))) {
    return { note: `${listen} is served by a running telemetry-agent (the one this config is for, or a reload applies it)` };
  }
  return { problem: describeListenError(error, listen) };
}

async function isTelemetryAgent(host: string, port: number, timeoutMs: number): Promise<boolean> {
  const where = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  try {
    const res = await fetch(`http://${where}:${port}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
    return (await res.text()).includes('telemetry_agent_build_info');
  } catch {
    return false;
  }
}

/**
 * The Kubernetes connection `kubernetes.mode` asks for: in_cluster and kubeconfig must resolve
 * (files present, a usable context); auto may turn the API off, which is a note. With `target`,
 * the API server must answer GET /version (any answer but 401 counts: it is reachable and takes
 * the credentials).
 */
async function kubernetesProblem(config: AgentConfig, target: boolean, timeoutMs: number, report: TargetReport): Promise<void> {
  const k = config.kubernetes;
  const notes: string[] = [];
  const quiet: Logger = { debug: () => {}, info: () => {}, warn: (m) => notes.push(m), error: (m) => notes.push(m) };
  const key = k.mode === 'kubeconfig' && k.kubeconfig ? 'kubernetes.kubeconfig' : 'kubernetes.mode';
  let connection;
  try {
    connection = await resolveConnection({ mode: k.mode, kubeconfig: k.kubeconfig, context: k.context, log: quiet });
  } catch (e) {
    report.problems.push(`${key}: ${(e as Error).message}`);
    return;
  }
  if (!connection) {
    for (const n of notes) report.notes.push(`kubernetes: ${n.replace(/^kubernetes: /, '')}`);
    return;
  }
  try {
    if (!target) return;
    const res = await withTimeout(connection.request('/version', { signal: AbortSignal.timeout(timeoutMs) }), timeoutMs + 100, 'timeout');
    res.resume();
    if (res.statusCode === 401) report.problems.push(`${key}: the API server ${redactUrl(connection.server)} refused the credentials of ${connection.source} (401)`);
  } catch (e) {
    report.problems.push(`${key}: the API server ${redactUrl(connection.server)} did not answer: ${(e as Error).message}`);
  } finally {
    connection.close();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
