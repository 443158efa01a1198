import { claim, deployment, deploymentStatus, iso, node, replicaSet, startupPod, storageClass, volume, type PodTimes } from './cluster_objects.ts';
import { makeEvent, type FakeKubeApiServer, type FakeObject } from './kube_api_server.ts';

/**
 * The demo's scripted cluster story, played through the simulated API server in wall-clock time,
 * as the controllers and the kubelet would write it (objects and Events):
 *
 *   +0 s   shop/checkout rolls out revision 2: a new ReplicaSet, its pod on this node starts and is Ready
 *   +8 s   revision 3 with an image tag that does not exist: ErrImagePull, ImagePullBackOff
 *   +16 s  `kubectl rollout undo`: revision 4 revives revision 2's ReplicaSet; the failed pod goes
 *   +20 s  two claims: db/data-postgres-0 is provisioned in 4 s; db/scratch-postgres-0 fails (quota)
 *          and is given up at the provisioning timeout
 *   +26 s  node demo-node-2 stops reporting: NotReady, its three pods evicted at +31 s, Ready at +36 s
 *   +30 s  checkout scaled to 2: a second pod starts on this node (image already present), Ready at +33 s
 *   +32 s  a third claim, db/wal-postgres-0, provisioned in 3 s
 *
 * Times in objects are whole seconds (metav1.Time), so the durations the agent measures are exact.
 */

export interface StoryStep {
  /** Seconds after the story's start. */
  at: number;
  /** What a person should know happened, for the console. */
  say?: string;
  run: () => void;
}

export const STORY_NAMESPACES = ['shop', 'db'];
const CHECKOUT = { namespace: 'shop', name: 'checkout', uid: '5b1c3e2a-0c41-4f6e-9d1a-8c7b6a5f4e31' };
/** Revision 1 is the ReplicaSet whose pod writes the node simulator's checkout logs. */
const RS1 = { name: 'checkout-6c9d7f8b54', uid: '0b7e4c1a-2d3f-4a5b-8c6d-7e8f9a0b1c21' };
const RS2 = { name: 'checkout-7f8d9c6b5', uid: '1c8f5d2b-3e4a-4b6c-9d7e-8f9a0b1c2d32' };
const RS3 = { name: 'checkout-5d6c7b8a9', uid: '2d9a6e3c-4f5b-4c7d-8e9f-9a0b1c2d3e43' };
const POD2 = { name: 'checkout-7f8d9c6b5-n4x8w', uid: '3e0b7f4d-5a6c-4d8e-9f0a-0b1c2d3e4f54' };
const POD3 = { name: 'checkout-5d6c7b8a9-q2w3e', uid: '4f1c8a5e-6b7d-4e9f-8a1b-1c2d3e4f5a65' };
const POD4 = { name: 'checkout-7f8d9c6b5-z9v2m', uid: '5a2d9b6f-7c8e-4f0a-8b2c-2d3e4f5a6b7c' };
const GOOD_PVC = { namespace: 'db', name: 'data-postgres-0', uid: '6a2d9b6f-7c8e-4f0a-9b2c-2d3e4f5a6b76' };
const BAD_PVC = { namespace: 'db', name: 'scratch-postgres-0', uid: '7b3e0c7a-8d9f-4a1b-8c3d-3e4f5a6b7c87' };
const WAL_PVC = { namespace: 'db', name: 'wal-postgres-0', uid: '0e5b2f8c-1a3d-4c6e-9f7a-8b9c0d1e2f3a' };
const WAL_PV = { name: 'pvc-0e5b2f8c-1a3d-4c6e-9f7a-8b9c0d1e2f3a', uid: '1f6c3a9d-2b4e-4d7f-8a8b-9c0d1e2f3a4b' };
const PV = { name: 'pvc-6a2d9b6f-7c8e-4f0a-9b2c-2d3e4f5a6b76', uid: '8c4f1d8b-9e0a-4b2c-9d4e-4f5a6b7c8d98' };
const NODE2 = { name: 'demo-node-2', uid: '9d5a2e9c-0f1b-4c3d-8e5f-5a6b7c8d9ea9' };
const NODE2_PODS = ['search-6d8f7c9b5-h7j2k', 'search-6d8f7c9b5-p3q8r', 'cart-5c7b9d8f6-w2e4t'];
const EBS = 'ebs.csi.aws.com';
const QUOTA = 'csi.example.com';
/** The deployment controller has seen every spec change (the fake bumps generation on each update). */
const CAUGHT_UP = 1_000_000;

