import { journalDirectories } from '../agent/sources/journald/config.ts';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, matchesGlob, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { DaemonSet, Deployment, type IDaemonSet, type IDeployment } from 'kubernetes-models/apps/v1';
import {
  ConfigMap,
  Namespace,
  Service,
  ServiceAccount,
  type IConfigMap,
  type IContainer,
  type IPodSpec,
  type IService,
  type IServiceAccount,
} from 'kubernetes-models/v1';
import {
  ClusterRole,
  ClusterRoleBinding,
  Role,
  RoleBinding,
  type IClusterRole,
  type IClusterRoleBinding,
  type IRole,
  type IRoleBinding,
} from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { NetworkPolicy, type INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { parseConfig } from '../agent/config/load.ts';
import type { AgentConfig } from '../agent/config/schema.ts';
import { agentNodeFlags } from '../agent/runtime_flags.ts';
import type { SourceConfig } from '../agent/sources/registry.ts';

/**
 * deploy/: the kustomize builds (base and cluster-events overlay) validated against the Kubernetes
 * schemas (kubernetes-models), plus what the issue asks of them: read-only host mounts, a writable
 * hostPath data_dir, NODE_NAME from the downward API, tolerations, resources, a locked-down container,
 * probes, scrape annotations, RBAC exactly as the README documents it, configs the agent accepts,
 * and the same V8 flags and files as the agent's own launcher.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const KUBECTL = process.env.KUBECTL ?? 'kubectl';
const NAMESPACE = 'telemetry-agent';
const CLI_IN_IMAGE = '/app/agent/cli.ts';

const kubectlProbe = spawnSync(KUBECTL, ['version', '--client'], { encoding: 'utf8' });
const haveKubectl = !kubectlProbe.error && kubectlProbe.status === 0;
/** Locally a missing kubectl skips the build tests; in CI (CI set) they run and fail. */
const skipBuilds = !haveKubectl && !process.env.CI;

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> } } & Record<string, unknown>;
type SourceOf<T extends SourceConfig['type']> = Extract<SourceConfig, { type: T }>;
type ModelClass = new (data: never) => { validate(): void };

/**
 * Every kind the manifests may contain, with its schema. A new kind must be added here to pass. Like
 * the API's OpenAPI schemas these check types, formats, enums and required fields but let unknown
 * fields through, so the fields that matter are also asserted one by one below.
 */
const MODELS: Record<string, ModelClass> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/Deployment': Deployment,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
};

const builds = new Map<string, K8sObject[]>();
/** `kubectl kustomize <dir>`, parsed; cached per folder. */
function build(dir: string): K8sObject[] {
  const cached = builds.get(dir);
  if (cached) return cached;
  const run = spawnSync(KUBECTL, ['kustomize', join(DEPLOY, dir)], { encoding: 'utf8' });
  if (run.error) throw new Error(`${KUBECTL} kustomize: ${run.error.message} (install kubectl: apt-get install -y kubernetes-client)`);
  expect(run.status, `kubectl kustomize deploy/${dir} failed:\n${run.stderr}`).toBe(0);
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(run.stdout)) {
    expect(doc.errors.map((e) => e.message), `YAML of deploy/${dir}`).toEqual([]);
    const value = doc.toJS() as K8sObject | null;
    if (value !== null) objects.push(value);
  }
  builds.set(dir, objects);
  return objects;
}

function find<T>(objects: K8sObject[], kind: string, name: string): T {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name);
  expect(found, `${kind} ${name}`).toHaveLength(1);
  return found[0] as unknown as T;
}

function podOf(workload: IDaemonSet | IDeployment): { spec: IPodSpec; labels: Record<string, string>; annotations: Record<string, string> } {
  const template = workload.spec!.template;
  return { spec: template.spec!, labels: template.metadata?.labels ?? {}, annotations: template.metadata?.annotations ?? {} };
}

