import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NodeSimulator, Rng, type ContainerLog, type Stream } from '../agent/demo/node_simulator.ts';
import { parseConfig } from '../agent/config/load.ts';
import { autoUnackedWindow } from '../agent/flow_window.ts';
import { CHECKPOINT_EVERY_BYTES } from '../agent/sources/container_logs/source.ts';
import { ChildAgent, freePort, suiteScratch, waitFor } from './helpers/child_agent.ts';

/**
 * The delivery promise under fire: 52 containers log unique ids while they are rotated the kubelet
 * way, restarted, and one pod's symlinks are deleted; the agent is SIGKILLed twice at random
 * moments and restarted. Every line must come out, in order per container and stream, long lines
 * joined byte-exactly, with duplicates bounded by what one crash can repeat.
 */
const SEED = Number(process.env.E2E_SEED ?? Date.now() % 1_000_000);
const READ_CHUNK = 256 * 1024;

interface Expected {
  key: string; // instance/stream
  seq: number;
  body: string;
  incomplete: boolean;
}

describe(`end to end: rotation, restarts, deletions and two SIGKILLs (seed ${SEED})`, () => {
  const { root, onCleanup } = suiteScratch('kta-e2e-', 'E2E_KEEP');

  it('delivers every line, in order per container, joined exactly, duplicates bounded', async () => {
    const rng = new Rng(SEED);
    const sim = new NodeSimulator({ root: join(root, 'node'), clock: 'wall', seed: SEED, maxFiles: 1000, keepDeadContainers: 10 });
    const out = join(root, 'out.ndjson');
    const port = await freePort();
    const configPath = join(root, 'agent.yaml');
    writeFileSync(
      configPath,
      `node_name: e2e-node
data_dir: ${join(root, 'data')}
shutdown_timeout: 20s
server: { listen: "127.0.0.1:${port}" }
kubernetes: { mode: disabled }
sources:
  containers:
    type: container_logs
    include: [${sim.containersDir}/*.log]
    glob_interval: 200ms
    poll_interval: 200ms
    checkpoint_interval: 500ms
    rotate_wait: 1s
    partial_timeout: 2s
    read_chunk: ${READ_CHUNK}
outputs:
  out:
    type: file
    inputs: [containers]
    path: ${out}
`,
    );

    const containers: ContainerLog[] = [];
    for (let p = 0; p < 26; p++) {
      const pod = sim.createPod({ namespace: `ns${p % 4}`, name: `app-${p}`, containers: ['main', 'side'] });
      containers.push(...pod.containers);
    }
    const expected = new Map<string, Expected>(); // by unique id
    const seqs = new Map<string, number>();
    const instanceKey = (c: ContainerLog, stream: Stream) => `${c.namespace}/${c.pod}/${c.container}/${c.restartCount}/${stream}`;
    const write = (c: ContainerLog) => {
      const stream: Stream = rng.chance(0.3) ? 'stderr' : 'stdout';
      const key = instanceKey(c, stream);
      const seq = (seqs.get(key) ?? 0) + 1;
      seqs.set(key, seq);
      const id = `${key}#${seq}`;
      let body = `id=${id} msg="request handled" took=${rng.int(1, 900)}ms`;
      if (rng.chance(0.02)) body += ' payload=' + rng.chars('abcdefghijklmnopqrstuvwxyz0123456789', rng.int(17_000, 40_000));
      else if (rng.chance(0.05)) body += ' ünïcødé ✓ tab\there';
      sim.writeLine(c, body, stream);
      expected.set(id, { key, seq, body, incomplete: false });
    };

    const agent = new ChildAgent(configPath);
    onCleanup(() => agent.proc?.kill('SIGKILL'));
    agent.start();
    // Files rotated before the agent's very first scan are history it was never asked to read.
    await agent.ready(port);
    const crashes: number[] = [];
    const killAt = [rng.int(1500, 3000), rng.int(4500, 6500)];
    const started = Date.now();
    let deletedPod = false;
    let restarted = 0;
    let rotations = 0;
    for (let round = 0; Date.now() - started < 8000; round++) {
      for (const c of containers) if (rng.chance(0.5)) write(c);
      const elapsed = Date.now() - started;
      if (round % 10 === 5) {
        for (let i = 0; i < 5; i++) {
          sim.rotate(containers[rng.int(0, containers.length - 1)]!);
          rotations++;
        }
      }
      if (elapsed > 3000 && restarted < 5 && round % 7 === 0) {
        const i = rng.int(0, containers.length - 1);
        const old = containers[i]!;
        const partial = `id=exit-${old.pod}-${old.container}-${old.restartCount} last words without newline`;
        containers[i] = sim.restartContainer(old, { exitPartial: partial });
        expected.set(partial, { key: instanceKey(old, 'stdout') + '#exit', seq: 0, body: partial, incomplete: true });
        restarted++;
      }
      if (elapsed > 4000 && !deletedPod) {
        const victim = containers.filter((c) => c.pod === 'app-7');
        for (const c of victim) containers.splice(containers.indexOf(c), 1);
        sim.deletePod(victim[0]!.namespace, 'app-7');
        deletedPod = true;
      }
      if (killAt.length && elapsed > killAt[0]!) {
        killAt.shift();
        expect(await agent.kill('SIGKILL'), agent.stderr.slice(-3000)).toBe('SIGKILL');
        crashes.push(Date.now() - started);
        await new Promise((r) => setTimeout(r, rng.int(100, 600)));
        agent.start();
      }
      await new Promise((r) => setTimeout(r, 20));
    }

    // Everything written must arrive.
    const idOf = (body: string) => (body.startsWith('id=exit-') ? body : /^id=(\S+)/.exec(body)?.[1]);
    const missingNow = () => {
      const seen = new Set<string>();
      if (existsSync(out)) {
        for (const line of readFileSync(out, 'utf8').split('\n')) {
          const m = /"body":"(id=[^"]*)"/.exec(line);
          const id = m && idOf(m[1]!);
          if (id) seen.add(id);
        }
      }
      return [...expected.keys()].filter((id) => !seen.has(id));
    };
    await waitFor('every id in the output', () => missingNow().length === 0, 60_000, 250).catch((err: Error) => {
      const missing = missingNow();
      throw new Error(`${err.message}: ${missing.length} missing, e.g. ${missing.slice(0, 5).join(' ')}\nagent stderr tail:\n${agent.stderr.slice(-3000)}`);
    });
    expect(await agent.kill('SIGTERM')).toBe(0);
    const lines = readFileSync(out, 'utf8').split('\n').filter(Boolean);

    // Decode and check each record.
    const firstSeen = new Map<string, number>();
    const lastSeqByKey = new Map<string, number>();
    let duplicates = 0;
    let duplicateBytes = 0;
    let torn = 0;
    for (const line of lines) {
      let rec: { body: string; attributes: Record<string, unknown>; resource: Record<string, string> };
      try {
        rec = JSON.parse(line);
      } catch {
        torn++; // a write cut by SIGKILL; its records are re-sent from the checkpoint
        continue;
      }
      const id = idOf(rec.body);
      expect(id, `record without id: ${line.slice(0, 200)}`).toBeDefined();
      const exp = expected.get(id!);
      expect(exp, `unexpected record ${id}`).toBeDefined();
      expect(rec.body).toBe(exp!.body);
      if (exp!.incomplete) expect(rec.attributes['kta.log.incomplete']).toBe(true);
      else {
        const [ns, pod, container, restart, stream] = exp!.key.split('/');
        expect(rec.resource['k8s.namespace.name']).toBe(ns);
        expect(rec.resource['k8s.pod.name']).toBe(pod);
        expect(rec.resource['k8s.container.name']).toBe(container);
        expect(rec.resource['k8s.container.restart_count']).toBe(restart);
        expect(rec.attributes['log.iostream']).toBe(stream);
      }
      if (firstSeen.has(id!)) {
        duplicates++;
        duplicateBytes += Buffer.byteLength(exp!.body) + 40;
        continue;
      }
      firstSeen.set(id!, 1);
      if (!exp!.incomplete) {
        const last = lastSeqByKey.get(exp!.key) ?? 0;
        expect(exp!.seq, `order broken in ${exp!.key}`).toBe(last + 1);
        lastSeqByKey.set(exp!.key, exp!.seq);
      }
    }
    const missing = [...expected.keys()].filter((id) => !firstSeen.has(id));
    expect(missing).toEqual([]);
    console.log(
      `e2e seed ${SEED}: ${expected.size} lines from ${seqs.size} container streams, ${rotations} rotations, ${restarted} restarts, ` +
        `crashes at ${crashes.join(', ')} ms; ${lines.length} output lines, ${duplicates} duplicates (~${duplicateBytes} bytes), ${torn} torn`,
    );
    expect(crashes).toHaveLength(2);
    // One crash repeats at most what was acknowledged since the last checkpoint save plus what was
    // in flight (max_unacked_bytes: chosen for the file output it feeds).
    const inFlight = autoUnackedWindow([parseConfig(readFileSync(configPath, 'utf8'), configPath, {}).outputs.out!]);
    expect(duplicateBytes).toBeLessThanOrEqual(crashes.length * (CHECKPOINT_EVERY_BYTES + inFlight));
  }, 120_000);
});
