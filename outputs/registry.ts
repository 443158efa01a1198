import type { z } from 'zod';
import type { Output, OutputContext } from './output.ts';
import { createElasticsearchOutput, elasticsearchConfig } from './elasticsearch.ts';
import { createFileOutput, fileConfig } from './file.ts';
import { createHttpOutput, httpConfig } from './http.ts';
import { createLokiOutput, lokiConfig } from './loki.ts';
import { createOtlpOutput, otlpConfig } from './otlp.ts';
import { createSplunkHecOutput, splunkHecConfig } from './splunk_hec.ts';
import { createStdoutOutput, stdoutConfig } from './stdout.ts';
import { createSyslogOutput, syslogConfig } from './syslog/syslog_output.ts';

/** Every output type the config accepts: its schema and its factory. A new output adds one line here. */
export const outputPlugins = {
  stdout: { schema: stdoutConfig, create: createStdoutOutput },
  syslog: { schema: syslogConfig, create: createSyslogOutput },
  file: { schema: fileConfig, create: createFileOutput },
  elasticsearch: { schema: elasticsearchConfig, create: createElasticsearchOutput },
  http: { schema: httpConfig, create: createHttpOutput },
  loki: { schema: lokiConfig, create: createLokiOutput },
  otlp: { schema: otlpConfig, create: createOtlpOutput },
  splunk_hec: { schema: splunkHecConfig, create: createSplunkHecOutput },
} as const;

export type OutputConfig = z.infer<(typeof outputPlugins)[keyof typeof outputPlugins]['schema']>;

export function createOutput(config: OutputConfig, ctx: OutputContext): Output {
  // The schema's discriminated union guarantees config matches the plugin picked by its type.
  const create = outputPlugins[config.type].create as (c: OutputConfig, ctx: OutputContext) => Output;
  return create(config, ctx);
}