/** Kubernetes quantities as numbers: cores for CPU, bytes for memory. */
function quantity(q: string | number | undefined): number {
  expect(q, 'quantity').toBeDefined();
  const m = /^(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi)?$/.exec(String(q));
  expect(m, `quantity ${String(q)}`).not.toBeNull();
  const unit = { '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[m![2] ?? '']!;
  return Number(m![1]) * unit;
}

function portNumber(container: IContainer, port: string | number | undefined): number {
  if (typeof port === 'number') return port;
  const named = container.ports?.find((p) => p.name === port);
  expect(named, `container port named ${String(port)}`).toBeDefined();
  return named!.containerPort;
}

/** The config a workload runs: its `--config` file, from the ConfigMap mounted at that folder, parsed by the agent. */
function configOf(objects: K8sObject[], workload: IDaemonSet | IDeployment, env: NodeJS.ProcessEnv = { NODE_NAME: 'node-a' }) {
  const { spec } = podOf(workload);
  const container = spec.containers[0]!;
  const args = container.args ?? [];
  const file = args[args.indexOf('--config') + 1]!;
  expect(args.slice(0, 2)).toEqual(['run', '--config']);
  const mount = container.volumeMounts!.find((m) => m.mountPath === dirname(file));
  expect(mount, `a volume mounted at ${dirname(file)}`).toBeDefined();
  expect(mount!.readOnly).toBe(true);
  const volume = spec.volumes!.find((v) => v.name === mount!.name)!;
  expect(volume.configMap, `${mount!.name} is a ConfigMap volume`).toBeDefined();
  const cm = find<IConfigMap>(objects, 'ConfigMap', volume.configMap!.name!);
  const text = cm.data?.[posix.basename(file)];
  expect(text, `ConfigMap ${cm.metadata!.name} has ${posix.basename(file)}`).toBeDefined();
  return { text: text!, config: parseConfig(text!, `ConfigMap ${cm.metadata!.name}`, env) };
}

/** The container checks both workloads share: launcher, identity, probes, resources, lock-down. */
function checkAgentContainer(workload: IDaemonSet | IDeployment, config: AgentConfig): IContainer {
  const { spec, annotations } = podOf(workload);
  expect(spec.containers).toHaveLength(1);
  const c = spec.containers[0]!;

  expect(c.command, 'the V8 flags of agent/cli.ts').toEqual(['node', ...agentNodeFlags(), CLI_IN_IMAGE]);
  expect(agentNodeFlags()).toContain('--max-old-space-size=256');

  const nodeName = c.env?.find((e) => e.name === 'NODE_NAME');
  expect(nodeName?.valueFrom?.fieldRef?.fieldPath).toBe('spec.nodeName');
  expect(config.node_name).toBe('node-a');

  const port = Number(config.server.listen.split(':').pop());
  expect(c.ports?.find((p) => p.name === 'metrics')?.containerPort).toBe(port);
  expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
  expect(portNumber(c, c.livenessProbe?.httpGet?.port)).toBe(port);
  expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
  expect(portNumber(c, c.readinessProbe?.httpGet?.port)).toBe(port);
  expect(annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': '/metrics' });

  const { requests, limits } = c.resources ?? {};
  for (const r of ['cpu', 'memory']) {
    expect(quantity(requests?.[r]), `requests.${r} <= limits.${r}`).toBeLessThanOrEqual(quantity(limits?.[r]));
  }
  // Room above V8's old-space ceiling for the young generation, code and buffers: V8's own limit trips first.
  const oldSpaceMiB = Number(agentNodeFlags().find((f) => f.startsWith('--max-old-space-size='))!.split('=')[1]);
  expect(quantity(limits!.memory) / 1024 ** 2).toBeGreaterThanOrEqual(oldSpaceMiB + 96);

  const sc = c.securityContext ?? {};
  expect(sc.readOnlyRootFilesystem).toBe(true);
  expect(sc.allowPrivilegeEscalation).toBe(false);
  expect(sc.privileged ?? false).toBe(false);
  expect(sc.capabilities?.drop).toEqual(['ALL']);
  expect(sc.capabilities?.add ?? []).toEqual([]);
  expect(spec.hostNetwork ?? false).toBe(false);
  expect(spec.hostPID ?? false).toBe(false);
  expect(spec.hostIPC ?? false).toBe(false);
  expect(spec.securityContext?.seccompProfile?.type).toBe('RuntimeDefault');
  // A token only where the config reads the API (the account itself never mounts one by default).
  expect(spec.automountServiceAccountToken).toBe(config.kubernetes.mode !== 'disabled');
  expect(spec.terminationGracePeriodSeconds! * 1000, 'grace period above shutdown_timeout').toBeGreaterThan(config.shutdown_timeout);

  // Nothing writable but data_dir and emptyDirs (the root filesystem is read-only).
  for (const m of c.volumeMounts ?? []) {
    const v = spec.volumes!.find((x) => x.name === m.name)!;
    if (!m.readOnly) expect(m.mountPath === config.data_dir || v.emptyDir !== undefined, `${m.mountPath} is writable`).toBe(true);
  }
  expect(c.volumeMounts?.some((m) => m.mountPath === '/tmp' && !m.readOnly)).toBe(true);
  return c;
}

/** README "Deploying" > "RBAC" rows: `sa|group|resource|verb` for the rules in this release. */
function documentedRules(): { now: Map<string, Set<string>>; identities: Set<string> } {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('### RBAC');
  expect(start, 'README section "### RBAC"').toBeGreaterThanOrEqual(0);
  const end = readme.indexOf('\n#', start + 4);
  const now = new Map<string, Set<string>>();
  const identities = new Set<string>();
  const names = (cell: string) => [...cell.matchAll(/`([^`]*)`/g)].map((m) => m[1]!.replace(/^""$/, ''));
  for (const line of readme.slice(start, end < 0 ? undefined : end).split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (cells.length < 5 || !/^`[a-z-]+`$/.test(cells[0]!)) continue;
    const [sa, groups, resources, verbs, when] = cells as [string, string, string, string, string];
    if (when !== 'this release') continue;
    const account = names(sa)[0]!;
    identities.add(account);
    const set = now.get(account) ?? new Set<string>();
    now.set(account, set);
    if (resources === '—') continue; // the row that says "nothing"
    // "`namespaces` named `kube-system`": a rule limited by resourceNames
    const [kinds, named] = resources.split(' named ');
    const suffix = named ? `@${names(named).join(',')}` : '';
    for (const g of names(groups)) for (const r of names(kinds!)) for (const v of verbs.split(',').map((x) => x.trim())) set.add(`${g}|${r}|${v}${suffix}`);
  }
  return { now, identities };
}

/** The ClusterRole rules bound to a ServiceAccount, as `group|resource|verb`. */
function grantedRules(objects: K8sObject[], account: string): Set<string> {
  const out = new Set<string>();
  for (const b of objects.filter((o) => o.kind === 'ClusterRoleBinding') as unknown as IClusterRoleBinding[]) {
    if (!b.subjects?.some((s) => s.kind === 'ServiceAccount' && s.name === account && s.namespace === NAMESPACE)) continue;
    expect(b.roleRef.kind).toBe('ClusterRole');
    const role = find<IClusterRole>(objects, 'ClusterRole', b.roleRef.name);
    for (const rule of role.rules ?? []) {
      const suffix = rule.resourceNames?.length ? `@${rule.resourceNames.join(',')}` : '';
      for (const g of rule.apiGroups ?? []) for (const r of rule.resources ?? []) for (const v of rule.verbs) out.add(`${g}|${r}|${v}${suffix}`);
    }
  }
  // Roles: the agent's own namespace only (the leader-election Lease)
  for (const b of objects.filter((o) => o.kind === 'RoleBinding') as unknown as IRoleBinding[]) {
    if (!b.subjects?.some((s) => s.kind === 'ServiceAccount' && s.name === account && s.namespace === NAMESPACE)) continue;
    expect(b.roleRef.kind).toBe('Role');
    const role = find<IRole>(objects, 'Role', b.roleRef.name);
    for (const rule of role.rules ?? []) {
      for (const g of rule.apiGroups ?? []) for (const r of rule.resources ?? []) for (const v of rule.verbs) out.add(`${g}|${r}|${v}`);
    }
  }
  return out;
}

function checkCommon(objects: K8sObject[], dir: string): void {
  for (const o of objects) {
    const key = `${o.apiVersion}/${o.kind}`;
    const Model = MODELS[key];
    expect(Model, `deploy/${dir}: no schema for ${key} (add it to MODELS)`).toBeDefined();
    expect(() => new Model!(o as never).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
    expect(o.metadata.labels?.['app.kubernetes.io/name'], `${o.kind} ${o.metadata.name} label`).toBe('telemetry-agent');
    if (!['Namespace', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind)) expect(o.metadata.namespace, `${o.kind} ${o.metadata.name}`).toBe(NAMESPACE);
  }
  const ids = objects.map((o) => `${o.kind}/${o.metadata.name}`);
  expect(new Set(ids).size, 'no duplicates').toBe(ids.length);

  // Host folders need the privileged Pod Security level; nothing else in the pod does.
  const ns = find<K8sObject>(objects, 'Namespace', NAMESPACE);
  expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('privileged');

  // RBAC: read-only verbs cluster-wide, and exactly the README's rules for this release.
  for (const role of objects.filter((o) => o.kind === 'ClusterRole') as unknown as IClusterRole[]) {
    for (const rule of role.rules ?? []) {
      expect(rule.verbs.filter((v) => !['get', 'list', 'watch'].includes(v)), `ClusterRole ${role.metadata!.name} verbs`).toEqual([]);
      expect(rule.resources?.filter((r) => ['secrets', 'configmaps', 'nodes/proxy'].includes(r)) ?? []).toEqual([]);
    }
  }
  const documented = documentedRules();
  const accounts = (objects.filter((o) => o.kind === 'ServiceAccount') as unknown as IServiceAccount[]).map((sa) => sa.metadata!.name!);
  for (const account of accounts) {
    expect(documented.identities, `README RBAC table has "this release" rows for ${account}`).toContain(account);
    expect([...grantedRules(objects, account)].sort(), `rules of ${account}`).toEqual([...documented.now.get(account)!].sort());
    expect(find<IServiceAccount>(objects, 'ServiceAccount', account).automountServiceAccountToken).toBe(false);
  }
  // Namespaced Roles exist only for leader election: Leases in the agent's namespace.
  for (const role of objects.filter((o) => o.kind === 'Role') as unknown as IRole[]) {
    expect(role.metadata!.namespace).toBe(NAMESPACE);
    for (const rule of role.rules ?? []) expect({ groups: rule.apiGroups, resources: rule.resources }).toEqual({ groups: ['coordination.k8s.io'], resources: ['leases'] });
  }

  // One image for every container, set by the kustomization's `images` (not the bare placeholder).
  const images = objects
    .filter((o) => o.kind === 'DaemonSet' || o.kind === 'Deployment')
    .flatMap((o) => podOf(o as unknown as IDaemonSet).spec.containers.map((c) => c.image));
  expect(new Set(images).size).toBe(1);
  expect(images[0]).toMatch(/^[^:]+\/telemetry-agent:[\w.-]+$/);
}

describe('deploy/ manifests', () => {
  it('kubectl is available for the kustomize builds', (ctx) => {
    if (haveKubectl) return;
    const why = `${KUBECTL} not found (${kubectlProbe.error?.message ?? kubectlProbe.stderr}): install kubectl (apt-get install -y kubernetes-client)`;
    if (process.env.CI) throw new Error(why);
    ctx.skip(`${why}; the kustomize build tests are skipped`);
  });

  describe.skipIf(skipBuilds)('kubectl kustomize deploy/ (the node agent)', () => {
    it('builds objects that match the Kubernetes schemas, with RBAC as documented', () => {
      const objects = build('.');
      expect(objects.map((o) => o.kind).sort()).toEqual(
        ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet', 'Namespace', 'Service', 'ServiceAccount'].sort(),
      );
      checkCommon(objects, '.');
    });

    it('runs one locked-down agent per node with read-only host mounts and a hostPath data_dir', () => {
      const objects = build('.');
      const ds = find<IDaemonSet>(objects, 'DaemonSet', 'telemetry-agent');
      const { spec, labels } = podOf(ds);
      const { config } = configOf(objects, ds);
      const c = checkAgentContainer(ds, config);

      expect(spec.serviceAccountName).toBe('telemetry-agent');
      expect(spec.tolerations, 'tolerate every taint').toContainEqual({ operator: 'Exists' });
      expect(ds.spec!.selector.matchLabels).toEqual(Object.fromEntries(Object.entries(labels).filter(([k]) => k in ds.spec!.selector.matchLabels!)));
      expect(c.securityContext?.runAsUser, 'root-owned 0640 log files: uid 0, no capabilities').toBe(0);

      const hostMounts = new Map<string, { readOnly: boolean; hostPath: string; type?: string }>();
      for (const m of c.volumeMounts!) {
        const v = spec.volumes!.find((x) => x.name === m.name)!;
        if (!v.hostPath) continue;
        // Symlinks in /var/log/containers point to absolute host paths: the same path inside and out.
        expect(m.mountPath, `${m.name} mounted at its host path`).toBe(v.hostPath.path);
        hostMounts.set(m.mountPath, { readOnly: m.readOnly === true, hostPath: v.hostPath.path, type: v.hostPath.type });
      }
      for (const path of ['/var/log', '/var/lib/docker/containers', '/run/log/journal', '/etc/machine-id']) {
        expect(hostMounts.get(path)?.readOnly, `${path} mounted read-only`).toBe(true);
      }
      expect(hostMounts.get('/etc/machine-id')?.type, 'never create a host machine-id').toBe('File');
      expect(hostMounts.get(config.data_dir), 'data_dir is a writable hostPath').toMatchObject({ readOnly: false, type: 'DirectoryOrCreate' });
      expect([...hostMounts].filter(([, m]) => !m.readOnly).map(([p]) => p), 'the only writable host folder').toEqual([config.data_dir]);

      // Everything the sources read lies under a read-only host mount.
      const underReadOnlyMount = (p: string) => [...hostMounts].some(([mp, m]) => m.readOnly && (p === mp || p.startsWith(`${mp}/`)));
      const sources = Object.values(config.sources);
      const containers = sources.find((s): s is SourceOf<'container_logs'> => s.type === 'container_logs');
      expect(containers?.include).toEqual(['/var/log/containers/*.log']);
      for (const p of containers!.include) expect(underReadOnlyMount(p), p).toBe(true);
      const journals = sources.filter((s): s is SourceOf<'journald'> => s.type === 'journald');
      expect(journals.map((j) => j.units)).toEqual([['kubelet.service', 'containerd.service']]);
      const journalDirs = journalDirectories(journals[0]!);
      for (const d of journalDirs) expect(underReadOnlyMount(d), d).toBe(true);
      expect(journalDirs).toEqual(['/var/log/journal', '/run/log/journal']);

      // The node agent does not read its own output back (with a stdout output that would loop forever).
      const ownLog = `/var/log/containers/telemetry-agent-x7k2p_${NAMESPACE}_${c.name}-${'0123456789abcdef'.repeat(4)}.log`;
      expect(containers!.exclude.some((g) => matchesGlob(ownLog, g)), `${ownLog} excluded`).toBe(true);
      expect(containers!.exclude.some((g) => matchesGlob(`/var/log/containers/web-1_default_${c.name}-${'0'.repeat(64)}.log`, g))).toBe(false);
      // issue 13: the default output is not the agent's own stdout; a disk buffer holds a collector outage on the node.
      expect(Object.values(config.outputs).map((o) => o.type)).toEqual(['otlp']);
      expect(config.outputs.collector).toMatchObject({ inputs: ['containers', 'journal'], buffer: { type: 'disk', when_full: 'block' } });
      // Evicted last under node pressure.
      expect(spec.priorityClassName).toBe('system-node-critical');
      // pod_startup runs on every node: no Lease, no Event watch, spans to the collector.
      const pods = sources.find((s): s is SourceOf<'kubernetes_events'> => s.type === 'kubernetes_events');
      expect(pods).toMatchObject({ watch_events: false, signals: { trackers: ['pod_startup'], spans: true } });
      expect(c.env!.find((e) => e.name === 'OTEL_EXPORTER_OTLP_ENDPOINT')?.value).toBe(config.outputs.collector!.type === 'otlp' ? (config.outputs.collector as { endpoint?: string }).endpoint : undefined);

      const svc = find<IService>(objects, 'Service', 'telemetry-agent-metrics');
      expect(labels).toMatchObject(svc.spec!.selector!);
      expect(svc.spec!.ports!.map((p) => p.targetPort)).toEqual(['metrics']);
    });

    it('ships a config that needs NODE_NAME rather than guessing the node from the pod host name', () => {
      const objects = build('.');
      const ds = find<IDaemonSet>(objects, 'DaemonSet', 'telemetry-agent');
      expect(() => configOf(objects, ds, {})).toThrow(/NODE_NAME is not set/);
      expect(configOf(objects, ds).text).toBe(readFileSync(join(DEPLOY, 'base/agent.yaml'), 'utf8'));
    });
  });

  describe.skipIf(skipBuilds)('kubectl kustomize deploy/overlays/cluster-events', () => {
    it('adds a single-replica cluster agent with its own identity to the unchanged node agent', () => {
      const base = build('.');
      const objects = build('overlays/cluster-events');
      checkCommon(objects, 'overlays/cluster-events');
      for (const o of base) expect(find(objects, o.kind, o.metadata.name), `${o.kind} ${o.metadata.name} as in the base`).toEqual(o);
      expect(objects.length - base.length).toBe(7); // ServiceAccount, ClusterRole, binding, lease Role, binding, ConfigMap, Deployment

      const d = find<IDeployment>(objects, 'Deployment', 'telemetry-agent-cluster');
      expect(d.spec!.replicas).toBe(1);
      expect(d.spec!.strategy?.type, 'never two cluster agents at once').toBe('Recreate');
      const { spec } = podOf(d);
      expect(spec.serviceAccountName).toBe('telemetry-agent-cluster');
      const { config } = configOf(objects, d);
      checkAgentContainer(d, config);
      expect(spec.securityContext?.runAsNonRoot).toBe(true);
      expect(spec.volumes?.filter((v) => v.hostPath) ?? [], 'no host folders').toEqual([]);
      expect(spec.tolerations ?? []).toEqual([]);
      // the cluster events source, holder identity and Lease namespace from the downward API
      expect(Object.values(config.sources)).toEqual([expect.objectContaining({ type: 'kubernetes_events', leader_election: true })]);
      // issue 13: spans on, to a documented endpoint; kept scheduled; events to the collector, not stdout.
      expect(Object.values(config.sources)[0]).toMatchObject({ signals: { spans: true } });
      expect(spec.priorityClassName).toBe('system-cluster-critical');
      expect(Object.values(config.outputs).map((o) => o.type)).toEqual(['otlp']);
      const endpoint = (podOf(d).spec.containers[0]!.env ?? []).find((e) => e.name === 'OTEL_EXPORTER_OTLP_ENDPOINT')?.value;
      expect(endpoint).toMatch(/^http:\/\/[a-z0-9.-]+\.svc:4318$/);
      const dataVolume = spec.volumes!.find((v) => v.name === 'data')!;
      expect(dataVolume.emptyDir?.sizeLimit).toBe('256Mi');
      expect((config.outputs.collector as { buffer: { max_size?: number } }).buffer.max_size!).toBeLessThan(256 * 1024 * 1024);
      const env = podOf(d).spec.containers[0]!.env ?? [];
      expect(env.map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath])).toEqual(
        expect.arrayContaining([
          ['POD_NAME', 'metadata.name'],
          ['POD_NAMESPACE', 'metadata.namespace'],
        ]),
      );
    });
  });

  describe.skipIf(skipBuilds)('kubectl kustomize deploy/overlays/stdout', () => {
    it('is the base with every record on the agents\' stdout (for a first look without a log backend), the same sources', () => {
      const base = build('.');
      const objects = build('overlays/stdout');
      checkCommon(objects, 'overlays/stdout');
      expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(base.map((o) => `${o.kind}/${o.metadata.name}`).sort());
      for (const o of base.filter((x) => x.kind !== 'ConfigMap')) expect(find(objects, o.kind, o.metadata.name), `${o.kind} ${o.metadata.name} as in the base`).toEqual(o);
      const ds = find<IDaemonSet>(objects, 'DaemonSet', 'telemetry-agent');
      const { config } = configOf(objects, ds);
      const baseConfig = configOf(base, find<IDaemonSet>(base, 'DaemonSet', 'telemetry-agent')).config;
      expect(Object.values(config.outputs)).toEqual([expect.objectContaining({ type: 'stdout', encoding: 'json', inputs: ['containers', 'journal'] })]);
      const { pods: podsHere, ...sources } = config.sources;
      const { pods: podsThere, ...baseSources } = baseConfig.sources;
      expect(sources).toEqual(baseSources);
      expect({ ...podsHere, signals: { ...(podsHere as { signals: object }).signals, spans: true } }).toEqual(podsThere);
    });
  });

  describe.skipIf(skipBuilds)('kubectl kustomize deploy/network-policy', () => {
    it('lets only Prometheus reach the agents\' port: every agent pod selected, ingress on the metrics port from Prometheus pods only', () => {
      const objects = build('network-policy');
      expect(objects.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`)).toEqual([`NetworkPolicy ${NAMESPACE}/telemetry-agent-metrics`]);
      const np = objects[0] as unknown as INetworkPolicy;
      expect(() => new NetworkPolicy(np as never).validate()).not.toThrow();
      const ds = find<IDaemonSet>(build('.'), 'DaemonSet', 'telemetry-agent');
      const dep = parseYaml(readFileSync(join(DEPLOY, 'overlays/cluster-events/deployment.yaml'), 'utf8')) as IDeployment;
      for (const w of [ds, dep]) expect(podOf(w).labels, 'the policy selects the agent pods').toMatchObject(np.spec!.podSelector!.matchLabels!);
      expect(np.spec!.policyTypes).toEqual(['Ingress']);
      expect(np.spec!.ingress).toHaveLength(1);
      const rule = np.spec!.ingress![0]!;
      // One peer with both selectors: Prometheus pods in the monitoring namespace (not any pod there, not Prometheus anywhere).
      expect(rule.from).toEqual([
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } },
      ]);
      const port = podOf(ds).spec.containers[0]!.ports!.find((p) => p.name === 'metrics')!;
      expect(rule.ports).toEqual([{ protocol: 'TCP', port: port.name }]);
    });
  });

  it('has a PodMonitor that selects the agents and their metrics port', () => {
    const pm = parseYaml(readFileSync(join(DEPLOY, 'prometheus/podmonitor.yaml'), 'utf8')) as K8sObject & {
      spec: { selector: { matchLabels: Record<string, string> }; namespaceSelector: { matchNames: string[] }; podMetricsEndpoints: Record<string, unknown>[] };
    };
    // A CRD (monitoring.coreos.com/v1): not in kubernetes-models, so its shape is checked by hand.
    expect(pm).toMatchObject({ apiVersion: 'monitoring.coreos.com/v1', kind: 'PodMonitor', metadata: { namespace: NAMESPACE } });
    expect(Object.keys(pm.spec).filter((k) => !['selector', 'namespaceSelector', 'podMetricsEndpoints', 'jobLabel', 'podTargetLabels'].includes(k))).toEqual([]);
    expect(pm.spec.namespaceSelector.matchNames).toEqual([NAMESPACE]);
    const ds = parseYaml(readFileSync(join(DEPLOY, 'base/daemonset.yaml'), 'utf8')) as IDaemonSet;
    const dep = parseYaml(readFileSync(join(DEPLOY, 'overlays/cluster-events/deployment.yaml'), 'utf8')) as IDeployment;
    for (const w of [ds, dep]) expect(podOf(w).labels).toMatchObject(pm.spec.selector.matchLabels);
    for (const e of pm.spec.podMetricsEndpoints) {
      expect(Object.keys(e).filter((k) => !['port', 'path', 'interval', 'scrapeTimeout', 'relabelings', 'metricRelabelings'].includes(k))).toEqual([]);
      expect(e).toMatchObject({ port: 'metrics', path: '/metrics' });
    }

    const scrape = parseYaml(readFileSync(join(DEPLOY, 'prometheus/scrape-config.yaml'), 'utf8')) as {
      scrape_configs: { job_name: string; relabel_configs: { source_labels: string[]; regex: string; action?: string }[] }[];
    };
    const keep = scrape.scrape_configs[0]!.relabel_configs.find((r) => r.action === 'keep')!;
    expect(keep.source_labels).toEqual(['__meta_kubernetes_pod_label_app_kubernetes_io_name', '__meta_kubernetes_pod_container_port_name']);
    expect(keep.regex).toBe('telemetry-agent;metrics');
  });

  it('has a Dockerfile that starts the agent as the manifests do and ships every file it imports', () => {
    const dockerfile = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8');
    const instructions = dockerfile
      .replace(/\\\n/g, ' ')
      .split('\n')
      .filter((l) => l.trim() && !l.trimStart().startsWith('#'));
    const json = (name: string) => JSON.parse(instructions.findLast((l) => l.startsWith(`${name} `))!.slice(name.length + 1)) as string[];
    const ds = parseYaml(readFileSync(join(DEPLOY, 'base/daemonset.yaml'), 'utf8')) as IDaemonSet;
    const c = podOf(ds).spec.containers[0]!;
    expect(json('ENTRYPOINT')).toEqual(['node', ...agentNodeFlags(), CLI_IN_IMAGE]);
    expect(json('ENTRYPOINT')).toEqual(c.command);
    expect(json('CMD')).toEqual(c.args);

    expect(instructions).toContain('ARG NODE_IMAGE=node:24-bookworm-slim');
    expect(instructions.filter((l) => l.startsWith('FROM ${NODE_IMAGE}'))).toHaveLength(2); // multi-stage, one base
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    expect(dockerfile).toMatch(/apt-get install -y --no-install-recommends systemd/);
    expect(instructions.findLast((l) => l.startsWith('WORKDIR '))).toBe('WORKDIR /app');

    // What the image's `node /app/agent/cli.ts` loads: files under the copied folders (not under
    // node_modules: Node does not strip types there) and production dependencies only.
    const copied = instructions.filter((l) => /^COPY (?!--from)/.test(l)).map((l) => l.split(/\s+/)[1]!);
    const ignore = readFileSync(join(DEPLOY, 'Dockerfile.dockerignore'), 'utf8');
    for (const c of copied) expect(ignore.split('\n'), `${c} allowed in Dockerfile.dockerignore`).toContain(`!${c}`);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const { files, packages } = runtimeImports(join(ROOT, 'agent/cli.ts'));
    expect(files.length).toBeGreaterThan(20);
    for (const f of files) expect(copied, `${f} is in the image`).toContain(f.split('/')[0]);
    expect(copied).toContain('package.json'); // agent/version.ts reads it
    for (const p of packages) expect(Object.keys(pkg.dependencies), `${p} is a production dependency`).toContain(p);
  });
});

/**
 * The files and packages Node loads when it runs `entry`: static imports and re-exports, side-effect
 * imports and literal dynamic imports, following relative paths. `import type` is erased by type
 * stripping and not followed.
 */
function runtimeImports(entry: string): { files: string[]; packages: string[] } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const queue = [entry];
  const builtins = new Set(builtinModules);
  while (queue.length) {
    const file = queue.pop()!;
    const rel = relative(ROOT, file);
    if (files.has(rel)) continue;
    expect(existsSync(file), `${rel} exists`).toBe(true);
    files.add(rel);
    const source = readFileSync(file, 'utf8');
    const specifiers = [
      ...[...source.matchAll(/^\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)].filter((m) => !m[1]).map((m) => m[2]!),
      ...[...source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]!),
    ];
    for (const s of specifiers) {
      if (s.startsWith('.')) queue.push(resolve(dirname(file), s));
      else if (!s.startsWith('node:') && !builtins.has(s)) packages.add(s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!);
    }
  }
  return { files: [...files], packages: [...packages] };
}
