import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../agent.ts';
import { parseConfig } from '../config/load.ts';
import { runUntilSignal } from '../lifecycle.ts';
import { createLogger } from '../log.ts';
import { sampleValue } from '../status/prom_text.ts';
import { onPath } from '../executables.ts';
import { ClusterStory } from './cluster_story.ts';
import { FakeKubeApiServer, writeKubeconfig } from './kube_api_server.ts';
import { EXCLUDED_POD, NodePods } from './node_pods.ts';
import { NodeSimulator, type ContainerLog } from './node_simulator.ts';
import { OtlpReceiver, type ReceivedLog, type ReceivedSpan } from './otlp_receiver.ts';

export const DEMO_HELP = `npm start [-- OPTIONS]   (or: npx telemetry-agent demo [OPTIONS])

The whole mission of kube-telemetry-agent on this machine, no cluster needed. Everything runs in
this one process; Ctrl-C stops all of it.

What runs
  a simulated node        pods writing container logs as containerd does: JSON, logfmt and plain
                          lines, partial lines, Java and Python stack traces, rotation, a worker that
                          crashes and restarts, short-lived job pods
  a simulated API server  this node's pods with labels, owners and annotations (one picks the json
                          parser, one logfmt, one excludes a noisy pod), and a scripted cluster story
                          of about 40 s: a rollout; a bad image (ErrImagePull, ImagePullBackOff) and
                          its rollback; a claim provisioned and one that fails; a node NotReady with
                          its pods evicted
  the agent               container logs enriched with pod metadata, JSON/logfmt/multiline parsing;
                          the node's journal where journalctl and journal files exist (the console
                          says so when they do not); cluster Events -> k8s_* metrics and spans;
                          outputs: otlp (behind a disk buffer) and a local file archive
  an embedded receiver    OTLP/HTTP, for the logs and the spans; it goes away for 8 s during the
                          story and comes back: the disk buffer holds what is read meanwhile and
                          delivers it, nothing lost

What to look at while it runs (the console says where)
  /status                 the status page: pipeline graph with live rates, errors, buffer fill and
                          tail lag; the latest spans as a waterfall; a live tap of records
  /metrics                telemetry_agent_* and k8s_* metrics
  telemetry-agent top     per-component rates, errors, buffer and lag in the terminal
  telemetry-agent tap containers   the records as they leave the source: parsed, with pod metadata

Options
  --seconds N     stop after N seconds, as Ctrl-C would
  --port N        the agent's port (default 9464, or $DEMO_PORT; 0 picks a free one)
  --record DIR    keep what the receiver got (received-logs.ndjson, received-spans.ndjson) and
                  the archive (archive.ndjson) in DIR
  --records       also print every record on the console, as text
`;

export interface DemoOptions {
  seconds?: number;
  port?: number;
  record?: string;
  records?: boolean;
  out?: (line: string) => void;
}

const NODE = 'demo-node';
/** When, in the story, the receiver goes away and comes back (seconds after the story's start). */
const OUTAGE = { from: 10, to: 18 };

/**
 * `npm start`: the node simulator, the simulated API with the cluster story, the embedded receiver
 * and the agent, in one process, with a short narration on stdout (the agent's own log goes to
 * stderr, warnings and errors only).
 */
