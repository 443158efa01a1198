import type { z } from 'zod';
import { containerLogsConfig } from './container_logs/config.ts';
import { journaldConfig } from './journald/config.ts';
import { kubernetesEventsConfig } from './kubernetes_events/config.ts';

/**
 * Every source type the config accepts. A new source adds its schema here and its factory in
 * sources/create.ts. `signalsBeyondRecords`: the source is useful with no output listing it (it
 * also makes metrics), so the config does not require one.
 */
export const sourcePlugins = {
  container_logs: { schema: containerLogsConfig, signalsBeyondRecords: false },
  journald: { schema: journaldConfig, signalsBeyondRecords: false },
  kubernetes_events: { schema: kubernetesEventsConfig, signalsBeyondRecords: true },
} as const;

export type SourceConfig = z.infer<(typeof sourcePlugins)[keyof typeof sourcePlugins]['schema']>;
