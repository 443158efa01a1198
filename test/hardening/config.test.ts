import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.ts';
import { parseConfig } from '../../agent/config/load.ts';
import { createLogger } from '../../agent/log.ts';
import { criLines, NodeTree, readRecords, requireNode24, scrapeMetric } from '../helpers/agent_harness.ts';
import { ChildAgent, freePort, suiteScratch, waitFor } from '../helpers/child_agent.ts';
import { problemLines, runCli } from '../helpers/cli_run.ts';

/**
 * Issue 11, the rows about configs: each test is named after its row and shows the behaviour the
 * row now has. A config `validate` accepts never makes `run` or a reload exit 1.
 */

/** A node with one container and a file output; `outputs` adds outputs (YAML, indented 2). */
function nodeConfig(tree: NodeTree, opts: { port?: number; outputs?: string; extraTop?: string } = {}): string {
  return `node_name: hardening-node
data_dir: ${tree.dataDir}
shutdown_timeout: 5s
server: { listen: "127.0.0.1:${opts.port ?? 0}" }
kubernetes: { mode: disabled }
${opts.extraTop ?? ''}
sources:
  containers:
    type: container_logs
    include: [${tree.containersDir}/*.log]
    glob_interval: 100ms
    poll_interval: 100ms
outputs:
  out:
    type: file
    inputs: [containers]
    path: ${tree.outputPath}
${opts.outputs ?? ''}`;
}

const AUTH_AND_HEADER = `  api:
    type: http
    inputs: [containers]
    endpoint: http://127.0.0.1:9/in
    auth: { bearer_token: from-auth }
    headers: { Authorization: "Bearer from-header" }
`;
const PASSWORD = 'pw-in-the-url-7f3a';
const CREDENTIALS_IN_URL = `  api:
    type: loki
    inputs: [containers]
    endpoint: http://loki-user:${PASSWORD}@127.0.0.1:9
`;

