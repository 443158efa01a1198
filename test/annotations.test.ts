import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { steeringFor } from '../agent/enrichment/pod_annotations.ts';
import { FakeKubeApiServer, makePod, uid, writeKubeconfig } from '../agent/demo/kube_api_server.ts';
import { AgentHarness, criLines, SOURCE, type ContainerLog } from './helpers/agent_harness.ts';

/** Pod annotations that steer the agent: exclude a pod or a container, pick a parser. */

const NODE = 'test-node';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('steeringFor', () => {
  it('lets a container annotation win over the pod one, and reports values it cannot use', () => {
    const a = {
      'telemetry-agent.io/exclude': 'true',
      'telemetry-agent.io/exclude-sidecar': 'false',
      'telemetry-agent.io/parser': 'JSON',
      'telemetry-agent.io/parser-proxy': 'logfmt',
      'telemetry-agent.io/parser-db': 'yaml',
    };
    expect(steeringFor(a, 'app')).toEqual({ exclude: true, parser: 'json', invalid: [] });
    expect(steeringFor(a, 'sidecar')).toEqual({ exclude: false, parser: 'json', invalid: [] });
    expect(steeringFor(a, 'proxy')).toEqual({ exclude: true, parser: 'logfmt', invalid: [] });
    expect(steeringFor(a, 'db')).toEqual({ exclude: true, parser: 'json', invalid: ['telemetry-agent.io/parser-db="yaml"'] });
    expect(steeringFor({ 'telemetry-agent.io/exclude': 'yes' }, 'app')).toEqual({ exclude: false, parser: undefined, invalid: ['telemetry-agent.io/exclude="yes"'] });
    expect(steeringFor(undefined, 'app').exclude).toBe(false);
  });
});

describe('pod annotations in the running agent', () => {
  it('drops excluded pods and containers (counted, checkpointed) and parses by annotation', async () => {
    const fake = new FakeKubeApiServer();
    await fake.start();
    cleanups.push(() => fake.close());
    // A long wait: records go out as soon as their pod is known, however busy the machine.
    const h = new AgentHarness({ kubernetes: { mode: 'kubeconfig' }, source: { kubernetes_metadata: { wait_for_pod: '30s' } } });
    cleanups.push(() => h.stop());
    (h as unknown as { kubernetes: Record<string, string> }).kubernetes.kubeconfig = writeKubeconfig(h.tree.root, { server: fake.url, insecure: true });

    const logs: ContainerLog[] = [];
    const pod = (name: string, containers: string[], annotations: Record<string, string>, body: (c: string) => string[]) => {
      const p = fake.create('pods', makePod({ uid: uid(), name, namespace: 'shop', nodeName: NODE, containers, annotations }));
      for (const c of containers) logs.push(h.tree.container({ namespace: 'shop', pod: name, uid: p.metadata.uid!, container: c, content: criLines(body(c)) }));
    };
    const json = (c: string) => [`{"level":"warn","msg":"from ${c}"}`, `{"level":"error","msg":"again ${c}"}`];
    const logfmt = (c: string) => [`level=info msg="from ${c}"`, `level=debug msg="again ${c}"`];
    pod('all-out', ['app', 'sidecar'], { 'telemetry-agent.io/exclude': 'true' }, json);
    pod('one-out', ['app', 'sidecar'], { 'telemetry-agent.io/exclude-sidecar': 'true' }, json);
    pod('keep-sidecar', ['app', 'sidecar'], { 'telemetry-agent.io/exclude': 'true', 'telemetry-agent.io/exclude-sidecar': 'false' }, json);
    pod('parsed', ['app', 'proxy'], { 'telemetry-agent.io/parser': 'json', 'telemetry-agent.io/parser-proxy': 'logfmt' }, (c) => (c === 'proxy' ? logfmt(c) : json(c)));
    pod('plain', ['app'], {}, json);
    pod('bad-value', ['app'], { 'telemetry-agent.io/parser': 'yaml' }, json);
    await h.start();

    // 6 kept containers x 2 lines
    const records = await h.waitForLines(12);
    const seen = records.map((r) => `${r.resource['k8s.pod.name']}/${r.resource['k8s.container.name']}`);
    expect(new Set(seen)).toEqual(new Set(['one-out/app', 'keep-sidecar/sidecar', 'parsed/app', 'parsed/proxy', 'plain/app', 'bad-value/app']));
    const of = (podName: string, c: string) => records.filter((r) => r.resource['k8s.pod.name'] === podName && r.resource['k8s.container.name'] === c);
    expect(of('parsed', 'app').map((r) => [r.body, r.severity_text])).toEqual([
      [{ level: 'warn', msg: 'from app' }, 'warn'],
      [{ level: 'error', msg: 'again app' }, 'error'],
    ]);
    expect(of('parsed', 'proxy').map((r) => [r.body, r.severity_text])).toEqual([
      [{ level: 'info', msg: 'from proxy' }, 'info'],
      [{ level: 'debug', msg: 'again proxy' }, 'debug'],
    ]);
    // no annotation, source parser `none`: the text as it was
    expect(of('plain', 'app').map((r) => r.body)).toEqual(json('app'));
    expect(of('bad-value', 'app').map((r) => r.body)).toEqual(json('app'));
    await h.waitFor('a warning about the annotation', () => h.logs.some((l) => l.includes('telemetry-agent.io/parser="yaml"')));

    expect(await h.metric('telemetry_agent_dropped_records_total', { component: SOURCE, reason: 'excluded' })).toBe(8);
    // excluded lines are acknowledged: the checkpoint moves to the end of every file
    const checkpoint = join(h.tree.dataDir, 'checkpoints', `${SOURCE}.json`);
    await h.waitFor('checkpoints at the end of every file', () => {
      let files: { path: string; offset: number }[];
      try {
        files = Object.values((JSON.parse(readFileSync(checkpoint, 'utf8')) as { files: Record<string, { path: string; offset: number }> }).files);
      } catch {
        return false;
      }
      return logs.every((l) => files.some((f) => (f.path === l.linkPath || f.path === l.logPath) && f.offset === statSync(l.logPath).size));
    });
  }, 30_000);
});
