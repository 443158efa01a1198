/**
 * The child side of a measured run (bench/measure.ts `runReportingChild`): a benchmark program calls
 * `reportResult` once at its end; the parent reads the last `BENCH_RESULT` line of its stdout.
 * CPU time and peak RSS come from the process itself, so they cover exactly this program.
 */
export const RESULT_PREFIX = 'BENCH_RESULT ';

export interface ChildResult {
  /** Lines (or records) the program produced or counted. */
  lines: number;
  /** Input bytes it read. */
  bytes: number;
  /** Anything else worth printing (counts of errors, output bytes...). */
  extra?: Record<string, number | string>;
}

export interface ChildReport extends ChildResult {
  cpuUserSeconds: number;
  cpuSystemSeconds: number;
  /** Peak resident set size (`getrusage` ru_maxrss). */
  peakRssBytes: number;
  /** Wall time from the program's first line to the report, without Node's start-up. */
  innerWallSeconds: number;
}

const started = performance.now();

export function reportResult(result: ChildResult): void {
  const cpu = process.cpuUsage();
  const report: ChildReport = {
    ...result,
    cpuUserSeconds: cpu.user / 1e6,
    cpuSystemSeconds: cpu.system / 1e6,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    innerWallSeconds: (performance.now() - started) / 1000,
  };
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(report)}\n`);
}
