import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FakeKubeApiServer, writeKubeconfig } from '../../agent/demo/kube_api_server.ts';
import { NodeTree } from '../helpers/agent_harness.ts';
import { ChildAgent, freePort, suiteScratch } from '../helpers/child_agent.ts';
import { problemLines, runCliAsync } from '../helpers/cli_run.ts';
import { makeTestPki } from '../helpers/rsyslog.ts';
import { NdjsonReceiver } from '../fakes/ndjson_receiver.ts';

/**
 * Issue 13: `validate --check` (data_dir writable, binaries present, endpoints resolvable and
 * reachable, credentials files readable) on five broken environments, and a healthy one. Plain
 * `validate` accepts every one of these configs (it is pure: the same answer on any machine); the
 * node is `--check`'s business. Each environment is real: files, folders, PATH, listening and
 * closed ports, TLS servers, a Kubernetes API (the protocol-faithful fake).
 */

describe('validate --check: the node the config runs on', { timeout: 180_000 }, () => {
  const { root, onCleanup } = suiteScratch('kta-validate-check-', 'HARDENING_KEEP');
  const pki = makeTestPki(join(root, 'pki'));
  const bin = join(root, 'bin');
  mkdirSync(bin);
  // A journalctl that exists (the check only looks for it; nothing runs it here).
  writeFileSync(join(bin, 'journalctl'), '#!/bin/sh\nexit 0\n');
  chmodSync(join(bin, 'journalctl'), 0o755);
  const token = join(root, 'token');
  writeFileSync(token, 's3cret\n');

  const tree = new NodeTree('kta-validate-check-node-');
  onCleanup(() => tree.remove());

  function config(name: string, opts: { dataDir?: string; listen?: string; kubernetes?: string; sources?: string; outputs: string }): string {
    const file = join(root, `${name}.yaml`);
    writeFileSync(
      file,
      `node_name: n
data_dir: ${opts.dataDir ?? tree.dataDir}
server: { listen: "${opts.listen ?? '127.0.0.1:0'}" }
kubernetes: ${opts.kubernetes ?? '{ mode: disabled }'}
sources:
  containers: { type: container_logs, include: [${tree.containersDir}/*.log], kubernetes_metadata: { enabled: false } }
${opts.sources ?? ''}
outputs:
${opts.outputs}`,
    );
    return file;
  }

  /** validate (pure) accepts it; validate --check answers exit 2 and these problems, in any order. */
  async function broken(file: string, env: NodeJS.ProcessEnv = {}): Promise<string[]> {
    const plain = await runCliAsync(['validate', '-c', file], { env });
    expect(plain.stderr).toBe('');
    expect(plain.status).toBe(0);
    const r = await runCliAsync(['validate', '--check', '-c', file], { env });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe(`${file}: valid, but does not work on this node`);
    expect(r.stdout).toBe('');
    return problemLines(r.stderr).sort();
  }

  it('a healthy node: exit 0 and what was checked', async () => {
    const receiver = await NdjsonReceiver.start({
      tls: { key: readFileSync(pki.serverKeyFile), cert: readFileSync(pki.serverCertFile), ca: readFileSync(pki.caFile) },
    });
    onCleanup(() => void receiver.close());
    const api = new FakeKubeApiServer({ token: 'tok' });
    await api.start();
    onCleanup(() => void api.close());
    const kubeconfig = writeKubeconfig(root, { server: api.url, token: 'tok', insecure: true }, 'good-kubeconfig');
    const file = config('healthy', {
      kubernetes: `{ mode: kubeconfig, kubeconfig: ${kubeconfig} }`,
      sources: '  journal: { type: journald }\n  cluster: { type: kubernetes_events }\n',
      outputs: `  out: { type: http, inputs: [containers, journal], endpoint: "${receiver.url}", tls: { ca_file: ${pki.caFile} }, auth: { bearer_token_file: ${token} } }
  file: { type: file, inputs: [containers], path: ${join(tree.root, 'out', 'new-folder', 'records.ndjson')} }\n`,
    });
    const r = await runCliAsync(['validate', '--check', '-c', file], { env: { PATH: `${bin}:/usr/bin:/bin` } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(
      `${file}: valid, and works on this node (2 paths writable, 2 files readable, 1 program found, 1 endpoint reachable, server.listen free, Kubernetes connection)\n`,
    );
  });

  it('broken environment 1: data_dir cannot be written (under a file; on a file system that takes no files)', async () => {
    const afile = join(root, 'a-file');
    writeFileSync(afile, 'x');
    expect(await broken(config('data-dir-under-file', { dataDir: join(afile, 'data'), outputs: '  o: { type: stdout, inputs: [containers] }\n' }))).toEqual([
      `data_dir: cannot create ${join(afile, 'data')}: ${afile} is not a folder`,
    ]);
    const inProc = config('data-dir-in-proc', { dataDir: '/proc/telemetry-agent', outputs: '  o: { type: stdout, inputs: [containers] }\n' });
    expect(await broken(inProc)).toEqual(['data_dir: cannot create /proc/telemetry-agent in /proc: the file system takes no new files there']);
    // run checks the same before it builds anything: exit 2, one line, no stack.
    const run = await runCliAsync(['run', '-c', inProc]);
    expect(run.status).toBe(2);
    expect(run.stderr).toBe(`${inProc}: cannot start on this node\n  data_dir: cannot create /proc/telemetry-agent in /proc: the file system takes no new files there\n`);
  });

  it('broken environment 2: a program the config runs is missing (journalctl not in PATH, or not executable)', async () => {
    const file = config('no-journalctl', {
      sources: `  journal: { type: journald }\n  other: { type: journald, journalctl: ${token} }\n`,
      outputs: '  o: { type: stdout, inputs: [containers, journal, other] }\n',
    });
    expect(await broken(file, { PATH: '/nonexistent/bin' })).toEqual([
      'sources.journal.journalctl: journalctl not found in PATH (/nonexistent/bin)',
      `sources.other.journalctl: ${token} is not an executable file`,
    ]);
  });

  it('broken environment 3: receivers that cannot be resolved, are not listening, or present a certificate the configured CA did not sign', async () => {
    const closed = await freePort();
    const tls = await NdjsonReceiver.start({ tls: { key: readFileSync(pki.serverKeyFile), cert: readFileSync(pki.serverCertFile) } });
    onCleanup(() => void tls.close());
    const file = config('unreachable', {
      outputs: `  unresolvable: { type: loki, inputs: [containers], endpoint: "http://no-such-receiver.invalid:3100/?tenant=x" }
  refused: { type: http, inputs: [containers], endpoint: "http://127.0.0.1:${closed}/in" }
  wrong_ca: { type: elasticsearch, inputs: [containers], endpoint: "${tls.url}", tls: { ca_file: ${pki.otherCaFile} } }
  syslog: { type: syslog, inputs: [containers], endpoint: "tcp://127.0.0.1:${closed}" }\n`,
    });
    const problems = await broken(file);
    expect(problems).toHaveLength(4);
    expect(problems[0]).toMatch(/^outputs\.refused\.endpoint: http:\/\/127\.0\.0\.1:\d+\/in: connection refused by 127\.0\.0\.1:\d+ \(nothing listening there, or the receiver is down\)$/);
    expect(problems[1]).toMatch(/^outputs\.syslog\.endpoint: tcp:\/\/127\.0\.0\.1:\d+: connection refused/);
    expect(problems[2]).toMatch(/^outputs\.unresolvable\.endpoint: http:\/\/no-such-receiver\.invalid:3100\/\?…: the host name no-such-receiver\.invalid cannot be resolved \((ENOTFOUND|EAI_AGAIN)\)$/);
    expect(problems[3]).toMatch(new RegExp(`^outputs\\.wrong_ca\\.endpoint: ${tls.url}/: the receiver's TLS certificate is not trusted .*it is not signed by the CA in tls\\.ca_file ${pki.otherCaFile}$`));
  });

  it('broken environment 4: credentials and TLS files that cannot be read (missing, empty, a folder)', async () => {
    const empty = join(root, 'empty-password');
    writeFileSync(empty, '');
    const file = config('credentials', {
      outputs: `  bearer: { type: http, inputs: [containers], endpoint: "http://127.0.0.1:9", auth: { bearer_token_file: ${join(root, 'missing-token')} } }
  basic: { type: loki, inputs: [containers], endpoint: "http://127.0.0.1:9", auth: { username: u, password_file: ${empty} } }
  hec: { type: splunk_hec, inputs: [containers], endpoint: "https://127.0.0.1:9", token_file: ${root}, tls: { ca_file: ${join(root, 'missing-ca.pem')} } }\n`,
    });
    const problems = (await broken(file)).filter((p) => !p.includes('.endpoint: '));
    expect(problems).toEqual([
      `outputs.basic.auth.password_file: cannot read ${empty}: the file is empty`,
      `outputs.bearer.auth.bearer_token_file: cannot read ${join(root, 'missing-token')}: no such file`,
      `outputs.hec.tls.ca_file: cannot read ${join(root, 'missing-ca.pem')}: no such file`,
      `outputs.hec.token_file: cannot read ${root}: is a folder, not a file`,
    ]);
  });

  it('broken environment 5: the Kubernetes connection kubernetes.mode asks for (missing kubeconfig, unusable context, credentials refused)', async () => {
    const api = new FakeKubeApiServer({ token: 'right' });
    await api.start();
    onCleanup(() => void api.close());
    const events = '  cluster: { type: kubernetes_events }\n';
    const out = '  o: { type: stdout, inputs: [containers] }\n';
    expect(await broken(config('kube-missing', { kubernetes: '{ mode: kubeconfig, kubeconfig: /nonexistent/kubeconfig }', sources: events, outputs: out }))).toEqual([
      'kubernetes.kubeconfig: kubernetes mode kubeconfig: no kubeconfig (kubeconfig /nonexistent/kubeconfig does not exist)',
    ]);
    const unknownContext = writeKubeconfig(root, { server: api.url, token: 'right', insecure: true }, 'kubeconfig-context');
    expect(
      await broken(config('kube-context', { kubernetes: `{ mode: kubeconfig, kubeconfig: ${unknownContext}, context: staging }`, sources: events, outputs: out })),
    ).toEqual([`kubernetes.kubeconfig: kubeconfig ${unknownContext}: context "staging" not found (contexts: fake)`]);
    const wrongToken = writeKubeconfig(root, { server: api.url, token: 'wrong', insecure: true }, 'kubeconfig-wrong-token');
    expect(await broken(config('kube-401', { kubernetes: `{ mode: kubeconfig, kubeconfig: ${wrongToken} }`, sources: events, outputs: out }))).toEqual([
      `kubernetes.kubeconfig: the API server ${api.url}/ refused the credentials of kubeconfig ${wrongToken} context "fake" (401)`,
    ]);
  });

  it('and server.listen: in use by another program is a problem; in use by the running agent itself is a note', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    onCleanup(() => blocker.close());
    const busy = (blocker.address() as { port: number }).port;
    expect(await broken(config('port-busy', { listen: `127.0.0.1:${busy}`, outputs: '  o: { type: stdout, inputs: [containers] }\n' }))).toEqual([
      `server.listen: 127.0.0.1:${busy} is already in use by another process`,
    ]);

    // `kubectl exec` into the agent's pod and check the config it runs: its own port is not a problem.
    const port = await freePort();
    const running = config('port-own', { listen: `127.0.0.1:${port}`, outputs: `  o: { type: file, inputs: [containers], path: ${tree.outputPath} }\n` });
    const agent = new ChildAgent(running);
    onCleanup(() => agent.proc?.kill('SIGKILL'));
    agent.start();
    await agent.ready(port, 45_000);
    const r = await runCliAsync(['validate', '--check', '-c', running]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe(`${running}: note: server.listen: 127.0.0.1:${port} is served by a running telemetry-agent (the one this config is for, or a reload applies it)\n`);
    expect(await agent.kill('SIGTERM')).toBe(0);
  });
});
