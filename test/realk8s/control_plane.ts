import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { freePort, waitFor } from '../helpers/child_agent.ts';
import { onPath } from '../helpers/tools.ts';

/**
 * A real Kubernetes control plane on loopback for the tests: Debian's etcd, and kube-apiserver,
 * kube-controller-manager and kube-scheduler v1.20.2 built by `test/realk8s/build.sh`. Free ports, its
 * own state folder (PKI made with openssl, static tokens, kubeconfigs, etcd data, logs, audit log),
 * RBAC authorization and the default admission plugins. No kubelet: `fake_kubelet.ts` plays the nodes.
 *
 * Identities (static tokens): `admin` (system:masters), the controller-manager and scheduler, and the
 * agent's two service accounts of deploy/ (`telemetry-agent/telemetry-agent` for the node agents,
 * `telemetry-agent/telemetry-agent-cluster` for cluster events) as `system:serviceaccount:...` users,
 * so the manifests' own RBAC applies to them. Out of the box they may only do discovery.
 */

export const DEFAULT_BUILD_DIR = '/var/cache/kube-telemetry-agent/realk8s';
const HOW_TO_BUILD =
  'build them once per machine with `test/realk8s/build.sh` (root or sudo, Debian bookworm, about 20 minutes; ' +
  `binaries in \${REALK8S_BUILD:-${DEFAULT_BUILD_DIR}}/bin), or point REALK8S_BIN at a folder holding them`;

export interface Binaries {
  apiserver: string;
  controllerManager: string;
  scheduler: string;
  etcd: string;
}

/** The binaries, or why they cannot be used. */
export function findBinaries(): { ok: true; bin: Binaries } | { ok: false; why: string } {
  const dir = process.env.REALK8S_BIN ?? join(process.env.REALK8S_BUILD ?? DEFAULT_BUILD_DIR, 'bin');
  const missing: string[] = [];
  const exe = (p: string | undefined): string | undefined => {
    if (!p) return undefined;
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      return undefined;
    }
  };
  const pick = (name: string) => exe(join(dir, name)) ?? (missing.push(join(dir, name)), '');
  const bin = { apiserver: pick('kube-apiserver'), controllerManager: pick('kube-controller-manager'), scheduler: pick('kube-scheduler'), etcd: '' };
  bin.etcd = exe(process.env.REALK8S_ETCD) ?? onPath('etcd') ?? (missing.push('etcd (apt-get install etcd-server)'), '');
  if (!onPath('openssl')) missing.push('openssl');
  if (!onPath('kubectl')) missing.push('kubectl (apt-get install kubernetes-client)');
  if (missing.length) return { ok: false, why: `real Kubernetes control plane not available (missing ${missing.join(', ')}): ${HOW_TO_BUILD}` };
  return { ok: true, bin };
}

/**
 * For a suite file: the binaries, or undefined after one line saying how to get them (a laptop
 * skips); with `CI` set a missing control plane fails the file instead.
 */
export function controlPlaneOrSkip(): Binaries | undefined {
  const found = findBinaries();
  if (found.ok) return found.bin;
  if (process.env.CI) throw new Error(found.why);
  console.warn(`skipping the real-control-plane suite: ${found.why}`);
  return undefined;
}

export interface Identity {
  /** The authenticated user name, e.g. system:serviceaccount:telemetry-agent:telemetry-agent. */
  user: string;
  tokenFile: string;
  /** A kubeconfig naming the token file with kubectl's `tokenFile` key. */
  kubeconfig: string;
}

export interface ControlPlaneOptions {
  /** controller-manager --node-monitor-grace-period; default 40s (upstream). */
  nodeMonitorGracePeriod?: string;
  /** controller-manager --node-monitor-period; default 5s (upstream). */
  nodeMonitorPeriod?: string;
  /** Extra kube-apiserver flags. */
  apiserverFlags?: string[];
}

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
  text: string;
}

