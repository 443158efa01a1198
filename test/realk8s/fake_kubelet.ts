import type { ControlPlane } from './control_plane.ts';

/**
 * Stands in for the kubelet of one node: nothing runs, but the control plane sees what a kubelet
 * would make it see, through the API only:
 * - registers the Node (Ready, 4 CPU / 8Gi / 110 pods, InternalIP 127.0.0.1);
 * - renews the node's Lease in kube-node-lease every `heartbeatMs` (the node lifecycle controller's
 *   heartbeat) and posts Ready=True again when the controller had marked the node Unknown;
 * - marks pods bound to the node Running and Ready (conditions, container statuses, start times),
 *   so Deployments become Available;
 * - force-deletes the node's pods that have a deletionTimestamp, as a kubelet does once their
 *   containers are gone.
 * `down()` stops all of it (a node that lost power: no heartbeat, terminating pods stay), `up()` resumes.
 */

export interface FakeKubeletOptions {
  heartbeatMs?: number;
  pollMs?: number;
  /** Extra node labels. */
  labels?: Record<string, string>;
}

interface PodItem {
  metadata: { name: string; namespace: string; uid: string; deletionTimestamp?: string };
  spec: { containers: { name: string; image: string }[]; initContainers?: { name: string; image: string }[] };
  status?: { phase?: string };
}

export class FakeKubelet {
  readonly node: string;
  private readonly cp: ControlPlane;
  private readonly o: Required<FakeKubeletOptions>;
  private running = false;
  private isDown = false;
  private podsHeld = false;
  private loop: Promise<void> | undefined;
  private lastHeartbeat = 0;
  private wake: (() => void) | undefined;
  /** Pods already marked Running (uid), so each is patched once. */
  private readonly started = new Set<string>();
  private readonly finalizing = new Set<string>();

  constructor(cp: ControlPlane, node: string, o: FakeKubeletOptions = {}) {
    this.cp = cp;
    this.node = node;
    this.o = { heartbeatMs: 2000, pollMs: 500, labels: {}, ...o };
  }

  /** Registers the node, takes its Lease, and starts tending it. */
  async start(): Promise<void> {
    await this.register();
    await this.heartbeat();
    this.running = true;
    this.loop = this.run();
  }

  /** Stops heartbeating and tending pods, as a node that went away. */
  down(): void {
    this.isDown = true;
  }

  /** Keeps heartbeating but starts no pod (a node whose runtime stalls): a rollout waits. */
  holdPods(): void {
    this.podsHeld = true;
  }

  releasePods(): void {
    this.podsHeld = false;
    this.wake?.();
  }

  up(): void {
    this.isDown = false;
    this.lastHeartbeat = 0;
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  /**
   * Deletes the Node while it is still Ready, then stops. (A NotReady node deleted while the node
   * lifecycle controller queues it for NoExecute tainting stays in that rate-limited queue in v1.20,
   * failing "node not found" for good and starving the evictions of every later node.)
   */
  async remove(): Promise<void> {
    if (this.isDown) {
      this.up();
      await waitForReady(this.cp, this.node);
    }
    await this.cp.request('DELETE', `/api/v1/nodes/${this.node}`);
    await this.stop();
  }

  private async run(): Promise<void> {
    while (this.running) {
      if (!this.isDown) {
        try {
          if (Date.now() - this.lastHeartbeat >= this.o.heartbeatMs) await this.heartbeat();
          await this.tendPods();
        } catch {
          // the API server may be restarting: try again at the next tick
        }
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.o.pollMs);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  private async register(): Promise<void> {
    const t = seconds(Date.now());
    const cond = (type: string, status: string, reason: string) => ({ type, status, reason, message: 'fake kubelet', lastHeartbeatTime: t, lastTransitionTime: t });
    const r = await this.cp.request('POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: this.node, labels: { 'kubernetes.io/hostname': this.node, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', ...this.o.labels } },
      spec: {},
      status: {
        capacity: { cpu: '4', memory: '8Gi', pods: '110', 'ephemeral-storage': '50Gi' },
        allocatable: { cpu: '4', memory: '8Gi', pods: '110', 'ephemeral-storage': '50Gi' },
        addresses: [
          { type: 'InternalIP', address: '127.0.0.1' },
          { type: 'Hostname', address: this.node },
        ],
        conditions: [
          cond('Ready', 'True', 'KubeletReady'),
          cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory'),
          cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
          cond('PIDPressure', 'False', 'KubeletHasSufficientPID'),
        ],
        nodeInfo: {
          architecture: 'amd64',
          operatingSystem: 'linux',
          osImage: 'kube-telemetry-agent fake node',
          kernelVersion: 'fake',
          kubeletVersion: 'v1.20.2',
          kubeProxyVersion: 'v1.20.2',
          containerRuntimeVersion: 'fake://0.0.0',
          machineID: '',
          systemUUID: '',
          bootID: '',
        },
      },
    });
    if (r.status !== 201 && r.status !== 409) throw new Error(`registering node ${this.node}: HTTP ${r.status} ${r.text}`);
  }

