import type { KubeObject } from '../kube/types.ts';
import { BoundedState } from './bounded_state.ts';
import { LabelCap } from './cluster_metrics.ts';
import { createdMs, timeMs } from './object_time.ts';
import type { EventOccurrence, EventSink } from './observation.ts';
import { spanPoint } from './span_events.ts';
import { outcomeAttributes, type SpanPoint } from './span_export.ts';
import type { TrackerOptions } from './tracker_options.ts';
import type { TraceKey } from './span_ids.ts';

/**
 * Dynamic provisioning of PersistentVolumeClaims (span-and-metric-model.md §2.4): claim creation ->
 * (wait for a first consumer) -> volume created -> Bound. The end time is the bound PV's
 * `status.lastPhaseTransitionTime`; the histogram leaves out the wait for a consumer.
 */

export interface Pvc extends KubeObject {
  spec?: { storageClassName?: string; volumeName?: string };
  status?: { phase?: string };
}

export interface Pv extends KubeObject {
  spec?: { csi?: { driver?: string; volumeHandle?: string }; claimRef?: { uid?: string } };
  status?: { phase?: string; lastPhaseTransitionTime?: string };
}

export interface StorageClass extends KubeObject {
  provisioner?: string;
  volumeBindingMode?: string;
}

interface Claim {
  namespace: string;
  name: string;
  createdMs?: number;
  storageClass: string;
  /** Set when no PV was named at first sight: a claim for dynamic provisioning. */
  dynamic: boolean;
  done: boolean;
  events: SpanPoint[];
  /** First Provisioning / ExternalProvisioning after a WaitForFirstConsumer: the consumer arrived. */
  consumerMs?: number;
  waitedForConsumer: boolean;
  seenPending: boolean;
  provisioningMs?: number;
  succeededMs?: number;
  lastWarning?: string;
}

export interface PvcProvisioningTrackerOptions extends TrackerOptions {
  timeoutMs: number;
}

const MAX_EVENTS = 64;

export function pvcTraceKey(pvcUid: string): TraceKey {
  return { rootKind: 'PersistentVolumeClaim', rootUid: pvcUid, discriminator: 'provision' };
}

export class PvcProvisioningTracker implements EventSink {
  private readonly o: PvcProvisioningTrackerOptions;
  private readonly claims = new BoundedState<Claim>(20_000);
  private readonly classes = new Map<string, StorageClass>();
  private readonly volumes = new Map<string, Pv>();
  private readonly classLabel = new LabelCap(50);
  private readonly provisionerLabel = new LabelCap(50);
  private readonly clock: () => number;

  constructor(o: PvcProvisioningTrackerOptions) {
    this.o = o;
    this.clock = o.clock ?? Date.now;
  }

  onStorageClass(sc: StorageClass): void {
    if (sc.metadata.name) this.classes.set(sc.metadata.name, sc);
  }

  onStorageClassDeleted(sc: StorageClass): void {
    if (sc.metadata.name) this.classes.delete(sc.metadata.name);
  }

  onVolume(pv: Pv): void {
    if (!pv.metadata.name) return;
    this.volumes.set(pv.metadata.name, pv);
    const claimUid = pv.spec?.claimRef?.uid;
    const claim = claimUid ? this.claims.get(claimUid) : undefined;
    if (claim && !claim.done && pv.status?.phase === 'Bound') this.bound(claimUid!, claim, pv);
  }

  onVolumeDeleted(pv: Pv): void {
    if (pv.metadata.name) this.volumes.delete(pv.metadata.name);
  }

