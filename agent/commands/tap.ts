import { readFileSync } from 'node:fs';
import { encodeText } from '../../outputs/ndjson.ts';
import type { LogRecord } from '../record.ts';

export interface TapCommandOptions {
  url: string;
  component: string;
  /** Records per second at most (the agent samples). */
  rate?: number;
  /** Stop after this many records. */
  limit?: number;
  /** Print the NDJSON records as the agent sends them, instead of one readable line each. */
  json?: boolean;
  tokenFile?: string;
  out?: (text: string) => void;
  err?: (text: string) => void;
  signal?: AbortSignal;
}

/** A refusal the user can act on (unknown component, ambiguous name, bad numbers): exit 2. */
export class TapRefused extends Error {}

/**
 * `telemetry-agent tap COMPONENT`: prints records flowing through a component of a running agent,
 * sampled by the agent (`--rate`, default 20/s) until `--limit` records or Ctrl-C. Read-only: the
 * agent hands out copies; nothing the tap does changes what the pipeline delivers.
 */
export async function runTap(o: TapCommandOptions): Promise<number> {
  const out = o.out ?? ((t) => process.stdout.write(t));
  const err = o.err ?? ((t) => process.stderr.write(t));
  const query = new URLSearchParams();
  if (o.rate !== undefined) query.set('rate', String(o.rate));
  if (o.limit !== undefined) query.set('limit', String(o.limit));
  const headers: Record<string, string> = {};
  if (o.tokenFile) headers.authorization = `Bearer ${readFileSync(o.tokenFile, 'utf8').trim()}`;
  const url = `${o.url}/tap/${encodeURIComponent(o.component)}${query.size ? `?${query}` : ''}`;
  let res: Response;
  try {
    res = await fetch(url, { headers, signal: o.signal });
  } catch (e) {
    if (o.signal?.aborted) return 0;
    throw new Error(`cannot reach the agent at ${o.url} (${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}); give --agent URL or --config FILE`, { cause: e });
  }
  if (!res.ok) {
    const text = await res.text();
    let message = text;
    try {
      message = (JSON.parse(text) as { error: string }).error;
    } catch {
      // not JSON: an older agent or a proxy
    }
    if (res.status === 404 || res.status === 409 || res.status === 400) throw new TapRefused(message);
    throw new Error(`the agent refused the tap (${res.status}): ${message}`);
  }
  err(`tapping ${res.headers.get('x-tap-component') ?? o.component} on ${o.url} (Ctrl-C to stop)\n`);
  const decoder = new TextDecoder();
  let rest = '';
  let count = 0;
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      rest += decoder.decode(chunk, { stream: true });
      const lines = rest.split('\n');
      rest = lines.pop()!;
      for (const line of lines) {
        if (!line) continue;
        count++;
        out(o.json ? `${line}\n` : textOf(line));
      }
    }
  } catch (e) {
    if (!o.signal?.aborted) throw new Error(`the tap ended: ${(e as Error).message}`, { cause: e });
  }
  err(`${count} records\n`);
  return 0;
}

function textOf(line: string): string {
  const r = JSON.parse(line) as { timestamp: string; observed_timestamp: string; severity_text?: string; body: LogRecord['body']; attributes: LogRecord['attributes']; resource: LogRecord['resource'] };
  return encodeText({ timestamp: r.timestamp, observedTimestamp: r.observed_timestamp, severityText: r.severity_text, body: r.body, attributes: r.attributes, resource: r.resource });
}
