import { dirname } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { watch, type FSWatcher } from 'chokidar';
import { ReloadRejected, type Agent } from '../agent.ts';
import { ConfigError, parseConfig, readConfigText } from './load.ts';

/**
 * Watches the config file's folder — a ConfigMap volume swaps its `..data` symlink, so the file's
 * own inode never changes — and reloads on change or SIGHUP. The new file is validated first; an
 * invalid one leaves the running config in place, logged and counted.
 */
export class ConfigReloader {
  private readonly file: string;
  private readonly agent: Agent;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastText: string;

  constructor(file: string, agent: Agent) {
    this.file = file;
    this.agent = agent;
    this.lastText = safeRead(file).text ?? '';
  }

  start(debounceMs = 150): void {
    this.watcher = watch(dirname(this.file), { ignoreInitial: true, depth: 0, followSymlinks: false });
    this.watcher.on('all', () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.reload('file change'), debounceMs);
      this.timer.unref();
    });
    this.watcher.on('error', (err) => this.agent.log.warn(`config watch on ${dirname(this.file)} failed: ${(err as Error).message}; SIGHUP still reloads`));
  }

  /** Returns what happened, for logs and tests; never rejects (the file watch calls it unawaited). */
  async reload(reason: string): Promise<'applied' | 'unchanged' | 'invalid' | 'rejected' | 'failed'> {
    const { log, metrics } = this.agent;
    const read = safeRead(this.file);
    if (read.error !== undefined) {
      metrics.configReloads.inc({ result: 'failure' });
      log.error(`config reload (${reason}) rejected, keeping the running config: ${read.error}`);
      return 'invalid';
    }
    const text = read.text;
    if (text === this.lastText && reason !== 'SIGHUP') return 'unchanged';
    this.lastText = text;
    let next;
    try {
      next = parseConfig(text, this.file);
    } catch (err) {
      metrics.configReloads.inc({ result: 'failure' });
      const problems = err instanceof ConfigError ? err.message : String(err);
      log.error(`config reload (${reason}) rejected, keeping the running config: ${problems}`);
      return 'invalid';
    }
    if (isDeepStrictEqual(next, this.agent.config)) return 'unchanged';
    try {
      await this.agent.reload(next);
    } catch (err) {
      // Whatever a reload throws, the agent goes on: a rejected one (a restart-only key, a part
      // that cannot be built) left the running config as it was; anything else is a fault of the
      // reload itself, logged with its stack so it can be reported.
      metrics.configReloads.inc({ result: 'failure' });
      if (err instanceof ReloadRejected) {
        log.error(`config reload (${reason}) rejected, keeping the running config: ${err.message}`);
        return 'rejected';
      }
      log.error(`config reload (${reason}) failed: ${(err as Error).stack ?? String(err)}`);
      return 'failed';
    }
    metrics.configReloads.inc({ result: 'success' });
    return 'applied';
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    await this.watcher?.close();
  }
}

/** The file's text (bounded like at start: readConfigText), or why it cannot be read. */
function safeRead(file: string): { text: string; error?: undefined } | { text?: undefined; error: string } {
  try {
    return { text: readConfigText(file) };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}