export async function runDemo(opts: DemoOptions = {}): Promise<number> {
  const out = opts.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const began = Date.now();
  const clock = () => {
    const s = Math.floor((Date.now() - began) / 1000);
    return `[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}]`;
  };
  const say = (text: string) => out(`${clock()} ${text}`);

  const root = mkdtempSync(join(tmpdir(), 'telemetry-agent-demo-'));
  const record = opts.record;
  if (record) mkdirSync(record, { recursive: true });
  const port = opts.port ?? Number(process.env.DEMO_PORT ?? 9464);

  const api = new FakeKubeApiServer();
  await api.start();
  api.create('namespaces', { metadata: { name: 'kube-system', uid: '7f3a1c2e-5d4b-4e6f-8a9b-0c1d2e3f4a5b' } });
  const sim = new NodeSimulator({ root, clock: 'wall', seed: Date.now() % 100_000 });
  const story = new ClusterStory(api, NODE, (_at, text) => say(text));
  story.seed(Date.now());
  const loadgen = sim.createPod({ namespace: EXCLUDED_POD.namespace, name: EXCLUDED_POD.name, containers: [EXCLUDED_POD.container] }).containers[0]!;
  const pods = new NodePods(api, sim, NODE);
  pods.sync();

  const logs = await OtlpReceiver.start();
  const traces = await OtlpReceiver.start();
  // The agent's span exporter reads these when it is created; a short export delay shows spans soon after each step.
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = traces.url;
  process.env.OTEL_BSP_SCHEDULE_DELAY ??= '1000';

  const journal = journalPlan();
  // Logs pass a redact transform (credentials and e-mail addresses out); cluster events go straight on.
  const logInputs = ['containers', ...(journal.dirs ? ['journal'] : [])];
  const inputs = ['scrub', 'cluster'];
  const archive = join(record ?? root, 'archive.ndjson');
  const config = parseConfig(
    `
node_name: ${NODE}
data_dir: ${JSON.stringify(join(root, 'data'))}
shutdown_timeout: 10s
server:
  listen: 127.0.0.1:${port}
  status_page: true
kubernetes:
  mode: kubeconfig
  kubeconfig: ${JSON.stringify(writeKubeconfig(root, { server: api.url, insecure: true }))}
sources:
  containers:
    type: container_logs
    include: [${JSON.stringify(join(root, 'var/log/containers', '*.log'))}]
    exclude: []
    glob_interval: 500ms
    partial_timeout: 2s
    rotate_wait: 2s
    multiline: { mode: auto }
  cluster:
    type: kubernetes_events
    leader_election: false
    signals:
      spans: true
      cluster_name: demo
      pvc_provisioning_timeout: 15s
      pod_startup_timeout: 25s
${journal.dirs ? `  journal:\n    type: journald\n    directories: ${JSON.stringify(journal.dirs)}\n    read_from: end\n` : ''}transforms:
  scrub:
    type: redact
    inputs: ${JSON.stringify(logInputs)}
outputs:
  receiver:
    type: otlp
    inputs: ${JSON.stringify(inputs)}
    endpoint: ${logs.url}
    buffer: { type: disk, max_size: 256MiB }
    retry: { initial: 250ms, max: 2s }
  archive:
    type: file
    inputs: ${JSON.stringify(inputs)}
    path: ${JSON.stringify(archive)}
${opts.records ? `  console:\n    type: stdout\n    inputs: ${JSON.stringify(inputs)}\n    encoding: text\n` : ''}`,
    'demo config',
  );
  const agent = new Agent(config, createLogger('warn'));

  const stopping: (() => void)[] = [];
  const every = (ms: number, f: () => void) => {
    const t = setInterval(f, ms);
    t.unref();
    stopping.push(() => clearInterval(t));
  };
  const keep = (file: string, items: unknown[]) => {
    if (record && items.length > 0) appendFileSync(join(record, file), items.map((i) => JSON.stringify(i)).join('\n') + '\n');
  };

  let receivedLogs = 0;
  let receivedSpans = 0;
  const roots: ReceivedSpan[] = [];
  let outage: { downAt: number; upAt?: number; waited?: number } | undefined;
  const metric = async (name: string, labels: Record<string, string>) => sampleValue(await agent.metrics.registry.metrics(), name, labels) ?? 0;

  /** Takes what the receivers got since last time (their lists would grow for as long as the demo runs). */
  const drainReceivers = () => {
    const gotLogs: ReceivedLog[] = logs.logs.splice(0);
    const gotSpans: ReceivedSpan[] = traces.spans.splice(0);
    for (const r of [logs, traces]) {
      r.server.requests.splice(0);
      r.logRequests.splice(0);
      r.traceRequests.splice(0);
    }
    receivedLogs += gotLogs.length;
    receivedSpans += gotSpans.length;
    keep('received-logs.ndjson', gotLogs);
    keep('received-spans.ndjson', gotSpans);
    for (const s of gotSpans) if (!s.parentSpanId) roots.push(s);
    for (const s of roots.splice(0)) {
      const seconds = Number((BigInt(s.endTimeUnixNano) - BigInt(s.startTimeUnixNano)) / 1_000_000n) / 1000;
      const a = s.attributes;
      const what = a['k8s.deployment.name'] ?? a['k8s.pod.name'] ?? a['k8s.persistentvolumeclaim.name'] ?? a['k8s.node.name'] ?? '';
      const ns = a['k8s.namespace.name'] ? `${String(a['k8s.namespace.name'])}/` : '';
      const result = String(a['kta.result'] ?? (s.status.code === 2 ? 'error' : 'ok'));
      const status = s.status.code === 2 ? `${result}: ${s.status.message}` : result;
      say(`span      ${s.name} ${ns}${String(what)}: ${seconds} s, ${status} (from ${String(s.resource['service.name'])})`);
    }
  };

  const tick = () => {
    sim.demoTick();
    for (let i = 0; i < 3; i++) sim.writeLogfmt(loadgen as ContainerLog, { ts: new Date().toISOString(), level: 'debug', msg: 'synthetic request', n: Math.floor(Math.random() * 1e6) });
    pods.sync();
  };

  const afterStart = () => {
    // The pods start once the agent runs (on a node the pods were there before the agent; here its
    // first read would race its first LIST of them, which is not what the demo is about).
    tick();
    const base = `http://${agent.address!.address}:${agent.address!.port}`;
    out('kube-telemetry-agent demo: the whole mission on this machine, no cluster (Ctrl-C stops everything; npm start -- --help says more)');
    out(`  node      ${NODE}: ${sim.listPods().length} pods writing container logs under ${root}/var/log`);
    out(`  API       a simulated Kubernetes API at ${api.url}: this node's pods (labels, owners, annotations) and a cluster story`);
    out(`  journal   ${journal.say}`);
    out(`  outputs   receiver (otlp, disk buffer) -> the embedded receiver at ${logs.url}; archive (file) -> ${archive}`);
    out(`  look      ${base}/status   ${base}/metrics   npx telemetry-agent top --agent ${base}   npx telemetry-agent tap containers --agent ${base}`);

    const storyStart = Math.ceil((Date.now() + 2000) / 1000) * 1000;
    story.start(storyStart);
    const atStory = (s: number, f: () => void) => {
      const t = setTimeout(f, storyStart + s * 1000 - Date.now());
      t.unref();
      stopping.push(() => clearTimeout(t));
    };
    atStory(OUTAGE.from, () => {
      outage = { downAt: Date.now() };
      void logs.server.down();
      say(`receiver  the embedded log receiver goes away for ${OUTAGE.to - OUTAGE.from} s (connection refused): the otlp output retries, its disk buffer keeps what the agent reads`);
    });
    atStory(OUTAGE.to, () => {
      void logs.server.up().then(async () => {
        const waited = await metric('telemetry_agent_buffer_records', { output: 'receiver' });
        outage = { ...outage!, upAt: Date.now(), waited };
        say(`receiver  back after ${OUTAGE.to - OUTAGE.from} s: ${waited} records waited in the disk buffer`);
      });
    });
    atStory(story.lengthSeconds + 4, () => {
      say('story     done: the k8s_* metrics are on /metrics, the spans on the status page; logs keep flowing until Ctrl-C');
    });

    every(200, tick);
    every(500, () => {
      drainReceivers();
      if (outage?.upAt !== undefined && outage.waited !== undefined) {
        // Caught up: what still waits is only what was read in the last moment (a batch fills for up to 1 s).
        void metric('telemetry_agent_buffer_oldest_record_age_seconds', { output: 'receiver' }).then((age) => {
          if (age > 1.5 || outage?.upAt === undefined) return;
          const took = ((Date.now() - outage.upAt) / 1000).toFixed(1);
          say(`receiver  caught up ${took} s after it came back: the ${outage.waited} records of the outage delivered`);
          outage = undefined;
        });
      }
    });
    every(10_000, () => {
      void (async () => {
        const read = await metric('telemetry_agent_source_records_total', { source: 'containers' });
        const excluded = await metric('telemetry_agent_dropped_records_total', { component: 'containers', reason: 'excluded' });
        const archived = await metric('telemetry_agent_output_records_total', { output: 'archive', status: 'sent' });
        const held = await metric('telemetry_agent_buffer_records', { output: 'receiver' });
        say(`records   ${read} from containers, ${excluded} excluded (${EXCLUDED_POD.namespace}/${EXCLUDED_POD.name}); receiver has ${receivedLogs}, archive ${archived}, ${held} in the buffer; ${receivedSpans} spans`);
      })();
    });
  };

  if (opts.seconds !== undefined) setTimeout(() => process.kill(process.pid, 'SIGTERM'), opts.seconds * 1000).unref();
  try {
    return await runUntilSignal(agent, {
      afterStart,
      beforeStop: async () => {
        for (const s of stopping) s();
        story.stop();
        sim.stop();
        // The receiver is up again: let the disk buffer deliver what it holds, so the two outputs end equal.
        const until = Date.now() + 10_000;
        while (Date.now() < until && (await metric('telemetry_agent_buffer_records', { output: 'receiver' })) > 0) await sleep(100);
      },
    });
  } finally {
    drainReceivers();
    const archived = await metric('telemetry_agent_output_records_total', { output: 'archive', status: 'sent' });
    const verdict = receivedLogs >= archived ? 'nothing lost' : `${archived - receivedLogs} short of the archive`;
    out(`${clock()} stopped   the receiver got ${receivedLogs} records (${verdict}: the archive has ${archived}) and ${receivedSpans} spans${record ? `; kept in ${record}` : ''}`);
    sim.stop();
    await Promise.all([logs.close(), traces.close(), api.close()]);
    rmSync(root, { recursive: true, force: true });
  }
}

/** The node's journal, when there is one to read: journalctl on PATH and journal files in the usual folders. */
function journalPlan(): { dirs?: string[]; say: string } {
  const journalctl = onPath('journalctl');
  if (!journalctl) return { say: 'not read: journalctl is not installed here (the agent image has it; on a node it reads the host journal)' };
  const dirs = ['/var/log/journal', '/run/log/journal'].filter((d) => hasJournalFiles(d));
  if (dirs.length === 0) return { say: `not read: journalctl is here (${journalctl}) but /var/log/journal and /run/log/journal hold no journal files` };
  return { dirs, say: `${dirs.join(' and ')} with ${journalctl}, new entries from now on` };
}

function hasJournalFiles(dir: string): boolean {
  try {
    if (!statSync(dir).isDirectory()) return false;
    return readdirSync(dir, { recursive: true }).some((f) => String(f).endsWith('.journal'));
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

