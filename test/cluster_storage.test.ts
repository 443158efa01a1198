import { describe, expect, it } from 'vitest';
import { claim, occurrence, storageClass, volume, volumeAttachment } from '../agent/demo/cluster_objects.ts';
import { replaySuite, S, seconds, spanTree, T } from './helpers/cluster_replay.ts';

const startReplay = replaySuite('storage');

const EBS = 'ebs.csi.aws.com';
const PVC = { namespace: 'db', name: 'data-postgres-0', uid: '9a8b7c6d-5555-4f4e-8d3c-2b1a0f9e8d7c' };
const BAD = { namespace: 'db', name: 'logs-postgres-0', uid: '1f2e3d4c-6666-4b5a-9c8d-7e6f5a4b3c2d' };
const PV = { name: 'pvc-9a8b7c6d-5555-4f4e-8d3c-2b1a0f9e8d7c', uid: '2b3c4d5e-7777-4a6b-8c9d-0e1f2a3b4c5d' };
const pvcRef = (c: typeof PVC) => ({ kind: 'PersistentVolumeClaim', namespace: c.namespace, name: c.name, uid: c.uid });
const ev = (c: typeof PVC, reason: string, note: string, component: string, at: number, type = 'Normal') => occurrence({ reason, type, note, component, regarding: pvcRef(c), at });

describe('PVC provisioning, replayed through the fake API', () => {
  it.each([{ restart: false }, { restart: true }])('a WaitForFirstConsumer claim provisioned in 8 s, one that fails (restart while waiting: $restart)', async ({ restart }) => {
    const r = await startReplay(T - 60 * S);
    await r.put('storageclasses', storageClass('gp3', EBS, 'WaitForFirstConsumer'));
    await r.put('storageclasses', storageClass('fast', 'csi.example.com', 'Immediate'));
    // the claim waits 10 minutes for its pod
    await r.advanceTo(T);
    await r.put('persistentvolumeclaims', claim({ ...PVC, storageClass: 'gp3', provisioner: EBS, created: T, phase: 'Pending' }));
    r.event(ev(PVC, 'WaitForFirstConsumer', 'waiting for first consumer to be created before binding', 'persistentvolume-controller', T));
    // the failing claim: three ProvisioningFailed, never Bound
    await r.put('persistentvolumeclaims', claim({ ...BAD, storageClass: 'fast', provisioner: 'csi.example.com', created: T, phase: 'Pending' }));
    for (let i = 1; i <= 3; i++) {
      r.event(ev(BAD, 'ProvisioningFailed', `failed to provision volume with StorageClass "fast": rpc error: code = ResourceExhausted desc = quota exceeded (${i})`, 'csi.example.com_csi-provisioner-0_abc', T + i * 10 * S, 'Warning'));
    }
    if (restart) {
      await r.advanceTo(T + 300 * S);
      await r.restart();
      await r.put('persistentvolumeclaims', claim({ ...PVC, storageClass: 'gp3', provisioner: EBS, created: T, phase: 'Pending' }));
    }
    await r.advanceTo(T + 600 * S);
    await r.put('persistentvolumeclaims', claim({ ...PVC, storageClass: 'gp3', provisioner: EBS, created: T, phase: 'Pending', selectedNode: 'node-a' }));
    r.event(ev(PVC, 'ExternalProvisioning', `Waiting for a volume to be created either by the external provisioner '${EBS}' or manually by the system administrator.`, 'persistentvolume-controller', T + 600 * S));
    r.event(ev(PVC, 'Provisioning', `External provisioner is provisioning volume for claim "db/data-postgres-0"`, `${EBS}_ebs-csi-controller-0_1f2e`, T + 600 * S));
    r.event(ev(PVC, 'ExternalProvisioning', `Waiting for a volume to be created either by the external provisioner '${EBS}' or manually by the system administrator.`, 'persistentvolume-controller', T + 615 * S));
    await r.advanceTo(T + 608 * S);
    r.event(ev(PVC, 'ProvisioningSucceeded', `Successfully provisioned volume ${PV.name}`, `${EBS}_ebs-csi-controller-0_1f2e`, T + 607 * S));
    await r.put('persistentvolumes', volume({ ...PV, driver: EBS, created: T + 607 * S, claim: PVC, storageClass: 'gp3', boundAt: T + 608 * S }));
    await r.put('persistentvolumeclaims', claim({ ...PVC, storageClass: 'gp3', provisioner: EBS, created: T, phase: 'Bound', volumeName: PV.name, selectedNode: 'node-a' }));

    const labels = { storage_class: 'gp3', provisioner: EBS, binding_mode: 'WaitForFirstConsumer' };
    expect(await r.value('k8s_pvc_provisioning_duration_seconds_count', labels)).toBe(1);
    expect(await r.value('k8s_pvc_provisioning_duration_seconds_sum', labels)).toBe(8);
    const spans = await r.spans(4);
    const tree = spanTree(spans);
    const root = tree.one('pvc.provision');
    expect([seconds(root), root.status.code, root.parentSpanId]).toEqual([608, 1, '']);
    expect(root.attributes).toMatchObject({
      'k8s.persistentvolumeclaim.name': PVC.name,
      'k8s.persistentvolume.name': PV.name,
      'k8s.storageclass.name': 'gp3',
      'kta.binding_mode': 'WaitForFirstConsumer',
      'container.csi.plugin.name': EBS,
    });
    const wait = tree.one('pvc.wait_for_consumer');
    const create = tree.one('volume.create');
    const bind = tree.one('pvc.bind');
    expect([seconds(wait), seconds(create), seconds(bind)]).toEqual([600, 7, 1]);
    for (const s of [wait, create, bind]) expect([s.traceId, s.parentSpanId]).toEqual([root.traceId, root.spanId]);
    expect(create.resource['service.name']).toBe(EBS);
    // ExternalProvisioning repeats on every resync: the first after the wait marks the consumer's arrival

    // the failing claim ends at the 30 min timeout, in ERROR, its failures as span events
    await r.advanceTo(T + 31 * 60 * S);
    const all = await r.spans(5);
    const failed = spanTree(all).byName('pvc.provision').find((s) => s.attributes['k8s.persistentvolumeclaim.uid'] === BAD.uid)!;
    expect([seconds(failed), failed.status.code, failed.attributes['kta.timeout']]).toEqual([1800, 2, true]);
    if (restart) {
      // the agent that timed it out started after the failures: it has the timeout, not their text
      expect([failed.status.message, failed.events.length]).toEqual(['not Bound before the provisioning timeout', 0]);
    } else {
      expect(failed.status.message).toMatch(/^ProvisioningFailed: failed to provision volume with StorageClass "fast".*\(3\)$/);
      expect(failed.events.map((e) => e.name)).toEqual(['ProvisioningFailed', 'ProvisioningFailed', 'ProvisioningFailed']);
    }
    expect(await r.value('k8s_pvc_provisioning_duration_seconds_count')).toBe(1);
    await new Promise((res) => setTimeout(res, 100));
    expect(r.receiver.spans.length).toBe(5);
  });
});

