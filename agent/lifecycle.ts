import type { Agent } from './agent.ts';
import { ConfigReloader } from './config/reloader.ts';

export interface RunOptions {
  /** Watched and reloaded on change and on SIGHUP. */
  configFile?: string;
  /** Runs before the agent stops (the demo stops its simulator here). */
  beforeStop?: () => Promise<void>;
}

/** Runs an agent until SIGTERM/SIGINT; a second signal exits at once. SIGHUP reloads the config. */
export async function runUntilSignal(agent: Agent, opts: RunOptions = {}): Promise<number> {
  await agent.start();
  const reloader = opts.configFile ? new ConfigReloader(opts.configFile, agent) : undefined;
  reloader?.start();
  const onHup = () => {
    if (!reloader) return agent.log.warn('SIGHUP: no config file to reload');
    reloader.reload('SIGHUP').then(
      (result) => agent.log.info(`SIGHUP: config ${result}`),
      (err: Error) => agent.log.error(`SIGHUP: reload failed: ${err.message}`),
    );
  };
  process.on('SIGHUP', onHup);
  return new Promise((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (++signals > 1) {
        agent.log.warn(`second ${signal}: exiting without waiting for outputs`);
        process.exit(1);
      }
      agent.log.info(`${signal}: stopping (flushing outputs, writing checkpoints)`);
      void (async () => {
        process.off('SIGHUP', onHup);
        await reloader?.close();
        await opts.beforeStop?.();
        const { drained } = await agent.stop();
        agent.log.info(`stopped${drained ? '' : ' (shutdown timeout reached)'}`);
        resolve(0);
      })();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
