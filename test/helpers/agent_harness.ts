import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Agent } from '../../agent/agent.ts';
import { parseConfig } from '../../agent/config/load.ts';
import { createLogger } from '../../agent/log.ts';
import { sampleValue } from '../../agent/status/prom_text.ts';
import { waitFor } from './child_agent.ts';

/** The names the generated config gives its one source and its one output. */
export const SOURCE = 'containers';
export const OUTPUT = 'out';

/** The agent uses Node 24 APIs (fs.globSync, path.matchesGlob, zlib.crc32); say so instead of failing obscurely. */
export function requireNode24(): void {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 24) {
    throw new Error(
      `this test runs the agent in-process and needs Node 24, but vitest runs on ${process.version} (${process.execPath}); ` +
        'run it under the pinned node: `npm test`, or `node_modules/.bin/node node_modules/.bin/vitest run ...`',
    );
  }
}

// --- the node's file tree --------------------------------------------------------------------

export interface ContainerLog {
  namespace: string;
  pod: string;
  uid: string;
  container: string;
  /** 64 hex characters, as in kubelet's symlink name. */
  id: string;
  /** `<root>/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log` */
  logPath: string;
  /** `<root>/var/log/containers/<pod>_<ns>_<container>-<id>.log`, a symlink to logPath. */
  linkPath: string;
}

/** A temporary node: kubelet's log folders, a data_dir and a folder for the file output. */
export class NodeTree {
  readonly root: string;
  readonly podsDir: string;
  readonly containersDir: string;
  readonly dataDir: string;
  readonly outputPath: string;
  private count = 0;

  constructor(prefix = 'kta-test-') {
    this.root = mkdtempSync(join(tmpdir(), prefix));
    this.podsDir = join(this.root, 'var', 'log', 'pods');
    this.containersDir = join(this.root, 'var', 'log', 'containers');
    this.dataDir = join(this.root, 'data');
    this.outputPath = join(this.root, 'out', 'records.ndjson');
    for (const dir of [this.podsDir, this.containersDir, this.dataDir, dirname(this.outputPath)]) mkdirSync(dir, { recursive: true });
  }

