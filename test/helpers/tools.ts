import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'vitest';

/** An executable named `name` on PATH, or undefined. */
export function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** A missing tool fails the test in CI and skips it elsewhere, saying why. */
export function requireTool(ctx: TestContext, name: string): string {
  const path = onPath(name);
  if (path) return path;
  const message = `${name} not installed (apt-get install prometheus)`;
  if (process.env.CI) throw new Error(message);
  console.warn(`skipping "${ctx.task.name}": ${message}`);
  ctx.skip(message);
  throw new Error('unreachable: ctx.skip() returned');
}
