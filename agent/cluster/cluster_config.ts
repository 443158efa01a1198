import { z } from 'zod';
import { duration } from '../config/types.ts';

/** What the cluster trackers derive (span-and-metric-model.md §2.2-2.6); each can be switched off. */
export const TRACKERS = ['pod_startup', 'image_pull', 'deployment_rollout', 'pvc_provisioning', 'volume_attach', 'node_readiness'] as const;
export type TrackerName = (typeof TRACKERS)[number];

/** The `signals` block of the kubernetes_events source: duration metrics and spans from object transitions. */
export const clusterSignalsConfig = z.strictObject({
  /** Trackers to run; pod_startup runs on every agent (its node's pods), the others on the leader only. */
  trackers: z.array(z.enum(TRACKERS)).default([...TRACKERS]),
  /**
   * Export spans over OTLP/HTTP (OTEL_EXPORTER_OTLP_* variables). `auto`: when OTEL_EXPORTER_OTLP_ENDPOINT
   * or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; `true`: always (default endpoint http://localhost:4318).
   * OTEL_SDK_DISABLED=true turns them off in every case.
   */
  spans: z.union([z.literal('auto'), z.boolean()]).default('auto'),
  /** `k8s.cluster.name` on every span's resource. */
  cluster_name: z.string().default(''),
  /** A pod not Ready this long after creation ends its startup span in ERROR (and counts reason Timeout). */
  pod_startup_timeout: duration('15m').default(15 * 60_000),
  /** Added to a deployment's progressDeadlineSeconds before its rollout span ends in ERROR. */
  rollout_timeout_grace: duration('60s').default(60_000),
  /** A dynamically provisioned claim not Bound this long (after its consumer arrived) ends in ERROR. */
  pvc_provisioning_timeout: duration('30m').default(30 * 60_000),
  /** A VolumeAttachment not attached this long ends in ERROR. */
  volume_attach_timeout: duration('10m').default(10 * 60_000),
  /** Adds `namespace` to the pod startup histograms: 16 series per namespace and owner kind (README). */
  histogram_namespace_label: z.boolean().default(false),
});

export type ClusterSignalsConfig = z.output<typeof clusterSignalsConfig>;
