import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { KubeConnectionError, resolveConnection, SERVICE_ACCOUNT_DIR, type ConnectionOptions, type KubeConnection } from '../agent/kube/connection.ts';
import { ListWatch } from '../agent/kube/list_watch.ts';
import { createLogger } from '../agent/log.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import { FakeKubeApiServer, makePod, writeKubeconfig, type FakeKubeApiServerOptions } from '../agent/demo/kube_api_server.ts';
import { waitFor } from './helpers/child_agent.ts';

/**
 * Configuration and credentials end to end against the fake API server. In-cluster mode needs TLS
 * (@kubernetes/client-node only builds http:// for ports 80/8080/8001 and then refuses plain http
 * without insecure-skip-tls-verify), so a CA, a server certificate (SAN IP:127.0.0.1) and a client
 * certificate are made with `openssl` when the suite starts.
 */

const dir = mkdtempSync(join(tmpdir(), 'kta-kube-conn-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const ENV_KEYS = ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'KUBECONFIG', 'HOME'] as const;
let savedEnv: Record<string, string | undefined>;
beforeEach(() => {
  savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  for (const k of ENV_KEYS) delete process.env[k];
  process.env.HOME = mkdtempSync(join(dir, 'home-')); // no ~/.kube/config unless a test writes one
});
afterEach(() => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

interface Pki {
  ca: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  otherCa: string;
}
let pki: Pki;

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: 'pipe' });
}