export class ClusterStory {
  private readonly api: FakeKubeApiServer;
  private readonly nodeName: string;
  private readonly say: (at: number, text: string) => void;
  private timers: NodeJS.Timeout[] = [];
  private startMs = 0;

  constructor(api: FakeKubeApiServer, nodeName: string, say: (at: number, text: string) => void) {
    this.api = api;
    this.nodeName = nodeName;
    this.say = say;
  }

  /** The objects that exist before the story: the cluster as it was when the agent started. */
  seed(nowMs: number): void {
    const long = nowMs - 3600_000;
    this.put('replicasets', replicaSet({ ...checkoutRs(RS1), revision: 1, created: long, replicas: 1, available: 1 }));
    this.put('deployments', this.dep(1, 1, { replicas: 1, updated: 1, available: 1, progressing: { reason: 'NewReplicaSetAvailable', at: long + 30_000, since: long } }));
    this.put('storageclasses', storageClass('gp3', EBS, 'Immediate'));
    this.put('storageclasses', storageClass('fast', QUOTA, 'Immediate'));
    this.put('nodes', node({ name: this.nodeName, uid: 'e6b1f0ad-1a2c-4d4e-9f6a-6b7c8d9eaf0b', created: long - 86400_000, ready: true, since: long }));
    this.put('nodes', node({ ...NODE2, created: long - 86400_000, ready: true, since: long }));
  }

  /** Schedules every step from `startMs` (a whole second, after the agent started). */
  start(startMs: number): StoryStep[] {
    this.startMs = startMs;
    const steps = this.steps();
    for (const s of steps) {
      const timer = setTimeout(() => {
        s.run();
        if (s.say) this.say(s.at, s.say);
      }, Math.max(0, startMs + s.at * 1000 - Date.now()));
      timer.unref();
      this.timers.push(timer);
    }
    return steps;
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
  }

  /** When the last step runs, in seconds after the start. */
  get lengthSeconds(): number {
    return Math.max(...this.steps().map((s) => s.at));
  }

