import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deadLetterPath } from '../../agent/dead_letter.ts';
import { agentNodeFlags } from '../../agent/runtime_flags.ts';
import { criLines, NodeTree } from '../helpers/agent_harness.ts';
import { ChildAgent, CLI, freePort, NODE, suiteScratch, waitFor } from '../helpers/child_agent.ts';

/** Issue 11, the rows about what leaks out of the agent: URLs in its log, dead letters, the terminal. */

function baseConfig(tree: NodeTree, port: number, outputs: string): string {
  return `node_name: n
data_dir: ${tree.dataDir}
shutdown_timeout: 2s
server: { listen: "127.0.0.1:${port}" }
kubernetes: { mode: disabled }
sources:
  containers:
    type: container_logs
    include: [${tree.containersDir}/*.log]
    glob_interval: 100ms
    poll_interval: 100ms
outputs:
${outputs}`;
}

describe('hardening: nothing secret or hostile leaks through the agent', { timeout: 180_000 }, () => {
  const { root, onCleanup } = suiteScratch('kta-hardening-leaks-', 'HARDENING_KEEP');

  it('an endpoint with a secret in its query string: no log line shows it, retry warnings included', async () => {
    const tree = new NodeTree('kta-hardening-leaks-node-');
    onCleanup(() => tree.remove());
    const secret = 'sk_live_51QuerySecret';
    // One receiver that is down (connection refused), one that answers 503: both retry and warn.
    const refused = await freePort();
    const busy: Server = createServer((_req, res) => res.writeHead(503, { 'retry-after': '0' }).end('overloaded'));
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    onCleanup(() => busy.close());
    const port = await freePort();
    const configFile = join(root, 'query-secret.yaml');
    writeFileSync(
      configFile,
      baseConfig(
        tree,
        port,
        `  down:
    type: http
    inputs: [containers]
    endpoint: "http://127.0.0.1:${refused}/ingest?api_key=${secret}&tenant=a"
    retry: { initial: 50ms, max: 200ms }
  busy:
    type: elasticsearch
    inputs: [containers]
    endpoint: "http://127.0.0.1:${(busy.address() as AddressInfo).port}/es?token=${secret}#${secret}"
    retry: { initial: 50ms, max: 200ms }
`,
      ),
    );
    const agent = new ChildAgent(configFile);
    onCleanup(() => agent.proc?.kill('SIGKILL'));
    agent.start();
    await agent.ready(port, 45_000);
    tree.container({ content: criLines(['one', 'two']) });
    await waitFor(
      'retry warnings from both outputs',
      () => /output down: sending .* failed .*retrying/.test(agent.stderr) && /output busy: sending .* failed .*retrying/.test(agent.stderr),
      30_000,
    );
    await agent.kill('SIGTERM');
    const down = agent.stderr.split('\n').find((l) => l.includes('output down: sending'))!;
    expect(down).toContain(`request to http://127.0.0.1:${refused}/ingest?… failed: connection refused`);
    expect(agent.stderr).not.toContain(secret);
    expect(agent.stderr).not.toContain('api_key=');
    expect(agent.stderr).not.toContain('token=');
  });

  it('dead-letter files: 0600 like checkpoints and buffer segments, in a 0700 folder (also one an older version left 0644)', async () => {
    const tree = new NodeTree('kta-hardening-dl-node-');
    onCleanup(() => tree.remove());
    const refusing: Server = createServer((_req, res) => res.writeHead(400, { 'content-type': 'text/plain' }).end('mapping error'));
    await new Promise<void>((r) => refusing.listen(0, '127.0.0.1', r));
    onCleanup(() => refusing.close());
    const url = `http://127.0.0.1:${(refusing.address() as AddressInfo).port}`;
    // `old` finds a file a previous version wrote world-readable; `fresh` creates its own.
    const old = deadLetterPath(tree.dataDir, 'old');
    mkdirSync(join(tree.dataDir, 'dead_letter'), { recursive: true });
    writeFileSync(old, '');
    chmodSync(old, 0o644);
    const port = await freePort();
    const configFile = join(root, 'dead-letter.yaml');
    writeFileSync(
      configFile,
      baseConfig(tree, port, `  fresh: { type: http, inputs: [containers], endpoint: "${url}" }\n  old: { type: http, inputs: [containers], endpoint: "${url}" }\n`),
    );
    const agent = new ChildAgent(configFile);
    onCleanup(() => agent.proc?.kill('SIGKILL'));
    agent.start();
    await agent.ready(port, 45_000);
    tree.container({ content: criLines(['refused for good']) });
    const fresh = deadLetterPath(tree.dataDir, 'fresh');
    await waitFor('both dead-letter files written', () => existsSync(fresh) && statSync(fresh).size > 0 && statSync(old).size > 0, 30_000);
    expect(await agent.kill('SIGTERM')).toBe(0);
    expect((statSync(fresh).mode & 0o777).toString(8)).toBe('600');
    expect((statSync(old).mode & 0o777).toString(8)).toBe('600');
    expect(statSync(join(tree.dataDir, 'dead_letter')).mode & 0o077).toBe(0);
  });

  it('stdout output with encoding: text: ANSI escapes, CR and NUL are written escaped, one line per record', async () => {
    const tree = new NodeTree('kta-hardening-tty-node-');
    onCleanup(() => tree.remove());
    const port = await freePort();
    const configFile = join(root, 'stdout-text.yaml');
    writeFileSync(configFile, baseConfig(tree, port, '  console: { type: stdout, inputs: [containers], encoding: text }\n'));
    const hostile = ['\x1b[2J\x1b[31mscreen cleared, red', 'fake\rprogress overwritten', 'nul\x00byte', 'bell\x07 and CSI \u009b1m'];
    tree.container({ content: criLines(hostile) });
    const child = spawn(NODE, [...agentNodeFlags(), CLI, 'run', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    onCleanup(() => child.kill('SIGKILL'));
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    const text = () => Buffer.concat(out).toString('utf8');
    await waitFor('four records on stdout', () => text().split('\n').filter(Boolean).length >= 4, 45_000);
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    const lines = text().split('\n').filter(Boolean);
    expect(lines).toHaveLength(4);
    // Not a single control character reaches the terminal; each is shown instead.
    const controls = [...text()].filter((c) => (c < ' ' && c !== '\n' && c !== '\t') || (c >= '\x7f' && c <= '\x9f'));
    expect(controls).toEqual([]);
    expect(lines[0]).toContain('\\e[2J\\e[31mscreen cleared, red');
    expect(lines[1]).toContain('fake\\rprogress overwritten');
    expect(lines[2]).toContain('nul\\0byte');
    expect(lines[3]).toContain('bell\\x07 and CSI \\u009b1m');
  });
});