beforeAll(() => {
  const p = join(dir, 'pki');
  mkdirSync(p);
  const f = (n: string) => join(p, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=fake-kubernetes-ca']);
  openssl(['req', '-x509', ...ec, '-keyout', f('other-ca.key'), '-out', f('other-ca.crt'), '-days', '2', '-subj', '/CN=some-other-ca']);
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n');
  openssl(['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=kube-apiserver']);
  openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '2', '-extfile', f('server.ext')]);
  writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
  openssl(['req', ...ec, '-keyout', f('client.key'), '-out', f('client.csr'), '-subj', '/O=system:nodes/CN=telemetry-agent']);
  openssl(['x509', '-req', '-in', f('client.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('client.crt'), '-days', '2', '-extfile', f('client.ext')]);
  pki = {
    ca: f('ca.crt'),
    caKey: f('ca.key'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
    otherCa: f('other-ca.crt'),
  };
});

async function fakeServer(opts: FakeKubeApiServerOptions = {}, tls = true): Promise<FakeKubeApiServer> {
  const fake = new FakeKubeApiServer({
    ...(tls ? { tls: { key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert), ca: readFileSync(pki.ca) } } : {}),
    ...opts,
  });
  await fake.start();
  cleanups.push(() => fake.close());
  return fake;
}

function capture(): { log: ConnectionOptions['log']; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger('debug', (l) => void lines.push(l)), lines };
}

function watchPods(conn: KubeConnection, idleTimeoutMs = 5000) {
  const lw = new ListWatch({ connection: conn, path: '/api/v1/pods', resource: 'pods', backoff: { initialMs: 20, maxMs: 200 }, idleTimeoutMs }, new SelfMetrics('t'));
  cleanups.push(async () => {
    await lw.stop();
    conn.close();
  });
  lw.start();
  return lw;
}

/** A service account folder as the kubelet mounts it, under `prefix`. */
function serviceAccount(prefix: string, token: string, ca = pki.ca): string {
  const sa = prefix + SERVICE_ACCOUNT_DIR;
  mkdirSync(sa, { recursive: true });
  writeFileSync(join(sa, 'token'), token);
  writeFileSync(join(sa, 'ca.crt'), readFileSync(ca));
  writeFileSync(join(sa, 'namespace'), 'observability');
  return sa;
}

let n = 0;
const fresh = (name: string) => join(dir, `${name}-${++n}`);

describe('in-cluster', () => {
  it('uses the service account token, CA and namespace against KUBERNETES_SERVICE_HOST:PORT over TLS; a rotated token is read again after a 401', async () => {
    const fake = await fakeServer({ token: 'token-1' });
    const prefix = fresh('incluster');
    const sa = serviceAccount(prefix, 'token-1\n'); // a trailing newline must not end up in the header
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = String(fake.port);
    const { log, lines } = capture();
    const conn = (await resolveConnection({ mode: 'in_cluster', log, inClusterPathPrefix: prefix }))!;
    expect(conn.mode).toBe('in_cluster');
    expect(conn.server).toBe(`https://127.0.0.1:${fake.port}`);
    expect(conn.namespace).toBe('observability');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`using in-cluster service account (${sa}), API https://127.0.0.1:${fake.port}`);
    expect(await conn.authHeaders()).toEqual({ Authorization: 'Bearer token-1' });

    fake.create('pods', makePod({ name: 'p', namespace: 'x', nodeName: 'n' }));
    const lw = watchPods(conn);
    await lw.whenSynced();
    await waitFor('watch', () => fake.activeWatches === 1, 5000, 10);
    expect(fake.requests.every((r) => r.authorization === 'Bearer token-1')).toBe(true);

    // the kubelet rotates the projected token; the server stops accepting the old one
    writeFileSync(join(sa, 'token'), 'token-2');
    fake.setToken('token-2');
    fake.breakWatches();
    await waitFor('watching with the new token', () => fake.activeWatches === 1 && fake.requests.at(-1)!.authorization === 'Bearer token-2', 5000, 10);
    expect(fake.count({ status: 401 })).toBe(1);
    expect(fake.count({ verb: 'list' })).toBe(1);
    expect(await conn.authHeaders()).toEqual({ Authorization: 'Bearer token-2' });
  });

  it('reads the token file again once it is 60 s old, without waiting for a 401', async () => {
    const prefix = fresh('incluster-60s');
    const sa = serviceAccount(prefix, 'old-token');
    process.env.KUBERNETES_SERVICE_HOST = '10.96.0.1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    const conn = (await resolveConnection({ mode: 'in_cluster', log: createLogger('error'), inClusterPathPrefix: prefix }))!;
    cleanups.push(() => conn.close());
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      expect(await conn.authHeaders()).toEqual({ Authorization: 'Bearer old-token' });
      writeFileSync(join(sa, 'token'), 'new-token');
      vi.setSystemTime(Date.now() + 30_000);
      expect(await conn.authHeaders()).toEqual({ Authorization: 'Bearer old-token' }); // cached for 60 s
      vi.setSystemTime(Date.now() + 31_000);
      expect(await conn.authHeaders()).toEqual({ Authorization: 'Bearer new-token' });
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses a server whose certificate the service account CA did not sign', async () => {
    const fake = await fakeServer({ token: 't' });
    const prefix = fresh('incluster-badca');
    serviceAccount(prefix, 't', pki.otherCa);
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = String(fake.port);
    const conn = (await resolveConnection({ mode: 'in_cluster', log: createLogger('error'), inClusterPathPrefix: prefix }))!;
    await expect(conn.request('/api/v1/pods')).rejects.toThrow(/certificate|self.signed|unable to verify/i);
    conn.close();
    expect(fake.requests).toHaveLength(0);
  });

  it('names the missing file when the service account is not mounted', async () => {
    process.env.KUBERNETES_SERVICE_HOST = '10.96.0.1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    const prefix = fresh('incluster-none');
    await expect(resolveConnection({ mode: 'in_cluster', log: createLogger('error'), inClusterPathPrefix: prefix })).rejects.toThrow(
      new KubeConnectionError(
        `in-cluster: service account file ${prefix}${SERVICE_ACCOUNT_DIR}/token does not exist (is automountServiceAccountToken off for the agent's pod?)`,
      ),
    );
  });
});

