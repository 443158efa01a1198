import { rate, type ComponentStatus, type StatusSnapshot } from '../status/components.ts';

/**
 * `telemetry-agent top`: the running agent's components, one row each, refreshed every interval:
 * records and bytes per second, errors and drops per second, buffer fill and age of its oldest
 * record, tail lag, and whether it is ready or failing. Rates are differences of the cumulative
 * counts of two `/components` snapshots over the time between them. `q` or Ctrl-C quits.
 */

export interface TopOptions {
  url: string;
  intervalMs: number;
  /** One table (after one interval, for the rates) and exit. */
  once: boolean;
  out?: NodeJS.WriteStream;
}

export async function runTop(o: TopOptions): Promise<number> {
  const out = o.out ?? process.stdout;
  const fetchSnapshot = async (): Promise<StatusSnapshot> => {
    const res = await fetch(`${o.url}/components`);
    if (!res.ok) throw new Error(`GET /components: ${res.status} ${await res.text()}`);
    return (await res.json()) as StatusSnapshot;
  };
  if (o.once) {
    let first: StatusSnapshot;
    try {
      first = await fetchSnapshot();
      await sleep(o.intervalMs);
      out.write(renderTop(first, await fetchSnapshot(), { width: out.columns ?? 160, intervalMs: o.intervalMs }));
      return 0;
    } catch (err) {
      process.stderr.write(`telemetry-agent top: cannot reach the agent at ${o.url}: ${causeOf(err)}\n`);
      return 1;
    }
  }

  const tty = out.isTTY === true;
  let stopped = false;
  let wake: () => void = () => {};
  const stop = () => {
    stopped = true;
    wake();
  };
  const stdin = process.stdin;
  const onKey = (key: Buffer) => {
    const k = key.toString();
    if (k === 'q' || k === 'Q' || k === '\u0003') stop();
  };
  if (stdin.isTTY) {
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onKey);
  }
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (tty) out.write('\x1b[?1049h\x1b[?25l'); // alternate screen, no cursor
  let prev: StatusSnapshot | undefined;
  try {
    while (!stopped) {
      let screen: string;
      try {
        const next = await fetchSnapshot();
        screen = renderTop(prev, next, { width: out.columns ?? 160, intervalMs: o.intervalMs });
        prev = next;
      } catch (err) {
        screen = `telemetry-agent top: cannot reach the agent at ${o.url}: ${causeOf(err)}; retrying every ${o.intervalMs / 1000} s (q quits)\n`;
        prev = undefined;
      }
      out.write(tty ? `\x1b[H\x1b[2J${screen}` : `${screen}\n`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, o.intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    if (tty) out.write('\x1b[?25h\x1b[?1049l');
    if (stdin.isTTY) {
      stdin.off('data', onKey);
      stdin.setRawMode(false);
      stdin.pause();
    }
  }
  return 0;
}

function causeOf(err: unknown): string {
  const e = err as Error & { cause?: Error };
  return e.cause?.message ?? e.message;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const COLUMNS = ['KIND', 'NAME', 'TYPE', 'RECORDS/S', 'BYTES/S', 'ERRORS/S', 'DROPPED/S', 'BUFFER', 'LAG', 'STATE'] as const;

/** The screen for one refresh: a header line and one row per component. `prev` undefined: rates not known yet. */
export function renderTop(prev: StatusSnapshot | undefined, next: StatusSnapshot, o: { width: number; intervalMs: number }): string {
  const rows: string[][] = [];
  for (const c of order(next.components)) {
    const r = (f: 'records' | 'bytes' | 'errors' | 'dropped') => (prev ? rate(prev, next, c.kind, c.name, f) : undefined);
    rows.push([
      c.kind,
      c.name,
      c.type,
      num(r('records')),
      bytes(r('bytes'), c.kind),
      num(r('errors')),
      num(r('dropped')),
      buffer(c),
      c.tailLagBytes === undefined ? '' : fmtBytes(c.tailLagBytes),
      state(c, next.time),
    ]);
  }
  const widths = COLUMNS.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const right = new Set([3, 4, 5, 6]);
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .slice(0, o.width);
  const when = new Date(next.time).toISOString().slice(11, 19);
  const head = `telemetry-agent top: node ${next.node}, version ${next.version}, ${next.ready ? 'ready' : 'NOT READY'}, ${next.components.length} components; ${when} UTC, every ${o.intervalMs / 1000} s, q quits`;
  return [head.slice(0, o.width), '', line(COLUMNS), ...rows.map(line), ''].join('\n');
}

/** Sources, then transforms, then outputs, each by name. */
function order(components: ComponentStatus[]): ComponentStatus[] {
  const rank = { source: 0, transform: 1, output: 2 } as const;
  return [...components].sort((a, b) => rank[a.kind] - rank[b.kind] || a.name.localeCompare(b.name));
}

function num(v: number | undefined): string {
  if (v === undefined) return '…';
  if (v >= 10_000) return `${(v / 1000).toFixed(0)}k`;
  if (v >= 1000) return `${(v / 1000).toFixed(1)}k`;
  return v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1);
}

function bytes(v: number | undefined, kind: string): string {
  if (kind === 'transform') return '';
  if (v === undefined) return '…';
  return `${fmtBytes(v)}/s`;
}

export function fmtBytes(v: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

function fmtAge(seconds: number): string {
  if (seconds >= 3600) return `${(seconds / 3600).toFixed(1)}h`;
  if (seconds >= 60) return `${(seconds / 60).toFixed(1)}m`;
  return `${seconds.toFixed(1)}s`;
}

function buffer(c: ComponentStatus): string {
  const b = c.buffer;
  if (!b) return '';
  const fill = b.maxBytes > 0 ? (b.bytes / b.maxBytes) * 100 : 0;
  return `${b.type} ${fill < 10 ? fill.toFixed(1) : fill.toFixed(0)}% ${b.records} rec${b.records > 0 ? ` oldest ${fmtAge(b.oldestAgeSeconds)}` : ''}`;
}

function state(c: ComponentStatus, now: number): string {
  if (!c.ready) return `not ready: ${c.notReadyReason ?? '?'}`;
  if (c.failingSinceSeconds !== undefined) return `failing ${fmtAge(Math.max(0, now / 1000 - c.failingSinceSeconds))}: ${c.lastError ?? ''}`;
  return c.listeners > 0 ? `ok (${c.listeners} tap${c.listeners > 1 ? 's' : ''})` : 'ok';
}
