import type { z } from 'zod';
import type { Output, OutputContext } from './output.ts';
import { createFileOutput, fileConfig } from './file.ts';
import { createStdoutOutput, stdoutConfig } from './stdout.ts';

/** Every output type the config accepts: its schema and its factory. A new output adds one line here. */
export const outputPlugins = {
  stdout: { schema: stdoutConfig, create: createStdoutOutput },
  file: { schema: fileConfig, create: createFileOutput },
} as const;

export type OutputConfig = z.infer<(typeof outputPlugins)[keyof typeof outputPlugins]['schema']>;

export function createOutput(config: OutputConfig, ctx: OutputContext): Output {
  // The schema's discriminated union guarantees config matches the plugin picked by its type.
  const create = outputPlugins[config.type].create as (c: OutputConfig, ctx: OutputContext) => Output;
  return create(config, ctx);
}