describe('kubeconfig', () => {
  it('uses the current context, or the one asked for; an unknown context is an error listing the others', async () => {
    const a = await fakeServer({ token: 'token-a' }, false);
    const b = await fakeServer({ token: 'token-b' }, false);
    const file = writeKubeconfig(dir, {
      server: a.url,
      token: 'token-a',
      insecure: true,
      context: 'prod',
      extraClusters: [{ name: 'staging-cluster', server: b.url, insecure: true }],
      extraUsers: [{ name: 'staging-user', token: 'token-b' }],
      extraContexts: [{ name: 'staging', cluster: 'staging-cluster', user: 'staging-user' }],
    }, 'contexts.yaml');
    const { log } = capture();
    const prod = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: file, log }))!;
    expect(prod.source).toBe(`kubeconfig ${file} context "prod"`);
    expect(prod.namespace).toBe('default');
    const staging = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: file, context: 'staging', log }))!;
    cleanups.push(() => {
      prod.close();
      staging.close();
    });
    for (const [conn, fake] of [[prod, a], [staging, b]] as const) {
      const res = await conn.request('/api/v1/namespaces/x/pods');
      res.resume();
      expect(res.statusCode).toBe(200);
      expect(fake.requests).toHaveLength(1);
    }
    await expect(resolveConnection({ mode: 'kubeconfig', kubeconfig: file, context: 'dev', log })).rejects.toThrow(`context "dev" not found (contexts: prod, staging)`);
  });

  it('names a referenced file that does not exist', async () => {
    const file = writeKubeconfig(dir, { server: 'https://10.0.0.1:6443', caFile: '/nonexistent/ca.crt', token: 't' }, 'missing-ca.yaml');
    await expect(resolveConnection({ mode: 'kubeconfig', kubeconfig: file, log: createLogger('error') })).rejects.toThrow(
      `kubeconfig ${file}: context "fake": cluster "fake-cluster" certificate-authority file /nonexistent/ca.crt does not exist`,
    );
    const file2 = writeKubeconfig(dir, { server: 'https://10.0.0.1:6443', caFile: pki.ca, clientCertFile: pki.clientCert, clientKeyFile: 'keys/agent.key' }, 'missing-key.yaml');
    await expect(resolveConnection({ mode: 'kubeconfig', kubeconfig: file2, log: createLogger('error') })).rejects.toThrow(
      `user "fake-user" client-key file ${join(dir, 'keys/agent.key')} does not exist`, // relative to the kubeconfig's folder
    );
    await expect(resolveConnection({ mode: 'kubeconfig', kubeconfig: join(dir, 'nope.yaml'), log: createLogger('error') })).rejects.toThrow(
      `kubernetes mode kubeconfig: no kubeconfig (kubeconfig ${join(dir, 'nope.yaml')} does not exist)`,
    );
  });

  it('refuses plain http unless insecure-skip-tls-verify is set (a @kubernetes/client-node rule), saying so', async () => {
    const file = writeKubeconfig(dir, { server: 'http://127.0.0.1:8001', token: 't' }, 'plain-http.yaml');
    await expect(resolveConnection({ mode: 'kubeconfig', kubeconfig: file, log: createLogger('error') })).rejects.toThrow(/plain http; @kubernetes\/client-node only allows that with insecure-skip-tls-verify: true/);
  });

  it('authenticates with a client certificate and verifies the server with the kubeconfig CA', async () => {
    const fake = new FakeKubeApiServer({ tls: { key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert), ca: readFileSync(pki.ca), requestClientCert: true } });
    await fake.start();
    cleanups.push(() => fake.close());
    const file = writeKubeconfig(dir, { server: fake.url, caFile: pki.ca, clientCertFile: pki.clientCert, clientKeyFile: pki.clientKey }, 'client-cert.yaml');
    const conn = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: file, log: createLogger('error') }))!;
    fake.create('pods', makePod({ name: 'p', namespace: 'x', nodeName: 'n' }));
    const lw = watchPods(conn);
    await lw.whenSynced();
    expect(lw.size).toBe(1);
    expect(fake.requests[0].clientCertCN).toBe('telemetry-agent');
    expect(fake.requests[0].authorization).toBeUndefined();
  });

  it('runs an exec plugin for a token, and runs it again after a 401', async () => {
    const fake = await fakeServer({ token: 'exec-1' });
    const tokenFile = fresh('exec-token');
    const runs = fresh('exec-runs');
    writeFileSync(tokenFile, 'exec-1');
    const plugin = fresh('kubectl-token.sh');
    writeFileSync(
      plugin,
      `#!/bin/sh\necho run >> '${runs}'\nprintf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$(cat '${tokenFile}')"\n`,
    );
    chmodSync(plugin, 0o755);
    const file = writeKubeconfig(dir, { server: fake.url, caFile: pki.ca, exec: { command: plugin, args: [] } }, 'exec.yaml');
    const conn = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: file, log: createLogger('error') }))!;
    const lw = watchPods(conn);
    await lw.whenSynced();
    await waitFor('watch', () => fake.activeWatches === 1, 5000, 10);
    expect(fake.requests[0].authorization).toBe('Bearer exec-1');
    expect(readFileSync(runs, 'utf8').trim().split('\n')).toHaveLength(1); // the credential is cached

    writeFileSync(tokenFile, 'exec-2');
    fake.setToken('exec-2');
    fake.breakWatches();
    await waitFor('watching with the new token', () => fake.activeWatches === 1 && fake.requests.at(-1)!.authorization === 'Bearer exec-2', 5000, 10);
    expect(readFileSync(runs, 'utf8').trim().split('\n')).toHaveLength(2);
  });

  it('merges the files KUBECONFIG lists like kubectl: missing ones skipped, the first definition and current-context win', async () => {
    const fake = await fakeServer({ token: 'first' }, false);
    const first = writeKubeconfig(dir, { server: fake.url, token: 'first', insecure: true, context: 'one' }, 'kc-first.yaml');
    const second = writeKubeconfig(dir, { server: 'https://10.9.9.9:6443', token: 'second', context: 'one', extraContexts: [{ name: 'two', cluster: 'one-cluster', user: 'one-user' }] }, 'kc-second.yaml');
    process.env.KUBECONFIG = [join(dir, 'missing.yaml'), first, second].join(delimiter);
    const { log, lines } = capture();
    const conn = (await resolveConnection({ mode: 'auto', log }))!;
    cleanups.push(() => conn.close());
    expect(conn.mode).toBe('kubeconfig');
    expect(conn.server).toBe(fake.url);
    expect(await conn.authHeaders()).toEqual({ Authorization: 'Bearer first' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`using kubeconfig ${first}${delimiter}${second} context "one"`);
  });
});

