import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './child_agent.ts';

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

/** Debian's prometheus scraping one target every second, asked through its query API; `stop()` ends it. */
export class PrometheusServer {
  private proc: ChildProcess | undefined;
  private dir = '';
  private port = 0;
  log = '';

  async start(binary: string, target: string, job = 'telemetry-agent-test'): Promise<void> {
    this.dir = mkdtempSync(join(tmpdir(), 'kta-prom-'));
    this.port = await freePort();
    const configFile = join(this.dir, 'prometheus.yml');
    writeFileSync(
      configFile,
      `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n` +
        `scrape_configs:\n  - job_name: ${job}\n    scrape_interval: 1s\n    scrape_timeout: 1s\n` +
        `    static_configs:\n      - targets: ["${target}"]\n`,
    );
    this.proc = spawn(binary, [`--config.file=${configFile}`, `--storage.tsdb.path=${join(this.dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${this.port}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stdout!.on('data', (d: Buffer) => (this.log += d.toString()));
    this.proc.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
  }

  async query(q: string): Promise<PromSample[]> {
    const res = await fetch(`http://127.0.0.1:${this.port}/api/v1/query?query=${encodeURIComponent(q)}`).catch(() => undefined);
    if (!res || res.status !== 200) return [];
    return ((await res.json()) as { data: { result: PromSample[] } }).data.result;
  }

  /** Waits until `q` returns what `done` accepts (Prometheus must have scraped the values first). */
  until(q: string, done: (r: PromSample[]) => boolean, timeoutMs = 30_000): Promise<PromSample[]> {
    return waitFor(
      `${q} in Prometheus`,
      async () => {
        if (this.proc!.exitCode !== null) throw new Error(`prometheus exited ${this.proc!.exitCode}:\n${this.log}`);
        const r = await this.query(q);
        return done(r) ? r : undefined;
      },
      timeoutMs,
      250,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nprometheus log:\n${this.log.slice(-4000)}`, { cause: err });
    });
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