  onClaim(pvc: Pvc): void {
    const uid = pvc.metadata.uid;
    if (!uid) return;
    const claim = this.claims.getOrCreate(uid, () => ({
      namespace: pvc.metadata.namespace ?? '',
      name: pvc.metadata.name ?? '',
      createdMs: createdMs(pvc),
      storageClass: pvc.spec?.storageClassName ?? '',
      dynamic: !!pvc.spec?.storageClassName && (pvc.status?.phase === 'Pending' || !!provisionerAnnotation(pvc)),
      done: false,
      events: [],
      waitedForConsumer: false,
      seenPending: false,
    }));
    if (claim.done || !claim.dynamic) return;
    if (pvc.status?.phase === 'Pending') claim.seenPending = true;
    if (pvc.status?.phase === 'Bound') {
      const pv = pvc.spec?.volumeName ? this.volumes.get(pvc.spec.volumeName) : undefined;
      // else the PV's own update (Bound, with its transition time) ends it in onVolume
      if (pv?.status?.phase === 'Bound') this.bound(uid, claim, pv);
    } else if (pvc.status?.phase === 'Lost' && claim.seenPending) {
      this.failed(uid, claim, pvc, this.clock(), 'claim Lost', 'observed');
    }
  }

  onClaimDeleted(pvc: Pvc): void {
    const uid = pvc.metadata.uid;
    const claim = uid ? this.claims.get(uid) : undefined;
    if (!uid || !claim) return;
    this.claims.delete(uid);
    if (!claim.done && claim.dynamic) this.failed(uid, claim, pvc, timeMs(pvc.metadata.deletionTimestamp) ?? this.clock(), 'deleted while Pending');
  }

  sweep(pvcs: Iterable<Pvc>): void {
    const now = this.clock();
    for (const pvc of pvcs) {
      const claim = pvc.metadata.uid ? this.claims.get(pvc.metadata.uid) : undefined;
      const created = createdMs(pvc);
      if (!claim || claim.done || !claim.dynamic || created === undefined) continue;
      // a claim waiting for its first consumer is not late: the timeout runs from the consumer's arrival
      const from = claim.waitedForConsumer ? claim.consumerMs : created;
      if (from === undefined || now < from + this.o.timeoutMs) continue;
      this.failed(pvc.metadata.uid!, claim, pvc, from + this.o.timeoutMs, claim.lastWarning ?? 'not Bound before the provisioning timeout', undefined, true);
    }
  }

  onEvent(ev: EventOccurrence): void {
    if (ev.regarding.kind !== 'PersistentVolumeClaim' || !ev.regarding.uid) return;
    const claim = this.claims.get(ev.regarding.uid);
    if (!claim || claim.done) return;
    if (this.classes.get(claim.storageClass)?.volumeBindingMode === 'WaitForFirstConsumer') claim.waitedForConsumer = true;
    switch (ev.reason) {
      case 'WaitForFirstConsumer':
      case 'WaitForPodScheduled':
        claim.waitedForConsumer = true;
        break;
      case 'ExternalProvisioning':
        // repeats every PV-controller resync: only its first sighting after the wait matters
        if (claim.waitedForConsumer) claim.consumerMs ??= ev.firstSeenMs;
        return;
      case 'Provisioning':
        if (claim.waitedForConsumer) claim.consumerMs ??= ev.firstSeenMs;
        claim.provisioningMs ??= ev.firstSeenMs;
        break;
      case 'ProvisioningSucceeded':
        claim.succeededMs ??= ev.lastSeenMs;
        break;
      case 'ProvisioningFailed':
      case 'FailedBinding':
        claim.lastWarning = `${ev.reason}: ${ev.note}`;
        break;
    }
    if (claim.events.length < MAX_EVENTS) claim.events.push(spanPoint(ev));
  }

  private labels(claim: Claim) {
    const sc = this.classes.get(claim.storageClass);
    return {
      storage_class: this.classLabel.value(claim.storageClass),
      provisioner: this.provisionerLabel.value(sc?.provisioner ?? 'unknown'),
      binding_mode: sc?.volumeBindingMode === 'WaitForFirstConsumer' ? 'WaitForFirstConsumer' : 'Immediate',
    };
  }