  /**
   * Adds a container the kubelet way: its log file (with `content`, unless `createFile` is false:
   * then the symlink dangles) and the symlink in /var/log/containers.
   */
  container(opts: { namespace?: string; pod?: string; container?: string; uid?: string; content?: string | Buffer; createFile?: boolean } = {}): ContainerLog {
    const n = ++this.count;
    const namespace = opts.namespace ?? 'default';
    const pod = opts.pod ?? `web-${n}`;
    const container = opts.container ?? 'app';
    const uid = opts.uid ?? `0f1e2d3c-4b5a-4697-8877-${n.toString(16).padStart(12, '0')}`;
    const id = createHash('sha256').update(`container-${n}`).digest('hex');
    const dir = join(this.podsDir, `${namespace}_${pod}_${uid}`, container);
    mkdirSync(dir, { recursive: true });
    const logPath = join(dir, '0.log');
    if (opts.createFile ?? true) writeFileSync(logPath, opts.content ?? '');
    const linkPath = join(this.containersDir, `${pod}_${namespace}_${container}-${id}.log`);
    symlinkSync(logPath, linkPath);
    return { namespace, pod, uid, container, id, logPath, linkPath };
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** A CRI time with `i` as its nanoseconds, so records can be told apart by time too. */
export function criTime(i = 1): string {
  return `2026-11-21T10:00:00.${String(i).padStart(9, '0')}Z`;
}

export function criHeader(opts: { stream?: 'stdout' | 'stderr'; tag?: string; time?: string } = {}): string {
  return `${opts.time ?? criTime()} ${opts.stream ?? 'stdout'} ${opts.tag ?? 'F'} `;
}

/** One CRI physical line, LF included. */
export function criLine(content: string, opts: { stream?: 'stdout' | 'stderr'; tag?: string; time?: string } = {}): string {
  return `${criHeader(opts)}${content}\n`;
}

/** CRI lines for each body, F-tagged on stdout, times 1, 2, 3... ns. */
export function criLines(bodies: readonly string[]): string {
  return bodies.map((b, i) => criLine(b, { time: criTime(i + 1) })).join('');
}

// --- config ----------------------------------------------------------------------------------

export type Scalar = string | number | boolean;
/** A config value: a scalar, or a list/map written as a JSON flow (JSON is YAML). */
export type ConfigValue = Scalar | readonly unknown[] | { readonly [key: string]: unknown };

/**
 * The agent config for a tree: source `containers` over its /var/log/containers with the short
 * intervals tests need, file output `out` into the tree. `source` adds or overrides source keys.
 */
export function agentConfigYaml(
  tree: NodeTree,
  opts: {
    listen?: string;
    source?: Record<string, ConfigValue>;
    /** Source keys left at the agent's own defaults (dropped from the short test intervals above). */
    defaults?: readonly string[];
    /** The `kubernetes` section; `mode: disabled` unless given. */
    kubernetes?: Record<string, Scalar>;
    /** `shutdown_timeout`, 10s unless given. */
    shutdownTimeout?: string;
    /** More sources beside `containers` (not read by the file output), by name: their keys. */
    moreSources?: Record<string, Record<string, ConfigValue>>;
  } = {},
): string {
  const source: Record<string, ConfigValue> = {
    glob_interval: '100ms',
    poll_interval: '100ms',
    checkpoint_interval: '200ms',
    rotate_wait: '500ms',
    ...opts.source,
  };
  for (const key of opts.defaults ?? []) delete source[key];
  const q = (v: ConfigValue) => (typeof v === 'object' || typeof v === 'string' ? JSON.stringify(v) : String(v));
  return [
    'node_name: test-node',
    `data_dir: ${q(tree.dataDir)}`,
    `shutdown_timeout: ${opts.shutdownTimeout ?? '10s'}`,
    'server:',
    `  listen: ${q(opts.listen ?? '127.0.0.1:0')}`,
    'kubernetes:',
    ...Object.entries(opts.kubernetes ?? { mode: 'disabled' }).map(([k, v]) => `  ${k}: ${q(v)}`),
    'sources:',
    `  ${SOURCE}:`,
    '    type: container_logs',
    `    include: [${q(join(tree.containersDir, '*.log'))}]`,
    ...Object.entries(source).map(([k, v]) => `    ${k}: ${q(v)}`),
    ...Object.entries(opts.moreSources ?? {}).flatMap(([name, keys]) => [`  ${name}:`, ...Object.entries(keys).map(([k, v]) => `    ${k}: ${q(v)}`)]),
    'outputs:',
    `  ${OUTPUT}:`,
    '    type: file',
    `    inputs: [${SOURCE}]`,
    `    path: ${q(tree.outputPath)}`,
    '',
  ].join('\n');
}

// --- what comes out ------------------------------------------------------------------------

/** One NDJSON line as design.md fixes it. */
export interface OutRecord {
  timestamp: string;
  observed_timestamp: string;
  severity_text?: string;
  body: unknown;
  attributes: Record<string, string | number | boolean>;
  resource: Record<string, string>;
}

/** The complete lines of an NDJSON file (a last line still being written is left out). */
export function readRecords(path: string): OutRecord[] {
  if (!existsSync(path)) return [];
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.pop();
  return lines.map((l) => JSON.parse(l) as OutRecord);
}

export { sampleValue };

export async function scrapeMetric(baseUrl: string, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const res = await fetch(`${baseUrl}/metrics`);
  if (res.status !== 200) throw new Error(`GET ${baseUrl}/metrics: ${res.status}`);
  return sampleValue(await res.text(), name, labels);
}

// --- the agent, in-process -----------------------------------------------------------------

/**
 * An Agent over a NodeTree, in this process. Create it, lay out containers in `tree`, `start()`;
 * then wait on what the file output wrote and on /metrics. `stop()` stops the agent and removes
 * the tree.
 */
export class AgentHarness {
  readonly tree: NodeTree;
  /** The agent's own log lines. */
  readonly logs: string[] = [];
  agent: Agent | undefined;
  private readonly source: Record<string, ConfigValue>;
  private readonly kubernetes: Record<string, Scalar> | undefined;
  private readonly moreSources: Record<string, Record<string, ConfigValue>> | undefined;
  private readonly defaults: readonly string[];
  /** The tree was handed in: its owner removes it (e.g. to run a second agent over it, a restart). */
  private readonly ownsTree: boolean;
  private stopped = false;

  /**
   * `tree`: run over an existing tree (kept on stop(), so another harness can restart over it);
   * `defaults`: source keys left at the agent's defaults (see agentConfigYaml).
   */
  constructor(
    opts: { source?: Record<string, ConfigValue>; tree?: NodeTree; defaults?: readonly string[]; kubernetes?: Record<string, Scalar>; moreSources?: Record<string, Record<string, ConfigValue>> } = {},
  ) {
    this.source = opts.source ?? {};
    this.moreSources = opts.moreSources;
    this.kubernetes = opts.kubernetes;
    this.defaults = opts.defaults ?? [];
    this.ownsTree = opts.tree === undefined;
    this.tree = opts.tree ?? new NodeTree();
  }

  async start(): Promise<this> {
    requireNode24();
    const config = parseConfig(agentConfigYaml(this.tree, { source: this.source, defaults: this.defaults, kubernetes: this.kubernetes, moreSources: this.moreSources }), 'harness.yaml', {});
    this.agent = new Agent(config, createLogger('debug', (line) => this.logs.push(line)));
    await this.agent.start();
    return this;
  }

  get baseUrl(): string {
    const address = this.agent?.address;
    if (!address) throw new Error('agent not started');
    return `http://127.0.0.1:${address.port}`;
  }

  records(): OutRecord[] {
    return readRecords(this.tree.outputPath);
  }

  /** Resolves with every record written so far once there are at least `n`. */
  waitForLines(n: number, timeoutMs = 20_000): Promise<OutRecord[]> {
    return this.waitFor(`${n} records in the output`, () => {
      const records = this.records();
      return records.length >= n ? records : undefined;
    }, timeoutMs);
  }

  /** Resolves with every record written so far once one has `body`. */
  waitForBody(body: string, timeoutMs = 20_000): Promise<OutRecord[]> {
    return this.waitFor(`a record with body ${JSON.stringify(body)}`, () => {
      const records = this.records();
      return records.some((r) => r.body === body) ? records : undefined;
    }, timeoutMs);
  }

  metric(name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
    return scrapeMetric(this.baseUrl, name, labels);
  }

  /** Resolves with the metric's value once it is at least `atLeast`. */
  waitForMetric(name: string, labels: Record<string, string>, atLeast: number, timeoutMs = 20_000): Promise<number> {
    return this.waitFor(`${name}${JSON.stringify(labels)} >= ${atLeast}`, async () => {
      const v = await this.metric(name, labels);
      return v !== undefined && v >= atLeast ? v : undefined;
    }, timeoutMs);
  }

  /** Polls `check` until it returns a value; on timeout the error carries the output and the agent's log. */
  async waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
    try {
      return await waitFor(what, check, timeoutMs, 50);
    } catch (err) {
      const bodies = this.records().map((r) => (typeof r.body === 'string' ? r.body.slice(0, 60) : JSON.stringify(r.body)));
      throw new Error(
        `${(err as Error).message}\n${bodies.length} records so far: ${JSON.stringify(bodies.slice(-20))}\n` +
          `agent log (last 30 lines):\n${this.logs.slice(-30).join('')}`,
        { cause: err },
      );
    }
  }

  /** Stops the agent (once) and removes the tree, unless the tree was handed in. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.agent?.stop();
    } finally {
      if (this.ownsTree) this.tree.remove();
    }
  }
}
