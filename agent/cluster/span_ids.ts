import { createHash } from 'node:crypto';

/**
 * Trace and span ids derived from object uids (span-and-metric-model.md §2.1), so a restarted
 * agent, a new leader and the node agents emit spans of one trace without talking to each other.
 */

export interface TraceKey {
  /** e.g. `Pod`, `Deployment`, `PersistentVolumeClaim`. */
  readonly rootKind: string;
  readonly rootUid: string;
  /** Tells apart several traces of one object, e.g. `startup`, a revision, a transition time. */
  readonly discriminator: string;
}

export function traceKeyString(clusterUid: string, k: TraceKey): string {
  return `${clusterUid}/${k.rootKind}/${k.rootUid}/${k.discriminator}`;
}

export function traceIdFor(clusterUid: string, k: TraceKey): string {
  return digestHex(traceKeyString(clusterUid, k), 16);
}

/** `subKey`: container name, attempt, volume name; empty for the one span of its name on the object. */
export function spanIdFor(clusterUid: string, k: TraceKey, spanName: string, objectUid: string, subKey = ''): string {
  return digestHex(`${traceKeyString(clusterUid, k)}/${spanName}/${objectUid}/${subKey}`, 8);
}

function digestHex(input: string, bytes: number): string {
  const hex = createHash('sha256').update(input).digest('hex').slice(0, bytes * 2);
  // an all-zero id is invalid in W3C/OTLP: replace it with a fixed non-zero one
  return /^0+$/.test(hex) ? `${'0'.repeat(bytes * 2 - 1)}1` : hex;
}