  private bound(uid: string, claim: Claim, pv: Pv): void {
    claim.done = true;
    const created = claim.createdMs;
    const end = timeMs(pv.status?.lastPhaseTransitionTime) ?? claim.succeededMs;
    const endMs = end ?? this.clock();
    // without a time from the objects only a claim this agent saw Pending can be observed now
    if (created === undefined || (end === undefined && !claim.seenPending)) return;
    const labels = this.labels(claim);
    const waited = labels.binding_mode === 'WaitForFirstConsumer' && claim.consumerMs !== undefined ? claim.consumerMs - created : 0;
    this.o.window.report(`pvc/${uid}`, endMs, () => {
      this.o.metrics.pvcProvisioning.observe(labels, Math.max(0, endMs - created - waited) / 1000);
      this.emit(uid, claim, created, endMs, 'ok', undefined, pv, end === undefined ? 'observed' : undefined);
    });
  }

  private failed(uid: string, claim: Claim, pvc: Pvc, endMs: number, message: string, timeSource?: 'observed', timedOut = false): void {
    claim.done = true;
    const created = createdMs(pvc);
    if (created === undefined) return;
    this.o.window.report(`pvc/${uid}`, endMs, () => this.emit(uid, claim, created, endMs, 'error', message, undefined, timeSource, timedOut));
  }

  private emit(uid: string, claim: Claim, created: number, endMs: number, result: 'ok' | 'error', message: string | undefined, pv: Pv | undefined, timeSource?: 'observed', timedOut = false): void {
    if (!this.o.spans) return;
    const sc = this.classes.get(claim.storageClass);
    const driver = pv?.spec?.csi?.driver ?? sc?.provisioner ?? 'unknown';
    const trace = pvcTraceKey(uid);
    const root = { name: 'pvc.provision', objectUid: uid };
    const attributes = {
      'k8s.namespace.name': claim.namespace,
      'k8s.persistentvolumeclaim.name': claim.name,
      'k8s.persistentvolumeclaim.uid': uid,
      'k8s.storageclass.name': claim.storageClass,
      'kta.provisioner': sc?.provisioner ?? 'unknown',
      'kta.binding_mode': this.labels(claim).binding_mode,
      ...(pv?.metadata.name ? { 'k8s.persistentvolume.name': pv.metadata.name, 'k8s.persistentvolume.uid': pv.metadata.uid ?? '' } : {}),
      ...(pv?.spec?.csi ? { 'container.csi.plugin.name': driver, 'container.csi.volume.id': pv.spec.csi.volumeHandle ?? '' } : {}),
    };
    const child = (name: string, startMs: number | undefined, end: number | undefined, component: string) => {
      if (startMs === undefined || end === undefined || end < startMs) return;
      this.o.spans!.emit({
        trace,
        name,
        objectUid: uid,
        parent: root,
        startMs,
        endMs: end,
        result: 'ok',
        attributes,
        events: claim.events.filter((e) => e.timeMs >= startMs && e.timeMs <= end),
        component,
      });
    };
    if (claim.waitedForConsumer) child('pvc.wait_for_consumer', created, claim.consumerMs, 'kube-controller-manager');
    const pvCreated = pv ? createdMs(pv) : undefined;
    const createEnd = claim.succeededMs ?? pvCreated;
    if (result === 'ok') {
      child('volume.create', claim.provisioningMs ?? claim.consumerMs ?? created, createEnd, driver);
      child('pvc.bind', createEnd, endMs, 'kube-controller-manager');
    }
    this.o.spans.emit({
      trace,
      ...root,
      startMs: created,
      endMs,
      result,
      message,
      attributes: { ...attributes, ...outcomeAttributes(result === 'ok' ? 'bound' : 'failed', timedOut, timeSource) },
      events: claim.events,
      component: 'kube-controller-manager',
    });
  }
}

function provisionerAnnotation(pvc: Pvc): string | undefined {
  const a = pvc.metadata.annotations ?? {};
  return a['volume.kubernetes.io/storage-provisioner'] ?? a['volume.beta.kubernetes.io/storage-provisioner'];
}
