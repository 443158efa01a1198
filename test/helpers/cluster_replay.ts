import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, type TestContext } from 'vitest';
import { clusterSignalsConfig } from '../../agent/cluster/cluster_config.ts';
import { ClusterSignals } from '../../agent/cluster/cluster_signals.ts';
import type { EventOccurrence } from '../../agent/cluster/observation.ts';
import { KubeAccess } from '../../agent/kube/kube_access.ts';
import { createLogger } from '../../agent/log.ts';
import { SelfMetrics } from '../../agent/metrics.ts';
import { FakeKubeApiServer, writeKubeconfig, type FakeObject } from '../../agent/demo/kube_api_server.ts';
import { OtlpReceiver, type ReceivedSpan } from '../../agent/demo/otlp_receiver.ts';
import { waitFor } from './child_agent.ts';
import { ReportWindow } from '../../agent/cluster/report_window.ts';

/** The sequences' time zero, one second, and the fake cluster's uid (its kube-system namespace). */
export const T = Date.parse('2026-11-21T10:00:00Z');
export const S = 1000;
export const CLUSTER_UID = '6b1f1e5c-0000-4000-8000-00000000c1a5';

/** A scratch folder for the suite and a `start` for each test's replay, closed after the test. */
export function replaySuite(name: string): (startMs: number, config?: Record<string, unknown>) => Promise<ClusterReplay> {
  const dir = mkdtempSync(join(tmpdir(), `kta-cluster-${name}-`));
  let replay: ClusterReplay | undefined;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await replay?.close();
    replay = undefined;
  });
  return async (startMs, config = {}) => (replay = await new ClusterReplay(dir, startMs, config).start());
}

/**
 * Replays a recorded sequence of object states and Event occurrences against the cluster trackers:
 * objects go through the fake API server and the trackers' own watches, events through the sink,
 * the trackers' clock is the sequence's time, spans go out over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT)
 * to the receiver fake. `restart()` ends one agent incarnation and starts the next at the current time.
 */
export class ClusterReplay {
  readonly fake = new FakeKubeApiServer({ token: 'replay-token' });
  receiver!: OtlpReceiver;
  now: number;
  readonly incarnations: { signals: ClusterSignals; metrics: SelfMetrics; kube: KubeAccess }[] = [];
  readonly logs: string[] = [];
  private kubeconfig = '';
  private readonly dir: string;
  private readonly config: Record<string, unknown>;

  constructor(dir: string, startMs: number, config: Record<string, unknown> = {}) {
    this.dir = dir;
    this.now = startMs;
    this.config = config;
  }

  async start(): Promise<this> {
    await this.fake.start();
    this.receiver = await OtlpReceiver.start();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = this.receiver.url;
    this.kubeconfig = writeKubeconfig(this.dir, { server: this.fake.url, token: 'replay-token', insecure: true }, `kubeconfig-${Math.random().toString(36).slice(2)}`);
    this.fake.create('namespaces', { metadata: { name: 'kube-system', uid: CLUSTER_UID } });
    await this.boot();
    return this;
  }

  get current(): ClusterSignals {
    return this.incarnations.at(-1)!.signals;
  }

  private async boot(): Promise<void> {
    const log = createLogger('warn', (l) => void this.logs.push(l));
    const kube = new KubeAccess({ mode: 'kubeconfig', kubeconfig: this.kubeconfig }, log);
    const metrics = new SelfMetrics('test');
    const signals = new ClusterSignals(clusterSignalsConfig.parse({ cluster_name: 'replay', ...this.config }), { nodeName: 'node-a', metrics, log, kube }, {
      nodeWindow: new ReportWindow(ReportWindow.startingAt(this.now), { hold: false }),
      leaderWindow: new ReportWindow(ReportWindow.startingAt(this.now), { hold: false }),
      clock: () => this.now,
      sweepIntervalMs: 20,
      watch: { backoff: { initialMs: 20, maxMs: 200 }, idleTimeoutMs: 10_000 },
    });
    this.incarnations.push({ signals, metrics, kube });
    await Promise.all([signals.nodeLocal.start(), signals.leaderOnly.start()]);
    await signals.whenSynced();
  }

