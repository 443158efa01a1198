import { redactUrls } from './redact.ts';

/**
 * The agent's own log lines go to stderr, so they never mix with records an stdout output writes:
 * as text (`<time> <LEVEL> <message>`, readable in `kubectl logs`) or, `log_format: json`, one JSON
 * object per line (`{"time":…,"level":"warn","msg":…}`) for a log pipeline that collects it. Either
 * way one event is one line: a message's own line breaks (a stack trace) are escaped as `\n`, so a
 * collector never splits an error into several records.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** A logger whose level and format a config reload can change. */
export interface LevelledLogger extends Logger {
  setLevel(level: Level): void;
  setFormat(format: LogFormat): void;
}

/** One event as one line of text: line breaks inside the message escaped. */
export function formatText(time: Date, level: Level, msg: string): string {
  return `${time.toISOString()} ${level.toUpperCase().padEnd(5)} ${msg.replace(/\r?\n/g, '\\n')}\n`;
}

/** One event as one JSON object on one line (JSON.stringify escapes line breaks). */
export function formatJson(time: Date, level: Level, msg: string): string {
  return `{"time":"${time.toISOString()}","level":"${level}","msg":${JSON.stringify(msg)}}\n`;
}

/**
 * Every URL in a message loses its credentials and query string on the way out (agent/redact.ts),
 * whichever part wrote the message: a retry warning must not print the token an endpoint carries.
 */
export function createLogger(level: Level = 'info', write: (line: string) => void = (l) => process.stderr.write(l), format: LogFormat = 'text'): LevelledLogger {
  let min = RANK[level];
  let render = format === 'json' ? formatJson : formatText;
  const at = (lvl: Level) => (msg: string) => {
    if (RANK[lvl] >= min) write(render(new Date(), lvl, redactUrls(msg)));
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    setLevel: (l) => (min = RANK[l]),
    setFormat: (f) => (render = f === 'json' ? formatJson : formatText),
  };
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

/**
 * A recurring event reported with counts, once per interval: the first occurrence at once, then
 * one line per interval while it goes on (`1234 more in the last 10 s, 5678 in all`), and nothing
 * once it stops, so the next occurrence is reported at once again. For drops: a silent drop is the
 * one thing an operator must hear about, and a line per drop would flood the log.
 */
export class IntervalCountLog {
  private readonly log: Logger;
  private readonly intervalMs: number;
  private readonly describe: (count: number, total: number, seconds: number | undefined) => string;
  private pending = 0;
  private total = 0;
  private timer: NodeJS.Timeout | undefined;

  /** `describe(count, total, seconds)`: `seconds` is undefined for the first line of a run. */
  constructor(log: Logger, intervalMs: number, describe: (count: number, total: number, seconds: number | undefined) => string) {
    this.log = log;
    this.intervalMs = intervalMs;
    this.describe = describe;
  }

  add(count: number): void {
    if (count <= 0) return;
    this.total += count;
    if (this.timer) {
      this.pending += count;
      return;
    }
    this.log.warn(this.describe(count, this.total, undefined));
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  /** Reports what is pending now (a final line at shutdown). */
  flush(): void {
    if (this.pending > 0) this.log.warn(this.describe(this.pending, this.total, this.intervalMs / 1000));
    this.pending = 0;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    if (this.pending === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    this.log.warn(this.describe(this.pending, this.total, this.intervalMs / 1000));
    this.pending = 0;
  }
}
