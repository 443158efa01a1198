/**
 * The agent's own log lines go to stderr as logfmt-ish text, so they never mix with records an
 * stdout output writes and stay readable in `kubectl logs`.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** A logger whose level a config reload can change. */
export interface LevelledLogger extends Logger {
  setLevel(level: Level): void;
}

export function createLogger(level: Level = 'info', write: (line: string) => void = (l) => process.stderr.write(l)): LevelledLogger {
  let min = RANK[level];
  const at = (lvl: Level) => (msg: string) => {
    if (RANK[lvl] >= min) write(`${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${msg}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), setLevel: (l) => (min = RANK[l]) };
}

/**
 * Logs a recurring problem once per key and interval with a count of what was suppressed, so a
 * thousand unreadable files do not flood the agent's log.
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  private readonly log: Logger;
  private readonly intervalMs: number;

  constructor(log: Logger, intervalMs = 60_000) {
    this.log = log;
    this.intervalMs = intervalMs;
  }

  warn(key: string, msg: string, now = Date.now()): void {
    const seen = this.last.get(key);
    if (seen && now - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    const extra = seen?.suppressed ? ` (${seen.suppressed} similar suppressed)` : '';
    this.last.set(key, { at: now, suppressed: 0 });
    if (this.last.size > 10_000) this.last.clear();
    this.log.warn(msg + extra);
  }
}