describe('volume attach, replayed through the fake API', () => {
  it.each([{ restart: false }, { restart: true }])('an attach that never succeeds and one that does (restart after the first error: $restart)', async ({ restart }) => {
    const r = await startReplay(T - 60 * S, { volume_attach_timeout: '10m' });
    const va = (name: string, uid: string, pv: string, attached: boolean, attachError?: { at: number; message: string }) =>
      volumeAttachment({ name, uid, driver: EBS, node: 'node-b', pv, created: T, attached, attachError });
    const BADVA = { name: 'csi-0a1b2c3d4e5f', uid: '4d5e6f70-8888-4a1b-9c2d-3e4f5a6b7c8d' };
    const GOOD = { name: 'csi-9f8e7d6c5b4a', uid: '8e9f0a1b-9999-4c2d-8e3f-4a5b6c7d8e9f' };
    const zone = 'rpc error: code = Internal desc = Could not attach volume "vol-0abc" to node "i-0123": InvalidVolume.ZoneMismatch';
    await r.advanceTo(T);
    await r.put('volumeattachments', va(BADVA.name, BADVA.uid, 'pv-bad', false));
    await r.put('volumeattachments', va(GOOD.name, GOOD.uid, 'pv-good', false));
    await r.advanceTo(T + 5 * S);
    await r.put('volumeattachments', va(BADVA.name, BADVA.uid, 'pv-bad', false, { at: T + 5 * S, message: zone }));
    await r.put('volumeattachments', va(BADVA.name, BADVA.uid, 'pv-bad', false, { at: T + 5 * S, message: zone })); // a resync: same error
    if (restart) {
      await r.advanceTo(T + 10 * S);
      await r.restart();
    }
    r.event(occurrence({ reason: 'FailedAttachVolume', type: 'Warning', note: `AttachVolume.Attach failed for volume "pv-bad" : ${zone}`, component: 'attachdetach-controller', regarding: { kind: 'Pod', namespace: 'db', name: 'postgres-0', uid: 'p0' }, at: T + 20 * S }));
    r.event(occurrence({ reason: 'SuccessfulAttachVolume', note: 'AttachVolume.Attach succeeded for volume "pv-good"', component: 'attachdetach-controller', regarding: { kind: 'Pod', namespace: 'db', name: 'postgres-1', uid: 'p1' }, at: T + 24 * S }));
    await r.advanceTo(T + 25 * S);
    await r.put('volumeattachments', va(GOOD.name, GOOD.uid, 'pv-good', true));
    await r.advanceTo(T + 35 * S);
    await r.put('volumeattachments', va(BADVA.name, BADVA.uid, 'pv-bad', false, { at: T + 35 * S, message: zone }));

    expect(await r.value('k8s_volume_attach_failures_total', { driver: EBS })).toBe(2); // one per distinct attachError.time
    expect(await r.value('k8s_volume_attach_duration_seconds_count', { driver: EBS })).toBe(1);
    expect(await r.value('k8s_volume_attach_duration_seconds_sum', { driver: EBS })).toBe(24); // from the SuccessfulAttachVolume event
    await r.advanceTo(T + 11 * 60 * S);
    const spans = await r.spans(2);
    await new Promise((res) => setTimeout(res, 100));
    expect(r.receiver.spans.length).toBe(2);
    const bad = spans.find((s) => s.attributes['k8s.persistentvolume.name'] === 'pv-bad')!;
    const good = spans.find((s) => s.attributes['k8s.persistentvolume.name'] === 'pv-good')!;
    expect([bad.name, seconds(bad), bad.status.code, bad.attributes['kta.timeout'], bad.parentSpanId]).toEqual(['volume.attach', 600, 2, true, '']);
    expect(bad.status.message).toBe(`AttachError: ${zone}`);
    expect(bad.resource['service.name']).toBe(EBS);
    expect(bad.events.map((e) => e.name)).toEqual(restart ? ['FailedAttachVolume', 'AttachError'] : ['AttachError', 'FailedAttachVolume', 'AttachError']);
    expect([seconds(good), good.status.code, good.attributes['k8s.node.name'], good.attributes['container.csi.plugin.name']]).toEqual([24, 1, 'node-b', EBS]);
  });
});
