import type { z } from 'zod';
import type { TargetNeeds } from '../config/target_check.ts';
import { containerLogsConfig } from './container_logs/config.ts';
import { journaldConfig, type JournaldConfig } from './journald/config.ts';
import { kubernetesEventsConfig } from './kubernetes_events/config.ts';

/**
 * Every source type the config accepts. A new source adds its schema here and its factory in
 * sources/create.ts. `signalsBeyondRecords`: the source is useful with no output listing it (it
 * also makes metrics), so the config does not require one. `needs`: what it needs from the node
 * besides data_dir and the Kubernetes API (agent/config/target_check.ts).
 */
export const sourcePlugins = {
  container_logs: { schema: containerLogsConfig, signalsBeyondRecords: false, needs: (): TargetNeeds => ({}) },
  journald: {
    schema: journaldConfig,
    signalsBeyondRecords: false,
    needs: (c: JournaldConfig): TargetNeeds => ({ programs: [{ key: 'journalctl', command: c.journalctl }] }),
  },
  kubernetes_events: { schema: kubernetesEventsConfig, signalsBeyondRecords: true, needs: (): TargetNeeds => ({}) },
} as const;

export type SourceConfig = z.infer<(typeof sourcePlugins)[keyof typeof sourcePlugins]['schema']>;
