import { hostname } from 'node:os';
import { z } from 'zod';
import { outputPlugins } from '../../outputs/registry.ts';
import { sourcePlugins } from '../sources/registry.ts';
import { checkGraph } from '../transforms/graph.ts';
import { checkMetricNames } from '../transforms/log_to_metric.ts';
import { transformPlugins } from '../transforms/registry.ts';
import { duration } from './types.ts';

const componentName = z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'names are lowercase letters, digits, _ and -');

function pluginUnion<T extends Record<string, { schema: z.ZodObject }>>(plugins: T) {
  const schemas = Object.values(plugins).map((p) => p.schema);
  return z.discriminatedUnion('type', schemas as unknown as [T[keyof T]['schema'], ...T[keyof T]['schema'][]]);
}

export const configSchema = z
  .strictObject({
    node_name: z
      .string()
      .nullish()
      .transform((v) => (v ? v : hostname())),
    data_dir: z.string().min(1).default('/var/lib/telemetry-agent'),
    log_level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
    /** The agent's own log on stderr: `text` lines or one JSON object per line; one event is one line either way. */
    log_format: z.enum(['text', 'json']).default('text'),
    /** SIGTERM to exit: stop reading, flush outputs, write checkpoints; past this, exit anyway. */
    shutdown_timeout: duration('30s').default(30_000),
    server: z
      .strictObject({
        listen: z
          .string()
          .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port, like 0.0.0.0:9464')
          .default('0.0.0.0:9464'),
        /**
         * Connections held at once. At the cap a new connection closes the longest-idle one (a
         * keep-alive, or a client still sending its headers), so probes and scrapes always get in
         * and memory stays flat whatever a neighbour opens.
         */
        max_connections: z.number().int().min(16).max(65_536).default(256),
        /** A request's headers must arrive within this: a client that trickles them (slowloris) is cut off. */
        header_timeout: duration('10s').pipe(z.number().min(1000, { error: 'expected at least 1s' })).default(10_000),
        /** A whole request (headers and any body) must arrive within this; at least header_timeout. */
        request_timeout: duration('30s').pipe(z.number().min(1000, { error: 'expected at least 1s' })).default(30_000),
        /** A keep-alive connection with no request in flight is closed after this. */
        idle_timeout: duration('5s').pipe(z.number().min(1000, { error: 'expected at least 1s' })).default(5_000),
        /** `/status`: the pipeline graph, latest spans and a live tap, for a person with a browser. */
        status_page: z.boolean().default(false),
        tap: z
          .strictObject({
            /** `/tap/<component>` (telemetry-agent tap, the status page's live tap). */
            enabled: z.boolean().default(true),
            /** A file holding a bearer token that lets requests from other hosts tap; without it only loopback may. */
            token_file: z.string().min(1).nullish(),
          })
          .prefault({}),
      })
      .prefault({}),
    kubernetes: z
      .strictObject({
        mode: z.enum(['auto', 'in_cluster', 'kubeconfig', 'disabled']).default('auto'),
        kubeconfig: z.string().nullish(),
        /** A kubeconfig context; default its current-context. */
        context: z.string().nullish(),
        /** A deleted pod's metadata stays this long: its last log lines are read after deletion. */
        pod_grace_period: duration('5m').default(5 * 60_000),
      })
      .prefault({}),
    sources: z.record(componentName, pluginUnion(sourcePlugins)).default({}),
    transforms: z.record(componentName, pluginUnion(transformPlugins)).default({}),
    outputs: z.record(componentName, pluginUnion(outputPlugins)).default({}),
  })
  .superRefine((cfg, ctx) => {
    for (const p of [...checkGraph(cfg), ...checkMetricNames(cfg.transforms)]) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
    // Records nobody takes would be read, acknowledged and lost: refuse rather than discard silently.
    const read = new Set([...Object.values(cfg.transforms), ...Object.values(cfg.outputs)].flatMap((c) => c.inputs));
    for (const name of Object.keys(cfg.sources)) {
      if (!read.has(name) && !sourcePlugins[cfg.sources[name]!.type].signalsBeyondRecords) {
        ctx.addIssue({ code: 'custom', path: ['sources', name], message: 'no output or transform lists this source in its inputs' });
      }
    }
    if (Object.keys(cfg.sources).length === 0) ctx.addIssue({ code: 'custom', path: ['sources'], message: 'at least one source is needed' });
    if (cfg.server.request_timeout < cfg.server.header_timeout)
      ctx.addIssue({ code: 'custom', path: ['server', 'request_timeout'], message: 'request_timeout must be at least header_timeout (the headers are part of the request)' });
  });

export type AgentConfig = z.infer<typeof configSchema>;
