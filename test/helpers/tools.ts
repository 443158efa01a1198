import { onPath } from '../../agent/executables.ts';
import type { TestContext } from 'vitest';

export { onPath };

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