describe('kubeconfig keys as kubectl reads them (issue 11)', () => {
  const kubeconfigWith = (name: string, server: string, user: string[], cluster: string[] = []) => {
    const file = fresh(name);
    writeFileSync(
      file,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: c',
        '  cluster:',
        `    server: ${server}`,
        '    insecure-skip-tls-verify: true',
        ...cluster.map((l) => `    ${l}`),
        'users:',
        '- name: u',
        '  user:',
        ...user.map((l) => `    ${l}`),
        'contexts:',
        '- name: ctx',
        '  context: {cluster: c, user: u}',
        'current-context: ctx',
        '',
      ].join('\n'),
    );
    return file;
  };

  it('user.tokenFile (kubectl\'s key) is sent as the bearer token, read again after a 401, relative to the kubeconfig\'s folder', async () => {
    const fake = await fakeServer({ token: 'from-file-1' }, false);
    const folder = fresh('tokenfile-dir');
    mkdirSync(folder);
    writeFileSync(join(folder, 'agent.token'), 'from-file-1\n');
    const file = kubeconfigWith('tokenfile.yaml', fake.url, ['tokenFile: agent.token']);
    const moved = join(folder, 'kubeconfig');
    writeFileSync(moved, readFileSync(file));
    const conn = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: moved, log: createLogger('error') }))!;
    expect(await conn.authHeaders()).toEqual({ Authorization: 'Bearer from-file-1' });
    fake.create('pods', makePod({ name: 'p', namespace: 'x', nodeName: 'n' }));
    const lw = watchPods(conn);
    await lw.whenSynced();
    expect(fake.requests.every((r) => r.authorization === 'Bearer from-file-1')).toBe(true);

    // the token is rotated in the file; the server refuses the old one: one 401, then the new token
    writeFileSync(join(folder, 'agent.token'), 'from-file-2');
    fake.setToken('from-file-2');
    fake.breakWatches();
    await waitFor('watching with the rotated token', () => fake.activeWatches === 1 && fake.requests.at(-1)!.authorization === 'Bearer from-file-2', 5000, 10);
    expect(fake.count({ status: 401 })).toBe(1);
  });

  it('tokenFile wins over an inline token and is re-read once it is 60 s old; a missing one is named', async () => {
    const tokenFile = fresh('tf');
    writeFileSync(tokenFile, 'file-token');
    const file = kubeconfigWith('both.yaml', 'https://10.0.0.1:6443', ['token: inline-token', `tokenFile: ${tokenFile}`]);
    const conn = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: file, log: createLogger('error') }))!;
    cleanups.push(() => conn.close());
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      expect(await conn.authHeaders()).toEqual({ Authorization: 'Bearer file-token' });
      writeFileSync(tokenFile, 'file-token-2');
      vi.setSystemTime(Date.now() + 30_000);
      expect(await conn.authHeaders()).toEqual({ Authorization: 'Bearer file-token' });
      vi.setSystemTime(Date.now() + 31_000);
      expect(await conn.authHeaders()).toEqual({ Authorization: 'Bearer file-token-2' });
    } finally {
      vi.useRealTimers();
    }
    const missing = kubeconfigWith('missing-tf.yaml', 'https://10.0.0.1:6443', ['tokenFile: /nonexistent/agent.token']);
    await expect(resolveConnection({ mode: 'kubeconfig', kubeconfig: missing, log: createLogger('error') })).rejects.toThrow(
      new KubeConnectionError(`kubeconfig ${missing}: user "u" tokenFile /nonexistent/agent.token does not exist`),
    );
  });

  it('refuses the keys it would otherwise ignore, naming the key path: impersonated groups, uid, extras, token-file, unknown keys', async () => {
    const cases: [string[], string[], string][] = [
      [['token: t', 'as-groups: [system:masters]'], [], 'users[0] (u).user.as-groups: impersonating groups is not supported'],
      [['token: t', 'as-uid: "1"'], [], 'users[0] (u).user.as-uid: impersonating a uid is not supported'],
      [['token: t', 'as-user-extra: {a: [b]}'], [], 'users[0] (u).user.as-user-extra: impersonation extras are not supported'],
      [['token-file: /tmp/x'], [], 'users[0] (u).user.token-file: not a kubectl key (kubectl ignores it): use tokenFile'],
      [['tokn: t'], [], 'users[0] (u).user.tokn: unknown key'],
      [['token: t'], ['certificate-authority-dta: abc'], 'clusters[0] (c).cluster.certificate-authority-dta: unknown key'],
    ];
    for (const [user, cluster, message] of cases) {
      const file = kubeconfigWith('refused.yaml', 'https://10.0.0.1:6443', user, cluster);
      await expect(resolveConnection({ mode: 'kubeconfig', kubeconfig: file, log: createLogger('error') })).rejects.toThrow(`kubeconfig ${file}: ${message}`);
    }
    // the keys kubectl documents and the client honours are accepted
    const ok = kubeconfigWith('accepted.yaml', 'https://10.0.0.1:6443', ['token: t', 'as: someone', 'extensions: []'], ['tls-server-name: api.example', 'disable-compression: true']);
    const conn = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: ok, log: createLogger('error') }))!;
    expect(await conn.authHeaders()).toEqual({ Authorization: 'Bearer t', 'Impersonate-User': 'someone' });
    conn.close();
  });
});

