import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NodeSimulator, Rng, type ContainerLog } from '../agent/demo/node_simulator.ts';
import { CHECKPOINT_EVERY_BYTES } from '../agent/sources/container_logs/source.ts';
import { NdjsonReceiver } from './fakes/ndjson_receiver.ts';
import { scrapeMetric } from './helpers/agent_harness.ts';
import { ChildAgent, freePort, suiteScratch, waitFor } from './helpers/child_agent.ts';

/**
 * The delivery promise against a receiver that misbehaves in every way issue 4 lists, one after
 * another, while 8 containers keep logging: 500s, 429 with Retry-After, reset connections, a
 * receiver taking 10 s per request, then down for 60 s, during which the disk buffer fills up
 * (`when_full: block`: the tailer stops reading, the logs wait on disk) and the agent is killed
 * with `kill -9`. After the restart and the receiver's return every line must arrive; duplicates
 * are bounded by one batch per fault plus what the crash re-reads (the source checkpoint's lag).
 */
const SEED = Number(process.env.E2E_SEED ?? Date.now() % 1_000_000);
const BATCH_EVENTS = 500;

describe(`end to end: an http receiver failing in every way, a full disk buffer and kill -9 (seed ${SEED})`, () => {
  const { root, onCleanup } = suiteScratch('kta-e2e-out-', 'E2E_KEEP');

  it('delivers every line through 500, 429, resets, a slow receiver, a 60 s outage and a crash', async () => {
    const rng = new Rng(SEED);
    const sim = new NodeSimulator({ root: join(root, 'node'), clock: 'wall', seed: SEED, maxFiles: 100, keepDeadContainers: 0 });
    const receiver = await NdjsonReceiver.start();
    onCleanup(() => void receiver.close());
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const configPath = join(root, 'agent.yaml');
    writeFileSync(
      configPath,
      `node_name: e2e-node
data_dir: ${join(root, 'data')}
shutdown_timeout: 5s
server: { listen: "127.0.0.1:${port}" }
kubernetes: { mode: disabled }
sources:
  containers:
    type: container_logs
    include: [${sim.containersDir}/*.log]
    glob_interval: 200ms
    poll_interval: 200ms
    checkpoint_interval: 500ms
outputs:
  receiver:
    type: http
    inputs: [containers]
    endpoint: ${receiver.url}/ingest
    timeout: 15s
    buffer: { type: disk, max_size: 4MiB, when_full: block }
    batch: { max_events: ${BATCH_EVENTS}, timeout: 200ms }
    retry: { initial: 100ms, max: 2s }
`,
    );

    const containers: ContainerLog[] = [];
    for (let p = 0; p < 4; p++) containers.push(...sim.createPod({ namespace: 'shop', name: `web-${p}`, containers: ['app', 'proxy'] }).containers);
    const written: string[] = [];
    let writing = true;
    const writer = (async () => {
      while (writing) {
        for (let i = 0; i < 20; i++) {
          const c = containers[rng.int(0, containers.length - 1)]!;
          const id = `${c.pod}/${c.container}#${written.length}`;
          sim.writeLine(c, `id=${id} path=/api/cart status=200 took=${rng.int(1, 900)}ms ${'x'.repeat(rng.int(0, 100))}`, 'stdout');
          written.push(id);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    let agent = new ChildAgent(configPath);
    onCleanup(() => agent.proc?.kill('SIGKILL'));
    agent.start();
    await agent.ready(port);
    const delivered = () => receiver.records.length;
    const seen = async (n: number, what: string) => waitFor(what, () => delivered() >= n, 60_000);
    await seen(1000, 'a first thousand records');

    let faults = 0;
    const phase = async (what: string, inject: () => void, count: number) => {
      inject();
      faults += count;
      const before = delivered();
      await seen(before + 1000, `records after ${what}`);
    };
    await phase('five 500s', () => receiver.server.inject({ status: 500, body: 'internal error' }, 5), 5);
    await phase('three 429s', () => receiver.server.inject({ status: 429, headers: { 'retry-after': '1' }, body: 'slow down' }, 3), 3);
    await phase('three resets', () => receiver.server.inject({ reset: true }, 3), 3);
    await phase('two 10 s requests', () => receiver.server.inject({ delayMs: 10_000 }, 2), 2);
    const retries = await scrapeMetric(base, 'telemetry_agent_output_retries_total', { output: 'receiver' });
    expect(retries).toBeGreaterThanOrEqual(11);

    // Down for 60 s. The disk buffer fills (4 MiB), then the source blocks; kill -9 at ~45 s.
    await receiver.server.down();
    faults++;
    const downAt = Date.now();
    let lastBytes: number | undefined;
    const full = await waitFor(
      'the disk buffer to fill',
      async () => {
        const bytes = await scrapeMetric(base, 'telemetry_agent_buffer_bytes', { output: 'receiver', type: 'disk' });
        lastBytes = bytes;
        // max_size counts segment files, and the segment being written may still hold up to a
        // segment (1 MiB here) of records already delivered: unacknowledged bytes top out above 2 MiB.
        return bytes !== undefined && bytes > 2 * 1024 * 1024 ? bytes : undefined;
      },
      40_000,
      250,
    ).catch(async (err: Error) => {
      const text = await (await fetch(`${base}/metrics`)).text();
      throw new Error(`${err.message} (buffer bytes ${lastBytes}):\n${text.split('\n').filter((l) => /telemetry_agent_(buffer|output|source|tail)/.test(l) && !l.startsWith('#')).join('\n')}\n${agent.stderr.slice(-2000)}`);
    });
    expect(full).toBeLessThanOrEqual(4 * 1024 * 1024);
    await waitFor('the source to fall behind', async () => ((await scrapeMetric(base, 'telemetry_agent_tail_lag_bytes', { source: 'containers' })) ?? 0) > 100_000, 20_000, 250);
    while (Date.now() - downAt < 45_000) await new Promise((r) => setTimeout(r, 250));
    expect(await agent.kill('SIGKILL')).toBe('SIGKILL');
    faults++;
    agent = new ChildAgent(configPath);
    agent.start();
    await agent.ready(port);
    while (Date.now() - downAt < 60_000) await new Promise((r) => setTimeout(r, 250));
    await receiver.server.up();

    writing = false;
    await writer;
    await waitFor('every line', () => new Set(receiver.records.map((r) => /id=(\S+)/.exec(String(r.body))?.[1])).size >= written.length, 90_000, 250);

    const counts = new Map<string, number>();
    for (const r of receiver.records) {
      const id = /id=(\S+)/.exec(String(r.body))?.[1];
      expect(id, `a record without an id: ${JSON.stringify(r).slice(0, 200)}`).toBeDefined();
      counts.set(id!, (counts.get(id!) ?? 0) + 1);
    }
    expect(written.filter((id) => !counts.has(id))).toEqual([]);
    expect(counts.size).toBe(written.length);
    let duplicates = 0;
    for (const n of counts.values()) duplicates += n - 1;
    // Each line is at least ~60 raw bytes: what a crash can re-read past the last checkpoint save is bounded in lines too.
    const crashBound = Math.ceil(CHECKPOINT_EVERY_BYTES / 60);
    console.log(`output faults e2e seed ${SEED}: ${written.length} lines, ${receiver.records.length} received, ${duplicates} duplicates, ${faults} faults`);
    expect(duplicates).toBeLessThanOrEqual(faults * BATCH_EVENTS + crashBound);

    // Every record is the design.md shape with the file-name metadata.
    const sample = receiver.records.at(-1)!;
    expect(Object.keys(sample).sort()).toEqual(['attributes', 'body', 'observed_timestamp', 'resource', 'timestamp']);
    expect((sample.resource as Record<string, string>)['k8s.namespace.name']).toBe('shop');
    expect(await agent.kill('SIGTERM')).toBe(0);
  }, 240_000);

  it('an output that is down holds up only the sources that feed it; the other output keeps delivering', async () => {
    const sim = new NodeSimulator({ root: join(root, 'node2'), clock: 'wall', seed: SEED, maxFiles: 100, keepDeadContainers: 0 });
    const down = await NdjsonReceiver.start();
    const up = await NdjsonReceiver.start();
    onCleanup(() => void down.close());
    onCleanup(() => void up.close());
    await down.server.down();
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const configPath = join(root, 'agent2.yaml');
    const shop = sim.createPod({ namespace: 'shop', name: 'web-0', containers: ['app'] }).containers[0]!;
    const infra = sim.createPod({ namespace: 'infra', name: 'dns-0', containers: ['app'] }).containers[0]!;
    writeFileSync(
      configPath,
      `node_name: e2e-node
data_dir: ${join(root, 'data2')}
shutdown_timeout: 2s
server: { listen: "127.0.0.1:${port}" }
kubernetes: { mode: disabled }
sources:
  shop: { type: container_logs, include: [${sim.containersDir}/web-0_*.log], glob_interval: 200ms, poll_interval: 200ms }
  both: { type: container_logs, include: [${sim.containersDir}/dns-0_*.log], glob_interval: 200ms, poll_interval: 200ms }
outputs:
  down:
    type: http
    inputs: [shop]
    endpoint: ${down.url}/
    buffer: { type: memory, max_size: 64KiB, when_full: block }
    batch: { timeout: 100ms }
    retry: { initial: 100ms, max: 500ms }
  up:
    type: http
    inputs: [shop, both]
    endpoint: ${up.url}/
    batch: { timeout: 100ms }
`,
    );
    const agent = new ChildAgent(configPath);
    onCleanup(() => agent.proc?.kill('SIGKILL'));
    agent.start();
    await agent.ready(port);
    // shop's lines fill the down output's 64 KiB buffer, then the shop source pauses; infra's lines,
    // which only the healthy output takes, keep flowing all along.
    const N = 3000;
    for (let i = 0; i < N; i++) {
      sim.writeLine(shop, `shop ${i} ${'s'.repeat(100)}`, 'stdout');
      sim.writeLine(infra, `infra ${i}`, 'stdout');
    }
    const bodies = (r: NdjsonReceiver, prefix: string) => r.records.map((x) => String(x.body)).filter((b) => b.startsWith(prefix));
    await waitFor('every infra line at the healthy output', () => bodies(up, 'infra ').length >= N, 30_000);
    expect(bodies(up, 'infra ')).toEqual(Array.from({ length: N }, (_, i) => `infra ${i}`));
    // The shop source is paused by the full buffer: the healthy output has only what was read before.
    const shopSeen = bodies(up, 'shop ').length;
    expect(shopSeen).toBeLessThan(N);
    // The lag gauge follows the files at every poll (poll_interval).
    await waitFor('the shop source to fall behind', async () => ((await scrapeMetric(base, 'telemetry_agent_tail_lag_bytes', { source: 'shop' })) ?? 0) > 0, 10_000);
    // The down output's buffer holds what it had room for: something, and never more than max_size
    // (the read that did not fit waits in the source).
    const held = await scrapeMetric(base, 'telemetry_agent_buffer_bytes', { output: 'down', type: 'memory' });
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(64 * 1024);
    // The receiver comes back: both outputs get every shop line.
    await down.server.up();
    await waitFor('every shop line at both outputs', () => bodies(down, 'shop ').length >= N && bodies(up, 'shop ').length >= N, 60_000);
    const want = Array.from({ length: N }, (_, i) => `shop ${i} ${'s'.repeat(100)}`);
    expect(bodies(down, 'shop ')).toEqual(want);
    expect(bodies(up, 'shop ')).toEqual(want);
    expect(await agent.kill('SIGTERM')).toBe(0);
  }, 120_000);
});
