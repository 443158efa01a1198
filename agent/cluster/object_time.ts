import type { KubeObject } from '../kube/types.ts';

/**
 * Reading times and conditions off Kubernetes objects (span-and-metric-model.md §0.1): time comes
 * from the objects, in whole seconds, never from when the agent saw them.
 */

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  lastUpdateTime?: string;
}

/** Epoch ms of an RFC 3339 time, undefined when absent or unreadable. */
export function timeMs(s: string | undefined | null): number | undefined {
  if (!s) return undefined;
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : undefined;
}

export function createdMs(o: KubeObject): number | undefined {
  return timeMs(o.metadata.creationTimestamp);
}

export function condition(status: { conditions?: Condition[] } | undefined, type: string): Condition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

/** lastTransitionTime of a condition when it has the given status. */
export function conditionSince(status: { conditions?: Condition[] } | undefined, type: string, want = 'True'): number | undefined {
  const c = condition(status, type);
  return c && c.status === want ? timeMs(c.lastTransitionTime) : undefined;
}
