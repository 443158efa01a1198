import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NodeTree } from '../helpers/agent_harness.ts';
import { ChildAgent, freePort, suiteScratch, waitFor } from '../helpers/child_agent.ts';

/**
 * Issue 11 item 7: "/healthz answers from the first second" (the port bound and answering before
 * the agent's modules have loaded, agent/early_port.ts), and "SIGTERM in the first 2 s after start:
 * exit 143, the handlers are not installed yet".
 * Node kills the process on SIGTERM until a handler exists; the agent installs its handlers on the
 * first line of main, before its modules load, so a pod deleted while the agent starts stops
 * cleanly. (The few tens of milliseconds before Node runs any JavaScript are the kernel's and
 * Node's; the tests wait until that first line has run.)
 */

/**
 * Whether the agent's handlers are in place in `pid`. Node itself catches SIGTERM from its start
 * (to restore the terminal, then die by the signal), so SigCgt's SIGTERM bit says nothing; SIGHUP
 * (bit 1 of SigCgt in /proc/<pid>/status) is caught only once the agent's first line has run,
 * which installs all three at once.
 */
function handlersInstalled(pid: number): boolean {
  try {
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m !== null && (BigInt(`0x${m[1]}`) & 1n) !== 0n;
  } catch {
    return false;
  }
}

describe('hardening: signals from the first line of main', { timeout: 180_000 }, () => {
  const { root, onCleanup } = suiteScratch('kta-hardening-signals-', 'HARDENING_KEEP');

  async function agentFor(name: string): Promise<{ agent: ChildAgent; port: number }> {
    const tree = new NodeTree('kta-hardening-signals-node-');
    onCleanup(() => tree.remove());
    for (let i = 0; i < 50; i++) tree.container();
    const port = await freePort();
    const configFile = join(root, `${name}.yaml`);
    writeFileSync(
      configFile,
      `node_name: n\ndata_dir: ${tree.dataDir}\nserver: { listen: "127.0.0.1:${port}" }\nkubernetes: { mode: disabled }\n` +
        `sources:\n  c: { type: container_logs, include: [${tree.containersDir}/*.log] }\n` +
        `outputs:\n  out: { type: file, inputs: [c], path: ${tree.outputPath}, buffer: { type: disk } }\n`,
    );
    const agent = new ChildAgent(configFile);
    onCleanup(() => agent.proc?.kill('SIGKILL'));
    return { agent, port };
  }

  it('SIGTERM in the first 2 s after start: exit 0 (a clean stop), not 143', async () => {
    // At the first moment the handler exists: long before the agent has started anything.
    const first = await agentFor('first-moment');
    first.agent.start();
    await waitFor('the handlers installed', () => handlersInstalled(first.agent.proc!.pid!), 10_000, 2);
    expect(await first.agent.kill('SIGTERM')).toBe(0);
    expect(first.agent.stderr).not.toContain('serving http'); // stopped before it finished starting
    expect(first.agent.stderr).not.toMatch(/\n\s+at /);

    // And at any moment of the first two seconds.
    for (const delayMs of [100, 400, 800, 1200, 2000]) {
      const { agent } = await agentFor(`after-${delayMs}ms`);
      agent.start();
      await waitFor('the handlers installed', () => handlersInstalled(agent.proc!.pid!), 10_000, 2);
      await new Promise((r) => setTimeout(r, delayMs));
      expect(await agent.kill('SIGTERM'), `SIGTERM ${delayMs} ms after the handler, stderr:\n${agent.stderr}`).toBe(0);
    }
  });

  it('/healthz answers from the first second: the port is bound and answering while the agent\'s modules still load', async () => {
    const { agent, port } = await agentFor('healthz-early');
    agent.start();
    // Probe as the kubelet does, from the moment the process exists: the first /healthz 200 comes
    // while /metrics still says the agent is starting (its modules loading, its parts not built).
    const first = await waitFor(
      'the first /healthz 200',
      async () => {
        const health = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
        if (health?.status !== 200) return undefined;
        const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
        return { metrics: metrics.status, body: await metrics.text(), started: agent.stderr.includes('serving http') };
      },
      30_000,
      5,
    );
    expect(first).toEqual({ metrics: 503, body: 'starting\n', started: false });
    await agent.ready(port, 45_000);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
    expect(await agent.kill('SIGTERM')).toBe(0);
  });

  it('SIGHUP while starting is not a death either (Node would exit 129): the config is read at start anyway', async () => {
    const { agent, port } = await agentFor('hup-early');
    agent.start();
    await waitFor('the handlers installed', () => handlersInstalled(agent.proc!.pid!), 10_000, 2);
    agent.proc!.kill('SIGHUP');
    await agent.ready(port);
    expect(agent.proc!.exitCode).toBeNull();
    expect(await agent.kill('SIGTERM')).toBe(0);
  });
});