describe('hardening: configs that validate calls valid never crash run or a reload', { timeout: 180_000 }, () => {
  const { root, onCleanup } = suiteScratch('kta-hardening-config-', 'HARDENING_KEEP');
  const newTree = () => {
    const tree = new NodeTree('kta-hardening-');
    onCleanup(() => tree.remove());
    return tree;
  };
  const file = (name: string, text: string) => {
    const path = join(root, name);
    writeFileSync(path, text);
    return path;
  };

  /**
   * A running agent gets `bad` (through the ConfigMap watch, or SIGHUP): it stays up, counts the
   * failed reload, says why in one log entry, and keeps delivering with the config it had.
   */
  async function reloadKeepsRunning(bad: (tree: NodeTree, port: number) => string, via: 'watch' | 'SIGHUP', expectInLog: RegExp) {
    const tree = newTree();
    const port = await freePort();
    const configFile = join(tree.root, 'agent.yaml');
    writeFileSync(configFile, nodeConfig(tree, { port }));
    const agent = new ChildAgent(configFile);
    onCleanup(() => agent.proc?.kill('SIGKILL'));
    agent.start();
    await agent.ready(port, 45_000);
    const c = tree.container({ content: criLines(['before']) });
    await waitFor('the first line delivered', () => existsSync(tree.outputPath) && readRecords(tree.outputPath).length === 1, 30_000);

    writeFileSync(configFile, bad(tree, port));
    if (via === 'SIGHUP') agent.proc!.kill('SIGHUP');
    await waitFor('the reload rejected', () => expectInLog.test(agent.stderr), 30_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${agent.stderr.slice(-3000)}`);
    });
    expect(await scrapeMetric(`http://127.0.0.1:${port}`, 'telemetry_agent_config_reloads_total', { result: 'failure' })).toBe(1);
    expect(agent.proc!.exitCode).toBeNull();

    appendFileSync(c.logPath, criLines(['after']));
    await waitFor('a line written after the rejected reload, in the running output', () => readRecords(tree.outputPath).length === 2, 30_000);
    expect(readRecords(tree.outputPath).map((r) => r.body)).toEqual(['before', 'after']);
    expect(await agent.kill('SIGTERM')).toBe(0);
    return agent.stderr;
  }

  it('an http output with both auth and headers.Authorization: validate names the key; run exits 2 with one line; a running agent keeps its config', async () => {
    const tree = newTree();
    const bad = file('auth-and-header.yaml', nodeConfig(tree, { outputs: AUTH_AND_HEADER }));
    const v = runCli(['validate', '-c', bad]);
    expect(v.status).toBe(2);
    expect(problemLines(v.stderr)).toEqual(['outputs.api.headers.Authorization: headers.Authorization and auth are both set; pick one']);
    const r = runCli(['run', '-c', bad]);
    expect(r.status).toBe(2);
    expect(problemLines(r.stderr)).toEqual(['outputs.api.headers.Authorization: headers.Authorization and auth are both set; pick one']);
    expect(r.stderr).not.toMatch(/\n\s+at /);

    await reloadKeepsRunning((t, port) => nodeConfig(t, { port, outputs: AUTH_AND_HEADER }), 'watch', /config reload \(file change\) rejected.*\n?.*headers\.Authorization and auth are both set/);
  });

  it('credentials in an endpoint URL: refused by validate without echoing them; run exits 2; SIGHUP keeps the running config', async () => {
    const tree = newTree();
    const bad = file('credentials-in-url.yaml', nodeConfig(tree, { outputs: CREDENTIALS_IN_URL }));
    const v = runCli(['validate', '-c', bad]);
    expect(v.status).toBe(2);
    expect(problemLines(v.stderr)).toEqual(['outputs.api.endpoint: the URL carries credentials (user:password@): put them in auth, where they are never logged']);
    const r = runCli(['run', '-c', bad]);
    expect(r.status).toBe(2);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    for (const out of [v.stderr, r.stderr]) expect(out).not.toContain(PASSWORD);

    const log = await reloadKeepsRunning((t, port) => nodeConfig(t, { port, outputs: CREDENTIALS_IN_URL }), 'SIGHUP', /config reload \(SIGHUP\) rejected/);
    expect(log).toContain('outputs.api.endpoint: the URL carries credentials');
    expect(log).not.toContain(PASSWORD);
  });

  it('server.listen moved to a port in use: validate --check says so; the reload is rejected and the old port keeps serving', async () => {
    const tree = newTree();
    const blocker = await import('node:net').then(
      ({ createServer }) =>
        new Promise<import('node:net').Server>((resolve) => {
          const s = createServer();
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    );
    onCleanup(() => blocker.close());
    const busy = (blocker.address() as { port: number }).port;
    const moved = file('port-in-use.yaml', nodeConfig(tree, { port: busy }));
    expect(runCli(['validate', '-c', moved]).status).toBe(0); // pure: a port is the node's business
    const check = runCli(['validate', '--check', '-c', moved]);
    expect(check.status).toBe(2);
    expect(problemLines(check.stderr)).toEqual([`server.listen: 127.0.0.1:${busy} is already in use by another process`]);
    const r = runCli(['run', '-c', moved]);
    expect(r.status).toBe(2);
    expect(problemLines(r.stderr)).toEqual([`server.listen: 127.0.0.1:${busy} is already in use by another process`]);

    const log = await reloadKeepsRunning((t) => nodeConfig(t, { port: busy }), 'SIGHUP', /config reload \(SIGHUP\) rejected/);
    expect(log).toContain(`server.listen: 127.0.0.1:${busy} is already in use by another process`);
  });

  it('kubernetes.mode: kubeconfig with a missing kubeconfig and a kubernetes_events source: validate --check names the key; run stays up, not ready, saying why', async () => {
    const tree = newTree();
    const port = await freePort();
    const text = nodeConfig(tree, { port }).replace('kubernetes: { mode: disabled }', 'kubernetes: { mode: kubeconfig, kubeconfig: /nonexistent/kubeconfig }') + '';
    const withEvents = text.replace('sources:\n', 'sources:\n  cluster:\n    type: kubernetes_events\n');
    const configFile = file('kubeconfig-missing.yaml', withEvents);
    expect(runCli(['validate', '-c', configFile]).status).toBe(0);
    const check = runCli(['validate', '--check', '-c', configFile]);
    expect(check.status).toBe(2);
    expect(problemLines(check.stderr)).toEqual([
      'kubernetes.kubeconfig: kubernetes mode kubeconfig: no kubeconfig (kubeconfig /nonexistent/kubeconfig does not exist)',
    ]);

    const agent = new ChildAgent(configFile);
    onCleanup(() => agent.proc?.kill('SIGKILL'));
    agent.start();
    await waitFor('/healthz', () => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status === 200, () => false), 30_000);
    await waitFor('the events source saying why it is not ready', () => /source cluster: no Kubernetes API connection: .*\/nonexistent\/kubeconfig does not exist/.test(agent.stderr), 30_000);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(503);
    // Container logs keep flowing (without pod metadata) while the cluster part cannot work.
    tree.container({ content: criLines(['still shipped']) });
    await waitFor('a container line delivered', () => existsSync(tree.outputPath) && readRecords(tree.outputPath).length === 1, 30_000);
    expect(agent.proc!.exitCode).toBeNull();
    expect(await agent.kill('SIGTERM')).toBe(0);
    expect(agent.stderr).not.toMatch(/\n\s+at /);
  });

  it('a reload checks the files of what it builds anew, not of what keeps running', async () => {
    requireNode24();
    const tree = newTree();
    const token = join(tree.root, 'token');
    writeFileSync(token, 'secret\n');
    const outputs = (timeout: string, tokenFile: string) =>
      `  a: { type: http, inputs: [containers], endpoint: "http://127.0.0.1:9", timeout: ${timeout} }\n` +
      `  b: { type: http, inputs: [containers], endpoint: "http://127.0.0.1:9", auth: { bearer_token_file: ${tokenFile} } }\n`;
    const agent = new Agent(parseConfig(nodeConfig(tree, { outputs: outputs('5s', token) }), 'a.yaml', {}), createLogger('error', () => {}));
    await agent.start();
    try {
      rmSync(token); // being replaced, say: b runs on the token it read
      await agent.reload(parseConfig(nodeConfig(tree, { outputs: outputs('7s', token) }), 'a.yaml', {}));
      expect(agent.config.outputs.a).toMatchObject({ timeout: 7000 });
      const moved = join(tree.root, 'missing-token');
      await expect(agent.reload(parseConfig(nodeConfig(tree, { outputs: outputs('7s', moved) }), 'a.yaml', {}))).rejects.toThrow(
        `outputs.b.auth.bearer_token_file: cannot read ${moved}: no such file`,
      );
    } finally {
      await agent.stop();
    }
  });

  it('YAML alias bomb (billion laughs): exit 2 and one line, at once', () => {
    let yaml = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
    let prev = 'a';
    for (const name of 'bcdefghi') {
      yaml += `${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]\n`;
      prev = name;
    }
    yaml += `sources: *${prev}\n`;
    const bomb = file('billion-laughs.yaml', yaml);
    for (const command of ['validate', 'run']) {
      const started = Date.now();
      const r = runCli([command, '-c', bomb]);
      expect(r.status).toBe(2);
      expect(r.stderr).toBe(
        `${bomb}: invalid config\n  YAML: aliases expand to more than 100 nodes (a "billion laughs" document?); write the values out instead\n`,
      );
      expect(Date.now() - started).toBeLessThan(30_000);
    }
  });

  it('a 50 MB config file: exit 2 and one line, not out of memory', () => {
    const big = join(root, 'fifty-megabytes.yaml');
    writeFileSync(big, `# ${'x'.repeat(1000)}\n`.repeat(50 * 1024));
    for (const command of ['validate', 'run']) {
      const r = runCli([command, '-c', big]);
      expect(r.signal).toBeNull();
      expect(r.status).toBe(2);
      expect(r.stderr).toBe(`${big}: config file too large\n  the config file is larger than 1 MiB (a ConfigMap holds at most 1 MiB); is it the right file?\n`);
    }
  });

  it('a secret from ${VAR} placed under a key of the wrong type: the error names the variable, never the value', () => {
    const secret = 'hunter2-Zq8-not-a-duration';
    const tree = newTree();
    const text = nodeConfig(tree)
      .replace('shutdown_timeout: 5s', 'shutdown_timeout: ${DB_PASSWORD}\nlog_level: ${DB_PASSWORD}')
      .replace('    poll_interval: 100ms\n', '    poll_interval: 100ms\n    max_line_bytes: "${DB_PASSWORD}"\n    read_from: [${DB_PASSWORD}]\n');
    const configFile = file('secret-wrong-type.yaml', text);
    for (const command of ['validate', 'run']) {
      const r = runCli([command, '-c', configFile], { env: { DB_PASSWORD: secret } });
      expect(r.status).toBe(2);
      expect(r.stderr).not.toContain(secret);
      expect(r.stderr).not.toContain('hunter2');
      expect(problemLines(r.stderr).sort()).toEqual(
        [
          'shutdown_timeout: expected a duration like 30s, got the value of ${DB_PASSWORD} (not shown)',
          'log_level: expected one of "debug" | "info" | "warn" | "error", got the value of ${DB_PASSWORD} (not shown)',
          'sources.containers.max_line_bytes: expected a size like 1MiB, got the value of ${DB_PASSWORD} (not shown)',
          'sources.containers.read_from: expected one of "beginning" | "end", got the value of ${DB_PASSWORD} (not shown)',
        ].sort(),
      );
    }
    // A default written in the file is config text, not a secret: shown as it is.
    const withDefault = file('default-wrong-type.yaml', nodeConfig(tree).replace('shutdown_timeout: 5s', 'shutdown_timeout: ${UNSET_FOR_TEST:-soon}'));
    expect(problemLines(runCli(['validate', '-c', withDefault]).stderr)).toEqual(['shutdown_timeout: expected a duration like 30s, got "soon"']);
    expect(readFileSync(configFile, 'utf8')).not.toContain(secret);
  });
});
