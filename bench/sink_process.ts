/**
 * The parent's side of bench/output_sinks.ts: starts the sink process, learns its ports, asks for
 * its byte counts between runs and stops it.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { TailBuffer, describeExit, waitForExit } from './measure.ts';
import type { SinkProtocol, SinkStats } from './output_sinks.ts';

// Literal copies of output_sinks.ts's prefixes: importing values from it would run the sink here.
const READY = 'SINK_READY ';
const STATS = 'SINK_STATS ';

export class SinkProcess {
  readonly ports: Partial<Record<SinkProtocol, number>>;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly stderr: TailBuffer;
  private readonly waiting: ((s: SinkStats) => void)[];

  private constructor(child: ChildProcessWithoutNullStreams, stderr: TailBuffer, ports: Partial<Record<SinkProtocol, number>>, waiting: ((s: SinkStats) => void)[]) {
    this.child = child;
    this.stderr = stderr;
    this.ports = ports;
    this.waiting = waiting;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** `ports`: protocol → port (0: any free one). Resolves once every port listens. */
  static async start(repoRoot: string, ports: Partial<Record<SinkProtocol, number>>, timeoutMs = 30_000): Promise<SinkProcess> {
    const args = Object.entries(ports).map(([p, n]) => `${p}=${n}`);
    const child = spawn(process.execPath, [join(repoRoot, 'bench/output_sinks.ts'), ...args], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    const stderr = new TailBuffer();
    child.stderr.on('data', (b: Buffer) => stderr.push(b));
    const waiting: ((s: SinkStats) => void)[] = [];
    const lines = createInterface({ input: child.stdout });
    const ready = new Promise<Partial<Record<SinkProtocol, number>>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sink did not listen within ${timeoutMs / 1000} s: ${stderr.text()}`)), timeoutMs);
      lines.on('line', (line) => {
        if (line.startsWith(READY)) {
          clearTimeout(timer);
          resolve(JSON.parse(line.slice(READY.length)) as Partial<Record<SinkProtocol, number>>);
        } else if (line.startsWith(STATS)) waiting.shift()?.(JSON.parse(line.slice(STATS.length)) as SinkStats);
      });
      void waitForExit(child).then((e) => {
        clearTimeout(timer);
        reject(new Error(`sink ${describeExit(e)}: ${stderr.text()}`));
      });
    });
    return new SinkProcess(child, stderr, await ready, waiting);
  }

  /** Counts since the sink started. */
  stats(): Promise<SinkStats> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.reject(new Error(`sink is gone: ${this.stderr.text()}`));
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin.write('stats\n');
    });
  }

  /** Stops it; the final counts. */
  async stop(): Promise<SinkStats | undefined> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return undefined;
    const last = new Promise<SinkStats>((resolve) => this.waiting.push(resolve));
    this.child.kill('SIGTERM');
    const exit = await waitForExit(this.child);
    if (exit.code !== 0) throw new Error(`sink ${describeExit(exit)} on SIGTERM: ${this.stderr.text()}`);
    return Promise.race([last, new Promise<undefined>((r) => setTimeout(() => r(undefined), 1000))]);
  }
}