  private async heartbeat(): Promise<void> {
    const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${this.node}`;
    const renewTime = micro(Date.now());
    const r = await this.cp.request('PATCH', path, { spec: { renewTime } }, { contentType: 'application/merge-patch+json' });
    if (r.status === 404) {
      const node = await this.cp.must<{ metadata: { uid: string } }>('GET', `/api/v1/nodes/${this.node}`);
      await this.cp.must('POST', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.node, namespace: 'kube-node-lease', ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: this.node, uid: node.metadata.uid }] },
        spec: { holderIdentity: this.node, leaseDurationSeconds: 40, renewTime },
      });
    } else if (r.status !== 200) {
      throw new Error(`node lease: HTTP ${r.status}`);
    }
    this.lastHeartbeat = Date.now();
    await this.readyAgain();
  }

  /** After the node controller marked the node Unknown, a returning kubelet posts Ready=True. */
  private async readyAgain(): Promise<void> {
    const node = await this.cp.must<{ status?: { conditions?: { type: string; status: string }[] } }>('GET', `/api/v1/nodes/${this.node}`);
    if (node.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True') return;
    const t = seconds(Date.now());
    const cond = (type: string, status: string, reason: string) => ({ type, status, reason, message: 'fake kubelet', lastHeartbeatTime: t, lastTransitionTime: t });
    await this.cp.must(
      'PATCH',
      `/api/v1/nodes/${this.node}/status`,
      {
        status: {
          conditions: [
            cond('Ready', 'True', 'KubeletReady'),
            cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory'),
            cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
            cond('PIDPressure', 'False', 'KubeletHasSufficientPID'),
          ],
        },
      },
      'application/strategic-merge-patch+json',
    );
  }

  private async tendPods(): Promise<void> {
    const list = await this.cp.must<{ items: PodItem[] }>('GET', `/api/v1/pods?fieldSelector=${encodeURIComponent(`spec.nodeName=${this.node}`)}`);
    for (const pod of list.items) {
      const { namespace, name, uid } = pod.metadata;
      if (pod.metadata.deletionTimestamp) {
        if (this.finalizing.has(uid)) continue;
        this.finalizing.add(uid);
        const r = await this.cp.request('DELETE', `/api/v1/namespaces/${namespace}/pods/${name}`, { kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: 0, preconditions: { uid } });
        if (r.status !== 200 && r.status !== 404 && r.status !== 409) this.finalizing.delete(uid);
        continue;
      }
      if (this.podsHeld || pod.status?.phase !== 'Pending' || this.started.has(uid)) continue;
      const t = seconds(Date.now());
      const running = (c: { name: string; image: string }) => ({
        name: c.name,
        image: c.image,
        imageID: `fake://${c.image}`,
        containerID: `fake://${uid.slice(0, 8)}-${c.name}`,
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: t } },
      });
      const done = (c: { name: string; image: string }) => ({
        name: c.name,
        image: c.image,
        imageID: `fake://${c.image}`,
        containerID: `fake://${uid.slice(0, 8)}-${c.name}`,
        ready: true,
        restartCount: 0,
        state: { terminated: { exitCode: 0, reason: 'Completed', startedAt: t, finishedAt: t } },
      });
      const ip = `10.244.${(parseInt(uid.slice(0, 2), 16) % 250) + 1}.${(parseInt(uid.slice(2, 4), 16) % 250) + 2}`;
      const r = await this.cp.request(
        'PATCH',
        `/api/v1/namespaces/${namespace}/pods/${name}/status`,
        {
          metadata: { uid },
          status: {
            phase: 'Running',
            hostIP: '127.0.0.1',
            podIP: ip,
            podIPs: [{ ip }],
            startTime: t,
            conditions: [
              { type: 'Initialized', status: 'True', lastTransitionTime: t },
              { type: 'ContainersReady', status: 'True', lastTransitionTime: t },
              { type: 'Ready', status: 'True', lastTransitionTime: t },
            ],
            ...(pod.spec.initContainers?.length ? { initContainerStatuses: pod.spec.initContainers.map(done) } : {}),
            containerStatuses: pod.spec.containers.map(running),
          },
        },
        { contentType: 'application/strategic-merge-patch+json' },
      );
      if (r.status === 200) this.started.add(uid);
    }
  }
}

async function waitForReady(cp: ControlPlane, node: string): Promise<void> {
  for (let i = 0; i < 120; i++) {
    const n = await cp.request<{ status?: { conditions?: { type: string; status: string }[] } }>('GET', `/api/v1/nodes/${node}`);
    if (n.status !== 200 || n.body.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True') return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** RFC 3339 in whole seconds, as the kubelet writes condition times. */
export function seconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** MicroTime, as Lease times are written. */
export function micro(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}
