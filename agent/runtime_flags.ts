import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const CLI_PATH = fileURLToPath(new URL('./cli.ts', import.meta.url));

/**
 * The V8 flags the agent runs with, taken from cli.ts's shebang so that the bin, `npm start`, the
 * image, the tests and the benchmark all start it the same way. A small young generation and an
 * old-space ceiling far above the ~25 MiB live heap keep RSS near 130 MiB under full load; without
 * them V8 sizes the heap for the machine, not for a DaemonSet's memory limit.
 */
export function agentNodeFlags(): string[] {
  const first = readFileSync(CLI_PATH, 'utf8').split('\n', 1)[0]!;
  const m = /^#!\/usr\/bin\/env -S node(.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
}
