import type { z } from 'zod';
import type { TargetNeeds } from '../agent/config/target_check.ts';
import type { Output, OutputContext } from './output.ts';
import { createElasticsearchOutput, elasticsearchConfig } from './elasticsearch.ts';
import { createFileOutput, fileConfig, fileNeeds } from './file.ts';
import { createHttpOutput, httpConfig } from './http.ts';
import { httpClientNeeds } from './http_client.ts';
import { createLokiOutput, lokiConfig } from './loki.ts';
import { createOtlpOutput, otlpConfig, otlpNeeds } from './otlp.ts';
import { createSplunkHecOutput, splunkHecConfig, splunkHecNeeds } from './splunk_hec.ts';
import { createStdoutOutput, stdoutConfig } from './stdout.ts';
import { createSyslogOutput, syslogConfig, syslogNeeds } from './syslog/syslog_output.ts';

/**
 * Every output type the config accepts: its schema, its factory, and what it needs from the node
 * (files it reads, paths it writes, its receiver; agent/config/target_check.ts). A new output adds
 * one line here.
 */
export const outputPlugins = {
  stdout: { schema: stdoutConfig, create: createStdoutOutput, needs: (): TargetNeeds => ({}) },
  syslog: { schema: syslogConfig, create: createSyslogOutput, needs: syslogNeeds },
  file: { schema: fileConfig, create: createFileOutput, needs: fileNeeds },
  elasticsearch: { schema: elasticsearchConfig, create: createElasticsearchOutput, needs: httpClientNeeds },
  http: { schema: httpConfig, create: createHttpOutput, needs: httpClientNeeds },
  loki: { schema: lokiConfig, create: createLokiOutput, needs: httpClientNeeds },
  otlp: { schema: otlpConfig, create: createOtlpOutput, needs: otlpNeeds },
  splunk_hec: { schema: splunkHecConfig, create: createSplunkHecOutput, needs: splunkHecNeeds },
} as const;

export type OutputConfig = z.infer<(typeof outputPlugins)[keyof typeof outputPlugins]['schema']>;

export function createOutput(config: OutputConfig, ctx: OutputContext): Output {
  // The schema's discriminated union guarantees config matches the plugin picked by its type.
  const create = outputPlugins[config.type].create as (c: OutputConfig, ctx: OutputContext) => Output;
  return create(config, ctx);
}
