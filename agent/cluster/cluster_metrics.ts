import { Counter, Histogram, type Registry } from 'prom-client';
import { sharedCounter } from './event_metrics.ts';

/**
 * The k8s_* metrics derived from Kubernetes objects (span-and-metric-model.md §1), on the agent's
 * one registry. Label values come from small fixed sets or through a LabelCap; never object names.
 */

/** §1.1: durations built from whole-second timestamps. */
export const SECOND_BUCKETS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600];

export const OWNER_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob', 'none', 'other'] as const;
export const STARTUP_STAGES = ['scheduling', 'prepare', 'init_containers', 'container_start', 'readiness'] as const;
export const STARTUP_FAILURE_REASONS = ['ImagePull', 'CrashLoop', 'CreateContainerConfigError', 'VolumeMount', 'Timeout', 'Other'] as const;
export const RESTART_REASONS = ['OOMKilled', 'Error', 'Completed', 'ContainerCannotRun', 'StartError', 'Other'] as const;
export const DISRUPTION_REASONS = ['PreemptionByScheduler', 'EvictionByEvictionAPI', 'DeletionByPodGC', 'TerminationByKubelet'] as const;
export const ROLLOUT_RESULTS = ['complete', 'progress_deadline_exceeded', 'superseded', 'deleted'] as const;

export class ClusterMetrics {
  readonly podStartup: Histogram<'owner_kind' | 'namespace'>;
  readonly podStartupStage: Histogram<'stage' | 'namespace'>;
  readonly podStartupFailures: Counter<'owner_kind' | 'reason'>;
  readonly containerRestarts: Counter<'namespace' | 'reason'>;
  readonly podDisruptions: Counter<'namespace' | 'reason'>;
  readonly rolloutDuration: Histogram<'result'>;
  readonly rollouts: Counter<'namespace' | 'result'>;
  readonly pvcProvisioning: Histogram<'storage_class' | 'provisioner' | 'binding_mode'>;
  readonly volumeAttach: Histogram<'driver'>;
  readonly volumeAttachFailures: Counter<'driver'>;
  readonly nodeNotReady: Histogram;

  /** `namespaceOnHistograms`: adds a `namespace` label to the pod startup histograms (opt-in, §1.2). */
  constructor(registry: Registry, namespaceOnHistograms: boolean) {
    const ns = namespaceOnHistograms ? (['namespace'] as const) : ([] as const);
    const histogram = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      new Histogram<L>({ name, help, labelNames, buckets: SECOND_BUCKETS, registers: [registry] });
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) => new Counter<L>({ name, help, labelNames, registers: [registry] });
    this.podStartup = histogram(
      'k8s_pod_startup_duration_seconds',
      'Pod creation to Ready first True, per pod (node-local; unlike kubelet_pod_start_sli_duration_seconds it includes scheduling, image pulls and init containers).',
      ['owner_kind', ...ns],
    );
    this.podStartupStage = histogram('k8s_pod_startup_stage_duration_seconds', 'Duration of each pod startup stage, once per pod (node-local).', ['stage', ...ns]);
    // shared with the event metrics (Unschedulable, DeletionByTaintManager come from Events on the leader)
    this.podStartupFailures = sharedCounter(registry, 'k8s_pod_startup_failures_total', 'Pod startups that ended in an error, first time per pod, by cause.', ['owner_kind', 'reason']);
    this.containerRestarts = counter('k8s_container_restarts_total', 'Container restarts (restartCount increases) by the last termination reason.', ['namespace', 'reason']);
    this.podDisruptions = sharedCounter(registry, 'k8s_pod_disruptions_total', 'Pods that got a DisruptionTarget condition, by its reason.', ['namespace', 'reason']);
    this.rolloutDuration = histogram('k8s_deployment_rollout_duration_seconds', 'Deployment rollout (a new revision) from its start to its end, by result (leader).', ['result']);
    this.rollouts = counter('k8s_deployment_rollouts_total', 'Deployment rollouts that ended, by result (leader).', ['namespace', 'result']);
    this.pvcProvisioning = histogram(
      'k8s_pvc_provisioning_duration_seconds',
      'Dynamically provisioned claim creation to Bound, minus the wait for a first consumer (leader).',
      ['storage_class', 'provisioner', 'binding_mode'],
    );
    this.volumeAttach = histogram('k8s_volume_attach_duration_seconds', 'VolumeAttachment creation to attached (leader).', ['driver']);
    this.volumeAttachFailures = counter('k8s_volume_attach_failures_total', 'Distinct VolumeAttachment attach errors (by attachError.time) (leader).', ['driver']);
    this.nodeNotReady = new Histogram({
      name: 'k8s_node_not_ready_duration_seconds',
      help: 'Time a node spent with Ready not True, observed when it returns to Ready (leader).',
      buckets: SECOND_BUCKETS,
      registers: [registry],
    });
  }
}

/**
 * Keeps a label's distinct values under a cap: values past it become `other`, so an unexpected
 * flood (thousands of namespaces or storage classes) cannot grow the series count without bound.
 */
export class LabelCap {
  private readonly seen = new Set<string>();
  private readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  value(v: string | undefined): string {
    if (!v) return 'none';
    if (this.seen.has(v)) return v;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(v);
    return v;
  }
}