  /** The agent stops (spans in flight are flushed, as on SIGTERM) and a new one starts now. */
  async restart(): Promise<void> {
    await this.stopCurrent();
    await this.boot();
  }

  private async stopCurrent(): Promise<void> {
    const inc = this.incarnations.at(-1);
    if (!inc) return;
    await inc.signals.close();
    await inc.kube.close();
  }

  async close(): Promise<void> {
    await this.stopCurrent();
    await this.receiver?.close();
    await this.fake.close();
  }

  /** Creates or replaces an object and waits until the trackers' watch has it. */
  async put(resource: string, obj: FakeObject): Promise<FakeObject> {
    const ns = obj.metadata.namespace;
    const exists = this.fake.get(resource, ns, obj.metadata.name);
    const stored = exists ? this.fake.update(resource, { ...obj, metadata: { ...obj.metadata, uid: exists.metadata.uid } }) : this.fake.create(resource, obj);
    await this.caughtUp(resource, stored.metadata.resourceVersion!);
    return stored;
  }

  async remove(resource: string, namespace: string | undefined, name: string, at: number): Promise<void> {
    this.fake.modify(resource, namespace, name, (o) => void (o.metadata.deletionTimestamp = new Date(at).toISOString().replace(/\.\d+Z$/, 'Z')));
    const last = this.fake.delete(resource, namespace, name)!;
    await this.caughtUp(resource, last.metadata.resourceVersion!);
  }

  private async caughtUp(resource: string, rv: string): Promise<void> {
    await waitFor(`${resource} watch at resourceVersion ${rv}`, () => this.current.seen(resource, rv), 10_000, 10);
  }

  event(ev: EventOccurrence): void {
    this.current.sink.onEvent(ev);
  }

  /** Moves the sequence's clock and lets one timeout sweep run. */
  async advanceTo(ms: number): Promise<void> {
    this.now = ms;
    await new Promise((r) => setTimeout(r, 60));
  }

  /** Flushes the running agent's spans and waits until `n` have arrived in total. */
  async spans(n: number): Promise<ReceivedSpan[]> {
    await this.current.flush();
    return waitFor(`${n} span(s) at the OTLP receiver (have ${this.receiver.spans.length})`, () => this.receiver.spans.length >= n && this.receiver.spans, 10_000);
  }

  /** A sample's value summed over every incarnation (each has its own registry, as restarted processes do). */
  async value(name: string, labels: Record<string, string> = {}): Promise<number> {
    let total = 0;
    for (const { metrics } of this.incarnations) {
      for (const m of await metrics.registry.getMetricsAsJSON()) {
        for (const v of m.values as { value: number; labels: Record<string, string | number>; metricName?: string }[]) {
          if ((v.metricName ?? m.name) !== name) continue;
          if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) total += v.value;
        }
      }
    }
    return total;
  }
}

export function spanTree(spans: ReceivedSpan[]): { byName: (name: string) => ReceivedSpan[]; one: (name: string) => ReceivedSpan } {
  const byName = (name: string) => spans.filter((s) => s.name === name);
  return {
    byName,
    one: (name) => {
      const found = byName(name);
      if (found.length !== 1) throw new Error(`expected one ${name} span, got ${found.length}: ${spans.map((s) => s.name).join(', ')}`);
      return found[0]!;
    },
  };
}

export const seconds = (s: ReceivedSpan): number => Number((BigInt(s.endTimeUnixNano) - BigInt(s.startTimeUnixNano)) / 1_000_000n) / 1000;

export function promtoolCheck(ctx: TestContext, text: string): void {
  const r0 = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
  const path = r0.stdout.trim();
  if (!path) {
    const message = 'promtool not installed (apt-get install prometheus)';
    if (process.env.CI) throw new Error(message);
    console.warn(`skipping promtool check in "${ctx.task.name}": ${message}`);
    ctx.skip(message);
    return;
  }
  const r = spawnSync(path, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`promtool check metrics exited ${r.status}:\n${r.stdout}${r.stderr}`);
}
