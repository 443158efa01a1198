import { LOCAL_WINDOW_BYTES } from '../agent/flow_window.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { afterEach, beforeEach } from 'vitest';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeAccess } from '../agent/kube/kube_access.ts';
import { createLogger } from '../agent/log.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import type { LogRecord } from '../agent/record.ts';
import { kubernetesEventsConfig } from '../agent/sources/kubernetes_events/config.ts';
import { KubernetesEventsSource } from '../agent/sources/kubernetes_events/source.ts';
import { waitFor } from './helpers/child_agent.ts';
import { FakeKubeApiServer, writeKubeconfig, type FakeKubeApiServerOptions } from '../agent/demo/kube_api_server.ts';

/** One in-process agent reduced to the kubernetes_events source: its own metrics registry, API connection and record sink. */
export interface EventsAgent {
  source: KubernetesEventsSource;
  metrics: SelfMetrics;
  records: LogRecord[];
  logs: string[];
  /** While false, emitted batches are held unaccepted (a slow output). */
  accepting: boolean;
  stop(): Promise<void>;
}

export class EventsHarness {
  readonly api: FakeKubeApiServer;
  readonly dir: string;
  private kubeconfig = '';
  private readonly agents: EventsAgent[] = [];

  constructor(options: FakeKubeApiServerOptions = {}) {
    this.api = new FakeKubeApiServer({ managedFields: false, ...options });
    this.dir = mkdtempSync(join(tmpdir(), 'kta-events-'));
  }

  async start(): Promise<void> {
    const url = await this.api.start();
    this.kubeconfig = writeKubeconfig(this.dir, { server: url, insecure: true });
  }

  /** An agent with data_dir `<dir>/<name>` (same name: same checkpoints, i.e. a restart). */
  async agent(name: string, config: Record<string, unknown> = {}): Promise<EventsAgent> {
    const metrics = new SelfMetrics('test');
    const logs: string[] = [];
    const log = createLogger('info', (l) => void logs.push(l));
    const kube = new KubeAccess({ mode: 'kubeconfig', kubeconfig: this.kubeconfig }, log);
    const records: LogRecord[] = [];
    const held: (() => void)[] = [];
    const a: EventsAgent = {
      source: undefined as unknown as KubernetesEventsSource,
      metrics,
      records,
      logs,
      accepting: true,
      stop: async () => {
        await a.source.stopReading();
        await a.source.settled(2000);
        await a.source.close();
        await kube.close();
      },
    };
    const emitter = {
      emit: (batch: LogRecord[], _bytes: number, onAccepted: () => void) => {
        records.push(...batch);
        if (a.accepting) onAccepted();
        else held.push(onAccepted);
        return Promise.resolve();
      },
    };
    a.source = new KubernetesEventsSource(
      name,
      kubernetesEventsConfig.parse({ type: 'kubernetes_events', identity: name, lease_duration: '3s', renew_deadline: '2s', retry_period: '250ms', ...config }),
      { nodeName: name, dataDir: join(this.dir, name), metrics, log, emitter, kube, unackedWindow: () => LOCAL_WINDOW_BYTES },
    );
    await a.source.start();
    this.agents.push(a);
    return a;
  }

  /** Resolves once an events watch is open (what is created after this is counted). */
  watching(path = '/apis/events.k8s.io/v1/events'): Promise<unknown> {
    return waitFor('an events watch', () => this.api.requests.some((r) => r.verb === 'watch' && r.path === path && r.status === 200), 10_000, 20);
  }

  async close(): Promise<void> {
    await this.api.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A fresh harness (fake API, scratch folder) for every test of the calling suite. */
export function harnessPerTest(options: FakeKubeApiServerOptions = {}): () => EventsHarness {
  let h: EventsHarness | undefined;
  beforeEach(async () => {
    h = new EventsHarness(options);
    await h.start();
  });
  afterEach(async () => {
    await h?.close();
  });
  return () => h!;
}

/** The value of one series of a counter or gauge (0 when absent); `labels` must match exactly. */
export async function metricValue(metrics: SelfMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = metrics.registry.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  const want = JSON.stringify(Object.entries(labels).sort());
  const hit = values.find((v) => JSON.stringify(Object.entries(v.labels).sort()) === want);
  return hit?.value ?? 0;
}

/** Every series of a metric as `{labels...}=value` lines, sorted (for exact assertions). */
export async function series(metrics: SelfMetrics, name: string): Promise<string[]> {
  const m = metrics.registry.getSingleMetric(name);
  if (!m) return [];
  const { values } = await m.get();
  return values
    .filter((v) => !('metricName' in v) || v.metricName === name)
    .map((v) => `${Object.entries(v.labels).sort(([x], [y]) => (x < y ? -1 : 1)).map(([k, x]) => `${k}=${x}`).join(',')} ${v.value}`)
    .sort();
}
