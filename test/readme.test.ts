import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { configSchema } from '../agent/config/schema.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import { sourcePlugins } from '../agent/sources/registry.ts';
import { outputCommon } from '../outputs/common_config.ts';
import { outputPlugins } from '../outputs/registry.ts';
import { transformCommon } from '../agent/transforms/common_config.ts';
import { transformPlugins } from '../agent/transforms/registry.ts';

/** The README's config reference and metrics list are product docs: they must not drift from the code. */
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

function keysOf(schema: z.core.$ZodType): string[] {
  let def = schema._zod.def as unknown as { type: string; innerType?: z.core.$ZodType; shape?: Record<string, z.core.$ZodType> };
  while (def.innerType) def = def.innerType._zod.def as unknown as typeof def;
  return def.type === 'object' ? Object.keys(def.shape!) : [];
}

function section(title: string): string {
  const start = readme.indexOf(`### ${title}`);
  expect(start, `README section "${title}"`).toBeGreaterThanOrEqual(0);
  const end = readme.indexOf('\n### ', start + 4);
  return readme.slice(start, end < 0 ? undefined : end);
}

describe('README stays in step with the code', () => {
  it('documents every top-level, server and kubernetes key', () => {
    const top = section('Top level');
    const shape = (configSchema._zod.def as unknown as { shape: Record<string, z.core.$ZodType> }).shape;
    expect(Object.keys(shape)).toContain('data_dir');
    for (const key of Object.keys(shape)) {
      const nested = keysOf(shape[key]!);
      if (nested.length && key !== 'sources' && key !== 'outputs') for (const k of nested) expect(top).toContain(`\`${key}.${k}\``);
      else expect(top).toContain(`\`${key}`);
    }
  });

  it('documents every key of every source and output type', () => {
    for (const [type, plugin] of Object.entries(sourcePlugins)) {
      const doc = section(`Source \`${type}\``);
      expect(keysOf(plugin.schema).length).toBeGreaterThan(5);
      for (const key of keysOf(plugin.schema)) expect(doc, `${type}.${key}`).toContain(`| \`${key}\` |`);
    }
    // Keys every output takes are documented once, in their own section.
    const common = section('Every output');
    for (const key of Object.keys(outputCommon)) expect(common, `outputs.*.${key}`).toContain(`| \`${key}\` |`);
    for (const [type, plugin] of Object.entries(outputPlugins)) {
      const doc = section(`Output \`${type}\``);
      expect(keysOf(plugin.schema)).toContain('inputs');
      for (const key of keysOf(plugin.schema)) {
        if (!(key in outputCommon)) expect(doc, `${type}.${key}`).toContain(`| \`${key}\` |`);
      }
    }
  });

  it('documents every key of every transform type, with an example', () => {
    const common = section('Transforms');
    for (const key of ['type', ...Object.keys(transformCommon)]) expect(common, `transforms.*.${key}`).toContain(`| \`${key}\` |`);
    for (const [type, plugin] of Object.entries(transformPlugins)) {
      const doc = section(`Transform \`${type}\``);
      expect(doc, `an example of ${type}`).toContain(`type: ${type}`);
      for (const key of keysOf(plugin.schema)) {
        if (key !== 'type' && !(key in transformCommon)) expect(doc, `${type}.${key}`).toContain(`| \`${key}\` |`);
      }
    }
  });

  it('lists every telemetry_agent_* metric the agent registers', async () => {
    const metrics = await new SelfMetrics('test').registry.getMetricsAsJSON();
    const names = metrics.map((m) => m.name).filter((n) => n.startsWith('telemetry_agent_'));
    expect(names.length).toBeGreaterThan(15);
    for (const name of names) expect(readme, name).toContain(`\`${name}\``);
  });

  it("names every source and output type in its first section, before any reference (issue 13: the truth at the top)", () => {
    const first = readme.slice(0, readme.indexOf('\n## '));
    expect(first.length).toBeGreaterThan(500);
    for (const type of Object.keys(sourcePlugins)) expect(first, `source ${type}`).toContain(`\`${type}\``);
    for (const type of Object.keys(outputPlugins)) expect(first, `output ${type}`).toContain(`\`${type}\``);
    // the two commands, and nothing left of "not accepted yet"
    expect(first).toContain('npm ci && npm start');
    expect(first).toContain('npm ci && npm test');
    expect(readme).not.toMatch(/not accepted yet|next steps on the\s+tracker/);
  });
});
