/**
 * Shared by all benchmarks: running a measured child process, reading /proc, counting output
 * lines, and printing result tables. Measurements are taken one process at a time.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import { RESULT_PREFIX, type ChildReport } from './child.ts';

export const MiB = 1024 * 1024;

/** One program's run over one input. */
export interface Measurement {
  name: string;
  /** Lines or records the program produced (or counted, for raw readers). */
  lines: number;
  /** Input bytes. */
  bytes: number;
  /** Wall time seen by the parent, from spawn to the end of the work (exit, or target reached). */
  wallSeconds: number;
  /** user + system CPU of the process, all threads. */
  cpuSeconds: number;
  peakRssBytes: number;
  /** Free-form details printed under the table. */
  notes?: string[];
}

export interface Scenario {
  name: string;
  description: string;
  run(ctx: ScenarioContext): Promise<ScenarioOutcome>;
}

export interface ScenarioContext {
  /** Repository root (where agent/ and bench/ live). */
  repoRoot: string;
  /** Cache for generated inputs (`<repo>/.bench-data`, git-ignored). */
  dataDir: string;
  env: NodeJS.ProcessEnv;
  log(message: string): void;
}

export interface Target {
  description: string;
  /** undefined when it could not be evaluated (a run failed). */
  pass: boolean | undefined;
  detail: string;
}

export interface ScenarioOutcome {
  measurements: Measurement[];
  /** The scenario's result table (e.g. `throughputTable`). */
  table: string;
  /** Lines printed under the table (input description, caveats). */
  notes: string[];
  targets: Target[];
  /** Failed runs or wrong outputs: the benchmark exits 1 when any scenario has errors. */
  errors: string[];
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Keeps the last `limit` bytes written to it (a child's stderr, for error messages). */
export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private readonly limit: number;

  constructor(limit = 8192) {
    this.limit = limit;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - this.chunks[0]!.length >= this.limit) this.size -= this.chunks.shift()!.length;
  }

  text(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.limit)).toString().trim();
  }
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function waitForExit(child: ChildProcess): Promise<ExitInfo> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

export function describeExit(e: ExitInfo): string {
  return e.signal ? `killed by ${e.signal}` : `exit code ${e.code}`;
}

/**
 * Runs `node <script> <args>` (the parent's Node) and reads the `BENCH_RESULT` report the script
 * prints at its end (bench/child.ts). Throws with the child's stderr when it fails.
 */
export async function runReportingChild(name: string, script: string, args: string[], cwd: string): Promise<Measurement & { report: ChildReport }> {
  const start = performance.now();
  const child = spawn(process.execPath, [script, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: Buffer[] = [];
  const stderr = new TailBuffer();
  child.stdout.on('data', (b: Buffer) => stdout.push(b));
  child.stderr.on('data', (b: Buffer) => stderr.push(b));
  const exit = await waitForExit(child);
  const wallSeconds = (performance.now() - start) / 1000;
  if (exit.code !== 0) throw new Error(`${name}: ${describeExit(exit)}${stderr.text() ? `: ${stderr.text()}` : ''}`);
  const line = Buffer.concat(stdout)
    .toString()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith(RESULT_PREFIX));
  if (!line) throw new Error(`${name}: no ${RESULT_PREFIX.trim()} line on stdout`);
  const report = JSON.parse(line.slice(RESULT_PREFIX.length)) as ChildReport;
  const notes = report.extra ? [Object.entries(report.extra).map(([k, v]) => `${k}=${v}`).join(' ')] : undefined;
  return {
    name,
    lines: report.lines,
    bytes: report.bytes,
    wallSeconds,
    cpuSeconds: report.cpuUserSeconds + report.cpuSystemSeconds,
    peakRssBytes: report.peakRssBytes,
    notes,
    report,
  };
}

let clockTicks: number | undefined;

/** `getconf CLK_TCK`, 100 when it cannot be asked. */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

export interface ProcStats {
  /** utime + stime, all threads, from /proc/<pid>/stat. */
  cpuSeconds: number;
  /** VmHWM from /proc/<pid>/status. */
  peakRssBytes: number;
  /** VmRSS now. */
  rssBytes: number;
}

/** CPU and memory of a running process (Linux). Read before the process exits. */
export function procStats(pid: number): ProcStats {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after "(comm)": state is field 3, utime 14, stime 15 (1-based in proc(5)).
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(rest[11]) + Number(rest[12]);
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { cpuSeconds: ticks / clockTicksPerSecond(), peakRssBytes: kib('VmHWM') * 1024, rssBytes: kib('VmRSS') * 1024 };
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Files

/** LF count of a file (a missing file counts 0). */
export function countLines(path: string): number {
  if (!fs.existsSync(path)) return 0;
  const fd = fs.openSync(path, 'r');
  const buf = Buffer.allocUnsafe(4 * MiB);
  let lines = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      const chunk = n === buf.length ? buf : buf.subarray(0, n);
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
    }
  } finally {
    fs.closeSync(fd);
  }
  return lines;
}

