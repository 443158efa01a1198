import type { Agent } from './agent.ts';

/** Runs an agent until SIGTERM/SIGINT; a second signal exits at once. */
export async function runUntilSignal(agent: Agent, extraStop?: () => Promise<void>): Promise<number> {
  await agent.start();
  return new Promise((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (++signals > 1) {
        agent.log.warn(`second ${signal}: exiting without waiting for outputs`);
        process.exit(1);
      }
      agent.log.info(`${signal}: stopping (flushing outputs, writing checkpoints)`);
      void (async () => {
        await extraStop?.();
        const { drained } = await agent.stop();
        agent.log.info(`stopped${drained ? '' : ' (shutdown timeout reached)'}`);
        resolve(0);
      })();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
