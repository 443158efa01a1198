import type { z } from 'zod';
import { containerLogsConfig } from './container_logs/config.ts';
import { journaldConfig } from './journald/config.ts';
import { kubernetesEventsConfig } from './kubernetes_events/config.ts';

/** Every source type the config accepts. A new source adds its schema here and its factory in sources/create.ts. */
export const sourcePlugins = {
  container_logs: { schema: containerLogsConfig },
  journald: { schema: journaldConfig },
  kubernetes_events: { schema: kubernetesEventsConfig },
} as const;

export type SourceConfig = z.infer<(typeof sourcePlugins)[keyof typeof sourcePlugins]['schema']>;