/** First and last line of a (possibly huge) file, for a shape check without reading it all. */
export function firstAndLastLine(path: string): { first: string; last: string } {
  const fd = fs.openSync(path, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, 4 * MiB));
    fs.readSync(fd, head, 0, head.length, 0);
    const tail = Buffer.alloc(Math.min(size, 4 * MiB));
    fs.readSync(fd, tail, 0, tail.length, size - tail.length);
    const first = head.toString().split('\n')[0] ?? '';
    const lines = tail.toString().split('\n');
    return { first, last: lines[lines.length - 1] === '' ? (lines[lines.length - 2] ?? '') : lines[lines.length - 1]! };
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads files once so every measured program starts from the same (warm) page cache. */
export function warmPageCache(paths: readonly string[]): void {
  const buf = Buffer.allocUnsafe(4 * MiB);
  for (const p of paths) {
    const fd = fs.openSync(p, 'r');
    while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// Output

export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

function num(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function linesPerCpuSecond(m: Measurement): number {
  return m.cpuSeconds > 0 ? m.lines / m.cpuSeconds : NaN;
}

/** A scenario's integer knob from the environment (`BENCH_MIB`…), `fallback` when unset. */
export function intEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return n;
}

/**
 * The choices every scenario reads the same way: which runs to make (BENCH_ONLY, comma-separated;
 * default all of `runs`), whether to keep its temp folder (BENCH_KEEP=1), how often to run each
 * program (BENCH_REPEAT, at least 1; the median is shown).
 */
export function runChoices(env: NodeJS.ProcessEnv, runs: readonly string[]): { only: Set<string>; keep: boolean; repeat: number } {
  return {
    only: new Set((env.BENCH_ONLY ?? runs.join(',')).split(',').map((s) => s.trim())),
    keep: env.BENCH_KEEP === '1',
    repeat: Math.max(1, intEnv(env, 'BENCH_REPEAT', 1)),
  };
}

/** The knobs of a generated CRI corpus (bench/corpus.ts): its size from `mibVar`, BENCH_FILES, BENCH_SEED, BENCH_LONG_EVERY. */
export function criCorpusParams(env: NodeJS.ProcessEnv, mibVar: string, defaultMib: number): { mib: number; files: number; seed: number; longLineEvery: number } {
  return {
    mib: intEnv(env, mibVar, defaultMib),
    files: intEnv(env, 'BENCH_FILES', 50),
    seed: intEnv(env, 'BENCH_SEED', 1),
    longLineEvery: intEnv(env, 'BENCH_LONG_EVERY', 1000),
  };
}

/**
 * Runs one program `repeat` times (BENCH_REPEAT) and returns the median run by lines per
 * CPU-second, the spread in its notes. Throws the first failed run's error.
 */
export async function medianRun(name: string, repeat: number, log: (m: string) => void, run: (i: number) => Promise<Measurement>): Promise<Measurement> {
  const runs: Measurement[] = [];
  for (let i = 1; i <= repeat; i++) {
    log(`running ${name}${repeat > 1 ? ` (${i}/${repeat})` : ''}...`);
    const m = await run(i);
    runs.push(m);
    log(`  ${name}: ${m.lines} lines in ${m.wallSeconds.toFixed(2)} s wall, ${m.cpuSeconds.toFixed(2)} s CPU, peak RSS ${(m.peakRssBytes / MiB).toFixed(1)} MiB`);
  }
  runs.sort((a, b) => linesPerCpuSecond(a) - linesPerCpuSecond(b));
  const median = runs[Math.floor(runs.length / 2)]!;
  if (runs.length > 1) {
    const rss = runs.map((r) => r.peakRssBytes / MiB);
    median.notes = [
      ...(median.notes ?? []),
      `median of ${runs.length} runs; lines/CPU-s ${Math.round(linesPerCpuSecond(runs[0]!))}..${Math.round(linesPerCpuSecond(runs[runs.length - 1]!))}, peak RSS ${Math.min(...rss).toFixed(1)}..${Math.max(...rss).toFixed(1)} MiB`,
    ];
  }
  return median;
}

/**
 * The throughput table: one row per measurement, with the ratio of lines per CPU-second to each
 * of `baselines` (names of rows in `measurements`).
 */
export function throughputTable(measurements: Measurement[], baselines: string[]): string {
  const byName = new Map(measurements.map((m) => [m.name, m]));
  const header = ['run', 'lines', 'MiB', 'wall s', 'lines/s', 'MiB/s', 'CPU s', 'lines/CPU-s', 'peak RSS MiB', ...baselines.map((b) => `vs ${b}`)];
  const rows = measurements.map((m) => [
    m.name,
    num(m.lines),
    num(m.bytes / MiB, 1),
    num(m.wallSeconds, 2),
    num(m.lines / m.wallSeconds),
    num(m.bytes / MiB / m.wallSeconds, 1),
    num(m.cpuSeconds, 2),
    num(linesPerCpuSecond(m)),
    num(m.peakRssBytes / MiB, 1),
    ...baselines.map((b) => {
      const base = byName.get(b);
      return base ? `${num(linesPerCpuSecond(m) / linesPerCpuSecond(base), 2)}x` : '-';
    }),
  ]);
  return formatTable(header, rows);
}

export function formatTargets(targets: Target[]): string {
  return targets
    .map((t) => `  ${t.pass === undefined ? 'N/A ' : t.pass ? 'PASS' : 'MISS'}  ${t.description}: ${t.detail}`)
    .join('\n');
}
