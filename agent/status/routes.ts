import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SelfMetrics } from '../metrics.ts';
import { TapError, TapHub, TAP_DEFAULT_PER_SECOND, type ComponentKind } from '../tap.ts';
import { snapshot, type PipelineView } from './components.ts';
import { STATUS_PAGE } from './page.ts';
import type { SpanLog } from './span_log.ts';

/**
 * The day-two endpoints beside /metrics:
 * - `GET /components`: the pipeline graph with counts (JSON; `top` and the status page read it);
 * - `GET /tap/<component>?rate=N&limit=M`: NDJSON records flowing through a component, sampled and
 *   bounded (see agent/tap.ts), while the connection stays open; only from loopback, or with the
 *   bearer token of `server.tap.token_file`; off with `server.tap.enabled: false`;
 * - `GET /status` (the page) and `/status/spans` (its span waterfall's data), with `server.status_page: true`.
 */

export interface StatusRoutesOptions {
  statusPage: boolean;
  tap: { enabled: boolean; tokenFile: string | null | undefined };
}

export class StatusRoutes {
  private readonly view: PipelineView;
  private readonly metrics: SelfMetrics;
  private readonly taps: TapHub;
  private readonly spans: SpanLog;
  /** Read per request: a reload may turn the page or taps on or off. */
  private readonly opts: () => StatusRoutesOptions;

  constructor(view: PipelineView, metrics: SelfMetrics, taps: TapHub, spans: SpanLog, opts: () => StatusRoutesOptions) {
    this.view = view;
    this.metrics = metrics;
    this.taps = taps;
    this.spans = spans;
    this.opts = opts;
  }

  /** Answers the request when the path is one of these routes; false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): boolean {
    if (path === '/components') {
      snapshot(this.view, this.metrics).then(
        (s) => json(res, 200, s),
        (err: Error) => json(res, 500, { error: err.message }),
      );
      return true;
    }
    if (path.startsWith('/tap/')) {
      this.tap(req, res, decodeURIComponent(path.slice('/tap/'.length)), query);
      return true;
    }
    if (path === '/status' || path === '/status/' || path === '/status/spans') {
      if (!this.opts().statusPage) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('the status page is off: set server.status_page: true\n');
      } else if (path === '/status/spans') {
        json(res, 200, { spans: this.spans.latest(Math.min(500, Number(query.get('limit') ?? 200) || 200)) });
      } else {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(STATUS_PAGE);
      }
      return true;
    }
    return false;
  }

  private tap(req: IncomingMessage, res: ServerResponse, name: string, query: URLSearchParams): void {
    if (!this.opts().tap.enabled) return void json(res, 404, { error: 'taps are off on this agent (server.tap.enabled: false)' });
    const denied = this.denied(req);
    if (denied) return void json(res, denied.status, { error: denied.message });
    const known = this.view.components().map((c) => ({ name: c.name, kind: c.kind as ComponentKind }));
    let handle;
    try {
      const point = this.taps.resolve(name, known);
      const perSecond = Number(query.get('rate') ?? TAP_DEFAULT_PER_SECOND);
      const limit = query.has('limit') ? Number(query.get('limit')) : undefined;
      if (!Number.isFinite(perSecond) || perSecond <= 0 || (limit !== undefined && !(limit > 0))) {
        return void json(res, 400, { error: 'rate and limit are positive numbers' });
      }
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-tap-component': `${point.kind}:${point.component}` });
      // The headers go out now: a quiet component must not look like a hung agent.
      res.flushHeaders();
      handle = this.taps.subscribe(
        point,
        {
          write: (line) => res.write(line),
          end: () => res.end(),
        },
        { perSecond, limit },
      );
    } catch (err) {
      if (err instanceof TapError) return void (res.headersSent ? res.end() : json(res, err.status, { error: err.message }));
      throw err;
    }
    const h = handle;
    res.on('drain', () => h.resume());
    res.on('close', () => h.close());
  }

  /** Loopback may tap; other hosts need the token of server.tap.token_file. */
  private denied(req: IncomingMessage): { status: number; message: string } | undefined {
    if (isLoopback(req.socket.remoteAddress)) return undefined;
    const header = req.headers.authorization;
    const file = this.opts().tap.tokenFile;
    if (!file) return { status: 403, message: 'taps are open to loopback only on this agent (set server.tap.token_file to allow others with a token)' };
    let token: string;
    try {
      token = readFileSync(file, 'utf8').trim();
    } catch (err) {
      return { status: 503, message: `the tap token file cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
    }
    const given = Buffer.from(/^Bearer\s+(.+)$/i.exec(header ?? '')?.[1]?.trim() ?? '');
    const want = Buffer.from(token);
    if (want.length > 0 && given.length === want.length && timingSafeEqual(given, want)) return undefined;
    return { status: 401, message: 'a valid bearer token is needed to tap this agent from another host' };
  }
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}
