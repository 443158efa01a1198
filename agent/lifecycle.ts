import type { Agent } from './agent.ts';
import { ConfigReloader } from './config/reloader.ts';
import { processSignals, type ProcessSignals } from './process_signals.ts';

export interface RunOptions {
  /** Watched and reloaded on change and on SIGHUP. */
  configFile?: string;
  /** Runs once the agent has started (the demo starts its story here). */
  afterStart?: () => void | Promise<void>;
  /** Runs before the agent stops (the demo stops its simulator here). */
  beforeStop?: () => Promise<void>;
  /** Default: the process's one instance (installed by the first line of agent/cli.ts). */
  signals?: ProcessSignals;
}

/**
 * Runs an agent until SIGTERM/SIGINT (also one that arrived while it was starting); a second
 * signal exits at once. SIGHUP reloads the config. Rejects with the agent's StartupError when it
 * cannot start.
 */
export async function runUntilSignal(agent: Agent, opts: RunOptions = {}): Promise<number> {
  const signals = opts.signals ?? processSignals();
  let reloader: ConfigReloader | undefined;
  const stopped = new Promise<number>((resolve) => {
    signals.onStop(
      (signal) => {
        agent.log.info(`${signal}: stopping (flushing outputs, writing checkpoints)`);
        void (async () => {
          signals.onHup(undefined);
          await reloader?.close();
          await opts.beforeStop?.();
          const { drained } = await agent.stop();
          agent.log.info(`stopped${drained ? '' : ' (shutdown timeout reached)'}`);
          resolve(0);
        })();
      },
      (signal) => {
        agent.log.warn(`second ${signal}: exiting without waiting for outputs`);
        process.exit(1);
      },
    );
  });
  try {
    await agent.start();
  } catch (err) {
    signals.onHup(undefined);
    throw err;
  }
  if (!signals.stopRequested) await opts.afterStart?.();
  if (!signals.stopRequested) {
    reloader = opts.configFile ? new ConfigReloader(opts.configFile, agent) : undefined;
    reloader?.start();
    signals.onHup(() => {
      if (!reloader) return agent.log.warn('SIGHUP: no config file to reload');
      void reloader.reload('SIGHUP').then((result) => agent.log.info(`SIGHUP: config ${result}`));
    });
  }
  return stopped;
}
