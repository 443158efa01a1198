import type { ContainerLineResult } from './container_line.ts';
import { quoteInput } from './container_line.ts';
import { normalizeRfc3339 } from './timestamp.ts';

const MESSAGE_MAX = 120;

/**
 * Parses one line of docker's json-file driver (log-formats.md §3):
 * `{"log":"...\n","stream":"stdout","attrs":{...},"time":"...Z"}`. `attrs` is ignored: the
 * resource comes from the file path. A `log` without a trailing LF is a partial message.
 */
export function parseDockerJsonLine(line: string): ContainerLineResult {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    // V8 quotes the input in its message; keep the error short whatever the line length.
    const short = message.length > MESSAGE_MAX ? message.slice(0, MESSAGE_MAX) + '…' : message;
    return { error: `docker: invalid JSON: ${short}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { error: 'docker: not a JSON object' };
  }
  const o = value as { log?: unknown; stream?: unknown; time?: unknown };

  const log = o.log;
  if (typeof log !== 'string') return { error: log === undefined ? 'docker: "log" missing' : 'docker: "log" not a string' };

  const stream = o.stream;
  if (stream !== 'stdout' && stream !== 'stderr') {
    if (stream === undefined) return { error: 'docker: "stream" missing' };
    return { error: `docker: invalid stream ${typeof stream === 'string' ? quoteInput(stream) : JSON.stringify(stream)}` };
  }

  const rawTime = o.time;
  if (typeof rawTime !== 'string') {
    return { error: rawTime === undefined ? 'docker: "time" missing' : 'docker: "time" not a string' };
  }
  const time = normalizeRfc3339(rawTime);
  if (time === undefined) return { error: `docker: invalid time ${quoteInput(rawTime)}` };

  // json-file appends LF only to complete messages and to the last part of a split one.
  const n = log.length;
  if (n === 0 || log.charCodeAt(n - 1) !== 10) return { time, stream, partial: true, content: log };
  const end = n > 1 && log.charCodeAt(n - 2) === 13 ? n - 2 : n - 1;
  return { time, stream, partial: false, content: log.slice(0, end) };
}