  private steps(): StoryStep[] {
    const T = (s: number) => this.startMs + s * 1000;
    const long = this.startMs - 3600_000;
    const pod2 = (t: PodTimes) => startupPod({ ...POD2, namespace: 'shop', nodeName: this.nodeName, rs: RS2, t });
    const pod3 = (t: PodTimes) => startupPod({ ...POD3, namespace: 'shop', nodeName: this.nodeName, rs: RS3, t });
    const pod4 = (t: PodTimes) => startupPod({ ...POD4, namespace: 'shop', nodeName: this.nodeName, rs: RS2, t });
    const kubelet = (pod: { name: string; uid: string }, reason: string, message: string, at: number, type = 'Normal') =>
      this.event({ kind: 'Pod', namespace: 'shop', name: pod.name, uid: pod.uid, fieldPath: 'spec.containers{checkout}' }, reason, message, 'kubelet', at, type);
    const scaling = (message: string, at: number) => this.event({ kind: 'Deployment', namespace: 'shop', name: 'checkout', uid: CHECKOUT.uid }, 'ScalingReplicaSet', message, 'deployment-controller', at);
    const pvcEvent = (c: typeof GOOD_PVC, reason: string, message: string, component: string, at: number, type = 'Normal') =>
      this.event({ kind: 'PersistentVolumeClaim', namespace: c.namespace, name: c.name, uid: c.uid }, reason, message, component, at, type);
    const rs = (r: typeof RS1, revision: number, created: number, replicas: number, available: number, history?: number[]) =>
      this.put('replicasets', replicaSet({ ...checkoutRs(r), revision, created, replicas, available, history }));
    const image2 = 'registry.example.com/shop/checkout:1.5.0';
    const image3 = 'registry.example.com/shop/checkout:1.5.1-rc1';

    return [
      {
        at: 0,
        say: 'rollout   shop/checkout revision 2 starts: new ReplicaSet checkout-7f8d9c6b5, its pod scheduled on this node',
        run: () => {
          rs(RS2, 2, T(0), 1, 0);
          this.put('deployments', this.dep(2, 1, { replicas: 2, updated: 1, available: 1, progressing: { reason: 'ReplicaSetUpdated', at: T(0), since: long } }));
          scaling(`Scaled up replica set ${RS2.name} from 0 to 1`, T(0));
          this.put('pods', pod2({ created: T(0) }));
        },
      },
      {
        at: 1,
        run: () => {
          this.put('pods', pod2({ created: T(0), scheduled: T(1), readyToStart: T(1) }));
          this.event({ kind: 'Pod', namespace: 'shop', name: POD2.name, uid: POD2.uid }, 'Scheduled', `Successfully assigned shop/${POD2.name} to ${this.nodeName}`, 'default-scheduler', T(1));
          kubelet(POD2, 'Pulling', `Pulling image "${image2}"`, T(1));
        },
      },
      {
        at: 4,
        run: () => {
          kubelet(POD2, 'Pulled', `Successfully pulled image "${image2}" in 2.1s (2.2s including waiting). Image size: 48234496 bytes.`, T(3));
          kubelet(POD2, 'Created', 'Created container: checkout', T(3));
          kubelet(POD2, 'Started', 'Started container checkout', T(4));
          this.put('pods', pod2({ created: T(0), scheduled: T(1), readyToStart: T(1), started: T(4) }));
        },
      },
      {
        at: 5,
        say: `pod       shop/${POD2.name} Ready 5 s after it was created (image pulled in 2.1 s)`,
        run: () => this.put('pods', pod2({ created: T(0), scheduled: T(1), readyToStart: T(1), started: T(4), ready: T(5) })),
      },
      {
        at: 6,
        say: 'rollout   shop/checkout revision 2 complete in 6 s (old ReplicaSet scaled to 0)',
        run: () => {
          rs(RS2, 2, T(0), 1, 1);
          scaling(`Scaled down replica set ${RS1.name} from 1 to 0`, T(6));
          rs(RS1, 1, long, 0, 0);
          this.put('deployments', this.dep(2, 1, { replicas: 1, updated: 1, available: 1, progressing: { reason: 'NewReplicaSetAvailable', at: T(6), since: long } }));
        },
      },
      {
        at: 8,
        say: `rollout   shop/checkout revision 3 starts with image ${image3}, which does not exist`,
        run: () => {
          rs(RS3, 3, T(8), 1, 0);
          this.put('deployments', this.dep(3, 1, { replicas: 2, updated: 1, available: 1, progressing: { reason: 'ReplicaSetUpdated', at: T(8), since: long } }));
          scaling(`Scaled up replica set ${RS3.name} from 0 to 1`, T(8));
          this.put('pods', pod3({ created: T(8) }));
        },
      },
      {
        at: 9,
        run: () => {
          this.put('pods', pod3({ created: T(8), scheduled: T(9), readyToStart: T(9) }));
          this.event({ kind: 'Pod', namespace: 'shop', name: POD3.name, uid: POD3.uid }, 'Scheduled', `Successfully assigned shop/${POD3.name} to ${this.nodeName}`, 'default-scheduler', T(9));
          kubelet(POD3, 'Pulling', `Pulling image "${image3}"`, T(9));
        },
      },
      {
        at: 11,
        say: `image     shop/${POD3.name}: ErrImagePull (not found), then ImagePullBackOff`,
        run: () => {
          kubelet(POD3, 'Failed', `Failed to pull image "${image3}": rpc error: code = NotFound desc = failed to resolve reference "${image3}": not found`, T(11), 'Warning');
          kubelet(POD3, 'Failed', 'Error: ErrImagePull', T(11), 'Warning');
          this.put('pods', pod3({ created: T(8), scheduled: T(9), readyToStart: T(9), waiting: { reason: 'ErrImagePull', message: 'not found' } }));
        },
      },
      {
        at: 12,
        run: () => {
          kubelet(POD3, 'BackOff', `Back-off pulling image "${image3}"`, T(12));
          kubelet(POD3, 'Failed', 'Error: ImagePullBackOff', T(12), 'Warning');
          this.put('pods', pod3({ created: T(8), scheduled: T(9), readyToStart: T(9), waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image3}"` } }));
        },
      },
      {
        at: 16,
        say: 'rollout   kubectl rollout undo: revision 4 brings revision 2 back; the failed pod is deleted',
        run: () => {
          rs(RS2, 4, T(0), 1, 1, [2]);
          this.put('deployments', this.dep(4, 1, { replicas: 2, updated: 1, available: 1, progressing: { reason: 'ReplicaSetUpdated', at: T(16), since: long } }));
          scaling(`Scaled down replica set ${RS3.name} from 1 to 0`, T(16));
          rs(RS3, 3, T(8), 0, 0);
          this.remove('pods', 'shop', POD3.name, T(17));
        },
      },
      {
        at: 18,
        say: 'rollout   shop/checkout revision 4 complete: back on checkout:1.5.0',
        run: () => this.put('deployments', this.dep(4, 1, { replicas: 1, updated: 1, available: 1, progressing: { reason: 'NewReplicaSetAvailable', at: T(18), since: long } })),
      },
      {
        at: 20,
        say: 'storage   two claims: db/data-postgres-0 (gp3) and db/scratch-postgres-0 (storage class "fast", out of quota)',
        run: () => {
          this.put('persistentvolumeclaims', claim({ ...GOOD_PVC, storageClass: 'gp3', provisioner: EBS, created: T(20), phase: 'Pending' }));
          pvcEvent(GOOD_PVC, 'ExternalProvisioning', `Waiting for a volume to be created either by the external provisioner '${EBS}' or manually by the system administrator.`, 'persistentvolume-controller', T(20));
          pvcEvent(GOOD_PVC, 'Provisioning', `External provisioner is provisioning volume for claim "db/${GOOD_PVC.name}"`, `${EBS}_ebs-csi-controller-0_1f2e`, T(20));
          this.put('persistentvolumeclaims', claim({ ...BAD_PVC, storageClass: 'fast', provisioner: QUOTA, created: T(20), phase: 'Pending' }));
        },
      },
      ...[21, 25, 29].map((at, i) => ({
        at,
        run: () =>
          pvcEvent(BAD_PVC, 'ProvisioningFailed', `failed to provision volume with StorageClass "fast": rpc error: code = ResourceExhausted desc = volume quota exceeded (attempt ${i + 1})`, `${QUOTA}_csi-provisioner-0_7c1d`, T(at), 'Warning'),
      })),
      {
        at: 24,
        say: 'storage   db/data-postgres-0 Bound 4 s after it was created',
        run: () => {
          pvcEvent(GOOD_PVC, 'ProvisioningSucceeded', `Successfully provisioned volume ${PV.name}`, `${EBS}_ebs-csi-controller-0_1f2e`, T(23));
          this.put('persistentvolumes', volume({ ...PV, driver: EBS, created: T(23), claim: GOOD_PVC, storageClass: 'gp3', boundAt: T(24) }));
          this.put('persistentvolumeclaims', claim({ ...GOOD_PVC, storageClass: 'gp3', provisioner: EBS, created: T(20), phase: 'Bound', volumeName: PV.name }));
        },
      },
      {
        at: 26,
        say: `node      ${NODE2.name} stops reporting: NotReady`,
        run: () => {
          this.put('nodes', node({ ...NODE2, created: long - 86400_000, ready: false, since: T(26) }));
          this.event({ kind: 'Node', name: NODE2.name, uid: NODE2.name }, 'NodeNotReady', `Node ${NODE2.name} status is now: NodeNotReady`, 'node-controller', T(26));
        },
      },
      {
        at: 31,
        say: `node      ${NODE2.name}: its ${NODE2_PODS.length} pods evicted by the taint manager`,
        run: () => {
          for (const name of NODE2_PODS) {
            this.event({ kind: 'Pod', namespace: 'shop', name, uid: '' }, 'TaintManagerEviction', `Marking for deletion Pod shop/${name}`, 'taint-eviction-controller', T(31));
          }
        },
      },
      {
        at: 30,
        say: 'scale     kubectl scale deployment checkout --replicas=2: a second pod on this node, its image already present',
        run: () => {
          rs(RS2, 4, T(0), 2, 1, [2]);
          this.put('deployments', this.dep(4, 2, { replicas: 2, updated: 2, available: 1, progressing: { reason: 'NewReplicaSetAvailable', at: T(18), since: long } }));
          scaling(`Scaled up replica set ${RS2.name} from 1 to 2`, T(30));
          this.put('pods', pod4({ created: T(30) }));
        },
      },
      {
        at: 31,
        run: () => {
          this.put('pods', pod4({ created: T(30), scheduled: T(31), readyToStart: T(31) }));
          this.event({ kind: 'Pod', namespace: 'shop', name: POD4.name, uid: POD4.uid }, 'Scheduled', `Successfully assigned shop/${POD4.name} to ${this.nodeName}`, 'default-scheduler', T(31));
          kubelet(POD4, 'Pulled', `Container image "${image2}" already present on machine`, T(31));
          kubelet(POD4, 'Created', 'Created container: checkout', T(31));
        },
      },
      {
        at: 32,
        run: () => {
          kubelet(POD4, 'Started', 'Started container checkout', T(32));
          this.put('pods', pod4({ created: T(30), scheduled: T(31), readyToStart: T(31), started: T(32) }));
          this.put('persistentvolumeclaims', claim({ ...WAL_PVC, storageClass: 'gp3', provisioner: EBS, created: T(32), phase: 'Pending' }));
          pvcEvent(WAL_PVC, 'Provisioning', `External provisioner is provisioning volume for claim "db/${WAL_PVC.name}"`, `${EBS}_ebs-csi-controller-0_1f2e`, T(32));
        },
      },
      {
        at: 33,
        say: `pod       shop/${POD4.name} Ready 3 s after it was created`,
        run: () => {
          this.put('pods', pod4({ created: T(30), scheduled: T(31), readyToStart: T(31), started: T(32), ready: T(33) }));
          rs(RS2, 4, T(0), 2, 2, [2]);
          this.put('deployments', this.dep(4, 2, { replicas: 2, updated: 2, available: 2, progressing: { reason: 'NewReplicaSetAvailable', at: T(33), since: long } }));
        },
      },
      {
        at: 35,
        say: 'storage   db/wal-postgres-0 Bound 3 s after it was created',
        run: () => {
          pvcEvent(WAL_PVC, 'ProvisioningSucceeded', `Successfully provisioned volume ${WAL_PV.name}`, `${EBS}_ebs-csi-controller-0_1f2e`, T(34));
          this.put('persistentvolumes', volume({ ...WAL_PV, driver: EBS, created: T(34), claim: WAL_PVC, storageClass: 'gp3', boundAt: T(35) }));
          this.put('persistentvolumeclaims', claim({ ...WAL_PVC, storageClass: 'gp3', provisioner: EBS, created: T(32), phase: 'Bound', volumeName: WAL_PV.name }));
        },
      },
      {
        at: 36,
        say: `node      ${NODE2.name} Ready again after 10 s`,
        run: () => this.put('nodes', node({ ...NODE2, created: long - 86400_000, ready: true, since: T(36) })),
      },
    ];
  }

  private dep(revision: number, replicas: number, status: Parameters<typeof deploymentStatus>[1]): FakeObject {
    return { ...deployment({ ...CHECKOUT, replicas, revision, progressDeadlineSeconds: 600 }), status: deploymentStatus(CAUGHT_UP, status) };
  }

  private put(resource: string, obj: FakeObject): void {
    const exists = this.api.get(resource, obj.metadata.namespace, obj.metadata.name);
    if (exists) this.api.update(resource, { ...obj, metadata: { ...obj.metadata, uid: exists.metadata.uid } });
    else this.api.create(resource, obj);
  }

  private remove(resource: string, namespace: string, name: string, at: number): void {
    if (!this.api.get(resource, namespace, name)) return;
    this.api.modify(resource, namespace, name, (o) => void (o.metadata.deletionTimestamp = iso(at)));
    this.api.delete(resource, namespace, name);
  }

  private event(regarding: { kind: string; name: string; namespace?: string; uid?: string; fieldPath?: string }, reason: string, message: string, component: string, at: number, type = 'Normal'): void {
    this.api.create('events', makeEvent({ regarding, reason, message, component, type, first: iso(at), host: component === 'kubelet' ? this.nodeName : undefined }));
  }
}

function checkoutRs(r: { name: string; uid: string }): { namespace: string; name: string; uid: string; deployment: { name: string; uid: string } } {
  return { namespace: 'shop', name: r.name, uid: r.uid, deployment: { name: CHECKOUT.name, uid: CHECKOUT.uid } };
}