type Component = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler';

const SERVICE_IP = '10.0.0.1';
const AGENT_NAMESPACE = 'telemetry-agent';
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL'); // a crashed test process leaves nothing behind
});

export class ControlPlane {
  readonly dir: string;
  readonly server: string;
  readonly caFile: string;
  readonly adminKubeconfig: string;
  readonly auditLog: string;
  /** The node agents' ServiceAccount (deploy/base). */
  readonly nodeAgent: Identity;
  /** The cluster agent's ServiceAccount (deploy/overlays/cluster-events). */
  readonly clusterAgent: Identity;
  private readonly bin: Binaries;
  private readonly o: ControlPlaneOptions;
  private readonly ports: { etcd: number; peer: number; api: number; kcm: number; sched: number };
  private readonly adminToken: string;
  private readonly procs = new Map<Component, ChildProcess>();
  private readonly ca: Buffer;
  private readonly agent: https.Agent;
  private attached = false;
  private stopping = false;

  private constructor(bin: Binaries, o: ControlPlaneOptions, ports: ControlPlane['ports'], attach?: SavedState) {
    this.bin = bin;
    this.o = o;
    this.ports = ports;
    this.dir = attach?.dir ?? mkdtempSync(join(tmpdir(), 'kta-realk8s-'));
    this.server = `https://127.0.0.1:${ports.api}`;
    this.caFile = join(this.dir, 'pki', 'ca.crt');
    this.auditLog = join(this.dir, 'logs', 'audit.log');
    this.adminKubeconfig = join(this.dir, 'admin.kubeconfig');
    const identity = (name: string): Identity => ({
      user: `system:serviceaccount:${AGENT_NAMESPACE}:${name}`,
      tokenFile: join(this.dir, `${name}.token`),
      kubeconfig: join(this.dir, `${name}.kubeconfig`),
    });
    this.nodeAgent = identity('telemetry-agent');
    this.clusterAgent = identity('telemetry-agent-cluster');
    if (attach) {
      this.adminToken = attach.adminToken;
      this.ca = readFileSync(this.caFile);
      this.agent = new https.Agent({ ca: this.ca, keepAlive: true });
      return;
    }
    chmodSync(this.dir, 0o700);
    for (const d of ['pki', 'etcd', 'logs']) mkdirSync(join(this.dir, d));
    this.makePki();
    this.ca = readFileSync(this.caFile);
    this.agent = new https.Agent({ ca: this.ca, keepAlive: true });
    const token = () => randomBytes(24).toString('hex');
    this.adminToken = token();
    const tokens: string[] = [`${this.adminToken},admin,admin-uid,"system:masters"`];
    for (const id of [this.nodeAgent, this.clusterAgent]) {
      const t = token();
      const name = id.user.split(':').pop()!;
      tokens.push(`${t},${id.user},${name}-uid,"system:serviceaccounts,system:serviceaccounts:${AGENT_NAMESPACE}"`);
      writeFileSync(id.tokenFile, `${t}\n`, { mode: 0o600 });
      this.kubeconfig(name, { tokenFile: id.tokenFile });
    }
    const kcmToken = token();
    const schedToken = token();
    tokens.push(`${kcmToken},system:kube-controller-manager,kcm-uid`, `${schedToken},system:kube-scheduler,sched-uid`);
    writeFileSync(join(this.dir, 'tokens.csv'), `${tokens.join('\n')}\n`, { mode: 0o600 });
    this.kubeconfig('admin', { token: this.adminToken });
    this.kubeconfig('controller-manager', { token: kcmToken });
    this.kubeconfig('scheduler', { token: schedToken });
    writeFileSync(
      join(this.dir, 'audit-policy.yaml'),
      // Metadata level, answered requests only: who did which verb on which resource, with the status code
      'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n',
    );
  }

