import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const CLI_PATH = fileURLToPath(new URL('./cli.ts', import.meta.url));

/**
 * The V8 flags the agent runs with, taken from cli.ts's shebang so that the bin, `npm start`, the
 * image, the tests and the benchmark all start it the same way. A young generation fixed at 16 MiB
 * (records die in it rather than being promoted: started small, a slightly larger heap tipped V8 into
 * a full collection every ~100 ms) and an old-space ceiling far above the ~30 MiB live heap keep RSS
 * under 190 MiB at full load; without them V8 sizes the heap for the machine, not for a DaemonSet's
 * memory limit. `cliPath`: another checkout's cli.ts (the benchmark runs an older agent with its own
 * flags).
 */
export function agentNodeFlags(cliPath = CLI_PATH): string[] {
  const first = readFileSync(cliPath, 'utf8').split('\n', 1)[0]!;
  const m = /^#!\/usr\/bin\/env -S node(.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
}
