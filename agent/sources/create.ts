import type { Source, SourceContext } from './source.ts';
import type { SourceConfig } from './registry.ts';
import { ContainerLogsSource } from './container_logs/source.ts';
import { JournaldSource } from './journald/source.ts';
import { KubernetesEventsSource } from './kubernetes_events/source.ts';

export function createSource(name: string, config: SourceConfig, ctx: SourceContext): Source {
  switch (config.type) {
    case 'container_logs':
      return new ContainerLogsSource(name, config, ctx);
    case 'journald':
      return new JournaldSource(name, config, ctx);
    case 'kubernetes_events':
      return new KubernetesEventsSource(name, config, ctx);
  }
}
