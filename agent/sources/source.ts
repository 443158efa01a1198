import type { KubeAccess } from '../kube/kube_access.ts';
import type { NodePods } from '../kube/types.ts';
import type { Logger } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';
import type { Emitter } from '../pipeline.ts';
import type { SpanLog } from '../status/span_log.ts';

/** What the agent hands every source. */
export interface SourceContext {
  nodeName: string;
  dataDir: string;
  metrics: SelfMetrics;
  log: Logger;
  emitter: Emitter;
  /** The agent's one Kubernetes API connection (shared by every source and stage that reads the API). */
  kube: KubeAccess;
  /**
   * `max_unacked_bytes` when the source's config leaves it out: what the outputs it feeds now need
   * (agent/flow_window.ts; a reload that changes those outputs changes it).
   */
  unackedWindow: () => number;
  /** Where finished cluster spans are kept for the status page. */
  spanLog?: SpanLog;
  /** This node's pods from the agent's one pod watch (the one enrichment uses), for the pod startup tracker. */
  nodePods?: NodePods;
}

/**
 * A source reads from the node and hands records to the pipeline through its Emitter; it moves its
 * checkpoint only when the pipeline reports a batch accepted by every output.
 */
export interface Source {
  readonly name: string;
  start(): Promise<void>;
  /** Stop reading; what is held but unfinished (a P chunk without its F) stays behind the checkpoint. */
  stopReading(): Promise<void>;
  /**
   * After stopReading: resolves true once every batch it emitted was accepted (so its checkpoint
   * is final), false after `timeoutMs`.
   */
  settled(timeoutMs: number): Promise<boolean>;
  /** Write the final checkpoint (acknowledged positions only) and release files. */
  close(): Promise<void>;
  /** Ready for /readyz: started and not stopping. */
  readonly ready: boolean;
  /** Why not, while `ready` is false (shown by /readyz): `first scan in progress`, `Kubernetes API refuses access (403)`. */
  readonly notReadyReason?: string;
}