  /**
   * For development: a control plane started by `node test/realk8s/serve.ts` and left running, found
   * through the state file it wrote (REALK8S_ATTACH). `stop()` then leaves it running.
   */
  static attach(bin: Binaries, stateFile: string): ControlPlane {
    const state = JSON.parse(readFileSync(stateFile, 'utf8')) as SavedState;
    const cp = new ControlPlane(bin, state.options, state.ports, state);
    cp.attached = true;
    return cp;
  }

  /** What `attach` needs, written next to the state folder. */
  save(file: string): void {
    const state: SavedState = { dir: this.dir, ports: this.ports, adminToken: this.adminToken, options: this.o };
    writeFileSync(file, JSON.stringify(state), { mode: 0o600 });
  }

  /** Starts etcd, the API server, the controller-manager and the scheduler; resolves once all are healthy. */
  static async start(bin: Binaries, o: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const ports = { etcd: await freePort(), peer: await freePort(), api: await freePort(), kcm: await freePort(), sched: await freePort() };
    const cp = new ControlPlane(bin, o, ports);
    try {
      await cp.startEtcd();
      await cp.startApiserver();
      cp.startControllers();
      await Promise.all([cp.healthy('kube-controller-manager', ports.kcm), cp.healthy('kube-scheduler', ports.sched)]);
      await cp.namespaceReady('default');
      return cp;
    } catch (e) {
      await cp.stop();
      throw e;
    }
  }

