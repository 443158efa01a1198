import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NodeSimulator, Rng, type ContainerLog } from '../agent/demo/node_simulator.ts';
import { ChildAgent, freePort, suiteScratch, waitFor } from './helpers/child_agent.ts';

/**
 * A ConfigMap volume as kubelet writes it: `agent.yaml -> ..data/agent.yaml`, `..data -> ..<ts>`;
 * an update writes a new `..<ts>` folder and renames a fresh `..data` symlink over the old one.
 */
class ConfigMapVolume {
  readonly dir: string;
  private generation = 0;
  private current: string | undefined;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
  }

  get file(): string {
    return join(this.dir, 'agent.yaml');
  }

  write(text: string): void {
    const version = `..2026_11_21_00_00_${String(++this.generation).padStart(2, '0')}.000000001`;
    mkdirSync(join(this.dir, version));
    writeFileSync(join(this.dir, version, 'agent.yaml'), text);
    symlinkSync(version, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (!existsSync(this.file)) symlinkSync('..data/agent.yaml', this.file);
    if (this.current) rmSync(join(this.dir, this.current), { recursive: true });
    this.current = version;
  }
}

const SEED = Number(process.env.RELOAD_SEED ?? Date.now() % 1_000_000);

describe(`hot reload under load (seed ${SEED})`, () => {
  const { root, onCleanup } = suiteScratch('kta-reload-', 'RELOAD_KEEP');

  it('20 ConfigMap updates and SIGHUPs while logs flow: nothing lost or doubled, invalid ones rejected', async () => {
    const rng = new Rng(SEED);
    const sim = new NodeSimulator({ root: join(root, 'node'), clock: 'wall', seed: SEED });
    const containers: ContainerLog[] = [];
    for (let p = 0; p < 6; p++) containers.push(...sim.createPod({ namespace: 'load', name: `pod-${p}`, containers: ['app'] }).containers);
    const port = await freePort();
    const outA = join(root, 'out-a.ndjson');
    const outB = join(root, 'out-b.ndjson');
    const config = (o: { out: string; partialTimeout: string; extra?: string }) => `node_name: reload-node
data_dir: ${join(root, 'data')}
server: { listen: "127.0.0.1:${port}" }
kubernetes: { mode: disabled }
sources:
  containers:
    type: container_logs
    include: [${sim.containersDir}/*.log]
    glob_interval: 200ms
    poll_interval: 200ms
    partial_timeout: ${o.partialTimeout}
outputs:
  main:
    type: file
    inputs: [containers]
    path: ${o.out}
${o.extra ?? ''}`;
    const volume = new ConfigMapVolume(join(root, 'config'));
    volume.write(config({ out: outA, partialTimeout: '5s' }));
    const agent = new ChildAgent(volume.file);
    onCleanup(() => agent.proc?.kill('SIGKILL'));
    agent.start();
    await agent.ready(port);

    const written = new Map<string, string>();
    let seq = 0;
    let writing = true;
    const writer = (async () => {
      while (writing) {
        for (const c of containers) {
          const id = `r${++seq}`;
          const body = rng.chance(0.05) ? `id=${id} ${'x'.repeat(rng.int(17_000, 30_000))}` : `id=${id} ordinary line`;
          sim.writeLine(c, body, rng.chance(0.2) ? 'stderr' : 'stdout');
          written.set(id, body);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();

    // 20 updates: a file-path ("endpoint") change, a source change, two kinds of invalid file, and
    // an unchanged rewrite; some announced by SIGHUP rather than by the file watch.
    let valid = 0;
    let invalid = 0;
    let out = outA;
    for (let i = 0; i < 20; i++) {
      // ConfigMap updates are rare in life; here they come as fast as the debounced watch separates them.
      await new Promise((r) => setTimeout(r, 600));
      switch (i % 5) {
        case 0:
          out = out === outA ? outB : outA;
          volume.write(config({ out, partialTimeout: '5s' }));
          valid++;
          break;
        case 1:
          volume.write('sources: [this is: not: yaml\n');
          invalid++;
          break;
        case 2:
          volume.write(config({ out, partialTimeout: i % 2 ? '4s' : '6s' }));
          valid++;
          break;
        case 3:
          volume.write(config({ out, partialTimeout: i % 2 ? '4s' : '6s', extra: '  shiny:\n    type: kafka\n    inputs: [containers]\n' }));
          invalid++;
          break;
        case 4:
          // SIGHUP re-reads the file as it is (still the invalid one): rejected again.
          agent.proc!.kill('SIGHUP');
          invalid++;
          break;
      }
    }
    await new Promise((r) => setTimeout(r, 500));
    writing = false;
    await writer;

    const ids = () => {
      const counts = new Map<string, number>();
      for (const f of [outA, outB]) {
        if (!existsSync(f)) continue;
        for (const line of readFileSync(f, 'utf8').split('\n')) {
          const m = /"body":"id=(r\d+) /.exec(line);
          if (m) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
        }
      }
      return counts;
    };
    await waitFor('every line in out-a or out-b', () => ids().size === written.size, 60_000, 250).catch((err: Error) => {
      throw new Error(`${err.message}: have ${ids().size} of ${written.size}\n${agent.stderr.slice(-3000)}`);
    });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(await agent.kill('SIGTERM')).toBe(0);

    const counts = ids();
    const doubled = [...counts].filter(([, n]) => n > 1);
    expect(doubled, 'records written twice').toEqual([]);
    expect(counts.size).toBe(written.size);
    // Bodies are whole: long lines were joined from their P chunks across reloads.
    for (const f of [outA, outB]) {
      for (const line of readFileSync(f, 'utf8').split('\n').filter(Boolean)) {
        const rec = JSON.parse(line) as { body: string; attributes: Record<string, unknown> };
        const id = /^id=(r\d+) /.exec(rec.body)![1]!;
        expect(rec.body).toBe(written.get(id));
        expect(rec.attributes['kta.log.incomplete']).toBeUndefined();
      }
    }
    const sample = (result: string) => Number(new RegExp(`telemetry_agent_config_reloads_total\\{result="${result}"\\} (\\d+)`).exec(metrics)?.[1]);
    expect(sample('success')).toBe(valid);
    expect(sample('failure')).toBe(invalid);
    expect(agent.stderr).toContain('config reload (file change) rejected, keeping the running config');
    expect(agent.stderr).toContain('unknown type "kafka"');
    console.log(`reload seed ${SEED}: ${written.size} lines, ${valid} applied, ${invalid} rejected, split ${existsSync(outA) ? readFileSync(outA, 'utf8').split('\n').length - 1 : 0}/${existsSync(outB) ? readFileSync(outB, 'utf8').split('\n').length - 1 : 0}`);
  }, 120_000);
});