describe('mode auto', () => {
  it('turns itself off with exactly one clear line when there is neither a service account nor a kubeconfig', async () => {
    const { log, lines } = capture();
    expect(await resolveConnection({ mode: 'auto', log })).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ INFO {2}kubernetes: mode auto turns the Kubernetes API off: /);
    expect(lines[0]).toContain('not in a cluster (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT not set)');
    expect(lines[0]).toContain(`no kubeconfig (KUBECONFIG not set, ${join(process.env.HOME!, '.kube', 'config')} does not exist)`);
  });

  it('falls back from a broken in-cluster setup and a broken kubeconfig, then turns off with one warning naming both', async () => {
    process.env.KUBERNETES_SERVICE_HOST = '10.96.0.1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    const prefix = fresh('auto-nosa');
    mkdirSync(join(process.env.HOME!, '.kube'));
    writeFileSync(join(process.env.HOME!, '.kube', 'config'), readFileSync(writeKubeconfig(dir, { server: 'https://10.0.0.1:6443', caFile: '/etc/nope/ca.crt', token: 't' }, 'broken.yaml')));
    const { log, lines } = capture();
    expect(await resolveConnection({ mode: 'auto', log, inClusterPathPrefix: prefix })).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ WARN {2}kubernetes: mode auto turns the Kubernetes API off: /);
    expect(lines[0]).toContain(`${prefix}${SERVICE_ACCOUNT_DIR}/token does not exist`);
    expect(lines[0]).toContain('certificate-authority file /etc/nope/ca.crt does not exist');
  });

  it('prefers in-cluster, then ~/.kube/config', async () => {
    const fake = await fakeServer({ token: 'sa' });
    const prefix = fresh('auto-incluster');
    serviceAccount(prefix, 'sa');
    mkdirSync(join(process.env.HOME!, '.kube'));
    writeFileSync(join(process.env.HOME!, '.kube', 'config'), readFileSync(writeKubeconfig(dir, { server: fake.url, caFile: pki.ca, token: 'home' }, 'home.yaml')));
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = String(fake.port);
    const a = (await resolveConnection({ mode: 'auto', log: createLogger('error'), inClusterPathPrefix: prefix }))!;
    expect(a.mode).toBe('in_cluster');
    delete process.env.KUBERNETES_SERVICE_HOST;
    const b = (await resolveConnection({ mode: 'auto', log: createLogger('error'), inClusterPathPrefix: prefix }))!;
    expect(b.mode).toBe('kubeconfig');
    expect(await b.authHeaders()).toEqual({ Authorization: 'Bearer home' });
    a.close();
    b.close();
  });

  it('disabled is silent', async () => {
    const { log, lines } = capture();
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    expect(await resolveConnection({ mode: 'disabled', log })).toBeUndefined();
    expect(lines).toEqual([]);
  });
});