  /** A kubeconfig for `name` (a token inline, or kubectl's `tokenFile`). */
  kubeconfig(name: string, auth: { token: string } | { tokenFile: string }): string {
    const file = join(this.dir, `${name}.kubeconfig`);
    const user = 'token' in auth ? `    token: ${auth.token}` : `    tokenFile: ${auth.tokenFile}`;
    writeFileSync(
      file,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: realk8s',
        '  cluster:',
        `    server: ${this.server}`,
        `    certificate-authority: ${this.caFile}`,
        'users:',
        `- name: ${name}`,
        '  user:',
        user,
        'contexts:',
        `- name: ${name}@realk8s`,
        '  context:',
        '    cluster: realk8s',
        `    user: ${name}`,
        `current-context: ${name}@realk8s`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    return file;
  }

  /** One request as admin (or with another bearer token); JSON in, JSON out. */
  request<T = unknown>(method: string, path: string, body?: unknown, o: { contentType?: string; token?: string; timeoutMs?: number } = {}): Promise<ApiResponse<T>> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        `${this.server}${path}`,
        {
          method,
          agent: this.agent,
          headers: {
            Authorization: `Bearer ${o.token ?? this.adminToken}`,
            Accept: 'application/json',
            ...(payload === undefined ? {} : { 'Content-Type': o.contentType ?? 'application/json', 'Content-Length': Buffer.byteLength(payload) }),
          },
          signal: AbortSignal.timeout(o.timeoutMs ?? 30_000),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              parsed = undefined;
            }
            resolve({ status: res.statusCode ?? 0, body: parsed as T, text });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** A request that must succeed (2xx), returning the body. */
  async must<T = unknown>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const r = await this.request<T>(method, path, body, { contentType });
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status}: ${r.text.slice(0, 500)}`);
    return r.body;
  }

  /** kubectl against this server (admin unless `kubeconfig`); never throws, returns what it printed. */
  kubectl(args: string[], o: { input?: string; kubeconfig?: string } = {}): { code: number; stdout: string; stderr: string } {
    try {
      const stdout = execFileSync('kubectl', ['--kubeconfig', o.kubeconfig ?? this.adminKubeconfig, ...args], {
        input: o.input,
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe'],
        timeout: 60_000,
      });
      return { code: 0, stdout, stderr: '' };
    } catch (e) {
      const err = e as { status?: number; stdout?: string; stderr?: string };
      return { code: err.status ?? 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
    }
  }

  /** kubectl that must succeed. */
  kubectlOk(args: string[], o: { input?: string; kubeconfig?: string } = {}): string {
    const r = this.kubectl(args, o);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr.slice(0, 2000)}`);
    return r.stdout;
  }

  /** Creates a namespace and waits until pods may be created in it (its default ServiceAccount and token exist). */
  async createNamespace(name: string, labels: Record<string, string> = {}): Promise<void> {
    const r = await this.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
    if (r.status !== 201 && r.status !== 409) throw new Error(`creating namespace ${name}: HTTP ${r.status} ${r.text}`);
    await this.namespaceReady(name);
  }

  /** The audit log's entries so far (Metadata level, ResponseStarted and ResponseComplete); `from`: a byte offset of `auditBytes()`. */
  auditEntries(from = 0): AuditEntry[] {
    if (!existsSync(this.auditLog)) return [];
    return readFileSync(this.auditLog)
      .subarray(from)
      .toString('utf8')
      .split('\n')
      .filter((l) => l.startsWith('{') && l.endsWith('}')) // whole lines only: `from` may fall inside one being written
      .map((l) => JSON.parse(l) as AuditEntry);
  }

  /** How long the audit log is now: where entries written after this moment start. */
  auditBytes(): number {
    return existsSync(this.auditLog) ? statSync(this.auditLog).size : 0;
  }

  /** Restarts kube-apiserver (etcd keeps the state); resolves when it is ready again. */
  async restartApiserver(downMs = 0): Promise<void> {
    await this.stopOne('kube-apiserver');
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await this.startApiserver();
  }

  /** etcd's current revision (the resourceVersion the API server hands out). */
  async etcdRevision(): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${this.ports.etcd}/v3/maintenance/status`, { method: 'POST', body: '{}' });
    const body = (await res.json()) as { header: { revision: string } };
    return Number(body.header.revision);
  }

  /**
   * Compacts etcd at its current revision, as the API server itself does every 5 minutes: every
   * watch resumed from an older resourceVersion (once the watch cache no longer holds it) gets 410.
   */
  async compactEtcd(): Promise<number> {
    const revision = await this.etcdRevision();
    const res = await fetch(`http://127.0.0.1:${this.ports.etcd}/v3/kv/compaction`, { method: 'POST', body: JSON.stringify({ revision: String(revision), physical: true }) });
    if (!res.ok) throw new Error(`etcd compaction: HTTP ${res.status} ${await res.text()}`);
    return revision;
  }

  /** The tail of a component's log, for failure messages. */
  logTail(c: Component, lines = 40): string {
    const f = join(this.dir, 'logs', `${c}.log`);
    return existsSync(f) ? readFileSync(f, 'utf8').split('\n').slice(-lines).join('\n') : '';
  }

  /** Stops everything, newest first, and removes the state folder (kept when KTA_KEEP_REALK8S is set). */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.attached) {
      this.agent.destroy();
      return;
    }
    for (const c of ['kube-scheduler', 'kube-controller-manager', 'kube-apiserver', 'etcd'] as const) await this.stopOne(c);
    this.agent.destroy();
    if (process.env.KTA_KEEP_REALK8S) console.warn(`realk8s state kept in ${this.dir}`);
    else rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- processes ----

  /**
   * `restart`: started again when it exits on its own, as the kubelet restarts a static pod. The
   * controller-manager and the scheduler exit by design when they lose their leader Lease (an API
   * server down longer than their renew deadline).
   */
  private launch(c: Component, cmd: string, args: string[], restart = false): ChildProcess {
    const log = openSync(join(this.dir, 'logs', `${c}.log`), 'a');
    const p = spawn(cmd, args, { stdio: ['ignore', log, log] });
    running.add(p);
    p.once('exit', () => {
      running.delete(p);
      if (restart && this.procs.get(c) === p && !this.stopping) setTimeout(() => this.procs.get(c) === p && !this.stopping && this.launch(c, cmd, args, true), 1000);
    });
    this.procs.set(c, p);
    return p;
  }

  private async stopOne(c: Component): Promise<void> {
    const p = this.procs.get(c);
    if (!p) return;
    this.procs.delete(c);
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  private alive(c: Component): void {
    const p = this.procs.get(c);
    if (!p || p.exitCode !== null || p.signalCode !== null) throw new Error(`${c} exited:\n${this.logTail(c)}`);
  }

  private async startEtcd(): Promise<void> {
    const { etcd, peer } = this.ports;
    this.launch('etcd', this.bin.etcd, [
      '--name=realk8s',
      `--data-dir=${join(this.dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${etcd}`,
      `--advertise-client-urls=http://127.0.0.1:${etcd}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=realk8s=http://127.0.0.1:${peer}`,
      '--initial-cluster-state=new',
      '--logger=zap',
      '--log-outputs=stderr',
      // the tests write a few thousand objects: no need for the 100 MB+ of preallocated WAL
      '--quota-backend-bytes=1073741824',
    ]);
    await waitFor(
      'etcd healthy',
      async () => {
        this.alive('etcd');
        return fetch(`http://127.0.0.1:${etcd}/health`).then((r) => r.ok, () => false);
      },
      30_000,
      200,
    );
  }

  private async startApiserver(): Promise<void> {
    const pki = join(this.dir, 'pki');
    this.launch('kube-apiserver', this.bin.apiserver, [
      `--etcd-servers=http://127.0.0.1:${this.ports.etcd}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${this.ports.api}`,
      '--insecure-port=0',
      // a loopback address cannot be an Endpoints IP
      '--endpoint-reconciler-type=none',
      '--kubelet-preferred-address-types=InternalIP,Hostname',
      `--tls-cert-file=${join(pki, 'apiserver.crt')}`,
      `--tls-private-key-file=${join(pki, 'apiserver.key')}`,
      `--client-ca-file=${this.caFile}`,
      `--token-auth-file=${join(this.dir, 'tokens.csv')}`,
      `--requestheader-client-ca-file=${join(pki, 'front-proxy-ca.crt')}`,
      '--requestheader-allowed-names=front-proxy-client',
      '--requestheader-username-headers=X-Remote-User',
      '--requestheader-group-headers=X-Remote-Group',
      '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      `--proxy-client-cert-file=${join(pki, 'front-proxy-client.crt')}`,
      `--proxy-client-key-file=${join(pki, 'front-proxy-client.key')}`,
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      '--service-cluster-ip-range=10.0.0.0/24',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
      '--api-audiences=https://kubernetes.default.svc.cluster.local',
      '--allow-privileged=true',
      '--event-ttl=1h',
      `--audit-policy-file=${join(this.dir, 'audit-policy.yaml')}`,
      `--audit-log-path=${this.auditLog}`,
      '--audit-log-format=json',
      '--audit-log-maxsize=1000',
      '--audit-log-mode=blocking',
      ...(this.o.apiserverFlags ?? []),
    ]);
    await waitFor(
      'kube-apiserver ready',
      async () => {
        this.alive('kube-apiserver');
        return this.request('GET', '/readyz', undefined, { timeoutMs: 5000 }).then((r) => r.status === 200, () => false);
      },
      120_000,
      250,
    );
  }

  private startControllers(): void {
    const pki = join(this.dir, 'pki');
    const kc = (n: string) => join(this.dir, `${n}.kubeconfig`);
    this.launch('kube-controller-manager', this.bin.controllerManager, [
      `--kubeconfig=${kc('controller-manager')}`,
      `--authentication-kubeconfig=${kc('controller-manager')}`,
      `--authorization-kubeconfig=${kc('controller-manager')}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${this.ports.kcm}`,
      '--port=0',
      '--leader-elect=true',
      // each controller acts, and writes its Events, as its own service account
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${join(pki, 'sa.key')}`,
      `--root-ca-file=${this.caFile}`,
      `--cluster-signing-cert-file=${this.caFile}`,
      `--cluster-signing-key-file=${join(pki, 'ca.key')}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      `--node-monitor-grace-period=${this.o.nodeMonitorGracePeriod ?? '40s'}`,
      `--node-monitor-period=${this.o.nodeMonitorPeriod ?? '5s'}`,
      '--controllers=*,bootstrapsigner,tokencleaner',
    ], true);
    this.launch('kube-scheduler', this.bin.scheduler, [
      `--kubeconfig=${kc('scheduler')}`,
      `--authentication-kubeconfig=${kc('scheduler')}`,
      `--authorization-kubeconfig=${kc('scheduler')}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${this.ports.sched}`,
      '--port=0',
      '--leader-elect=true',
    ], true);
  }

  private async healthy(c: Component, port: number): Promise<void> {
    await waitFor(
      `${c} healthy`,
      () => {
        this.alive(c);
        return new Promise<boolean>((resolve) => {
          const req = https.get(`https://127.0.0.1:${port}/healthz`, { rejectUnauthorized: false, signal: AbortSignal.timeout(5000) }, (res) => {
            res.resume();
            resolve(res.statusCode === 200);
          });
          req.on('error', () => resolve(false));
        });
      },
      90_000,
      250,
    );
  }

  /** The ServiceAccount admission plugin refuses pods until the namespace's default account has its token. */
  private async namespaceReady(name: string): Promise<void> {
    await waitFor(
      `namespace ${name}: default ServiceAccount with a token`,
      async () => {
        const r = await this.request<{ secrets?: { name: string }[] }>('GET', `/api/v1/namespaces/${name}/serviceaccounts/default`);
        return r.status === 200 && (r.body.secrets?.length ?? 0) > 0;
      },
      90_000,
      250,
    );
  }

  // ---- PKI ----

  private makePki(): void {
    const pki = join(this.dir, 'pki');
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: pki, stdio: ['ignore', 'ignore', 'pipe'] });
    const key = (name: string) => ssl('genrsa', '-out', `${name}.key`, '2048');
    const ca = (name: string, cn: string) => {
      key(name);
      ssl('req', '-x509', '-new', '-nodes', '-key', `${name}.key`, '-sha256', '-days', '3650', '-subj', `/CN=${cn}`, '-out', `${name}.crt`);
    };
    const signed = (name: string, cn: string, caName: string, ext: string) => {
      key(name);
      writeFileSync(join(pki, `${name}.ext`), ext);
      ssl('req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`);
      ssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.crt`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-days', '365', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
    };
    ca('ca', 'kta-realk8s-ca');
    signed(
      'apiserver',
      'kube-apiserver',
      'ca',
      'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' +
        `subjectAltName=IP:127.0.0.1,IP:${SERVICE_IP},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n`,
    );
    // the front-proxy (requestheader) CA the controller-manager and scheduler read for delegated authentication
    ca('front-proxy-ca', 'kta-realk8s-front-proxy-ca');
    signed('front-proxy-client', 'front-proxy-client', 'front-proxy-ca', 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
    // service-account token signing
    key('sa');
    ssl('rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub');
  }
}

interface SavedState {
  dir: string;
  ports: { etcd: number; peer: number; api: number; kcm: number; sched: number };
  adminToken: string;
  options: ControlPlaneOptions;
}

/** One line of the API server's audit log (the fields the tests read). */
export interface AuditEntry {
  /** One request: a watch has two entries (ResponseStarted, ResponseComplete) under one id. */
  auditID: string;
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string; groups?: string[] };
  objectRef?: { resource?: string; namespace?: string; name?: string; apiGroup?: string; apiVersion?: string; subresource?: string };
  responseStatus?: { code?: number };
  requestReceivedTimestamp: string;
  annotations?: Record<string, string>;
}
