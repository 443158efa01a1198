import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import type { ControlPlane } from './control_plane.ts';

/**
 * A plain-HTTP forwarding proxy in front of the real API server, for faults a real server cannot be
 * made to show on demand: every WATCH answered 410 Gone (LIST and GET keep working), as a broken watch
 * cache or a misbehaving proxy in front of the API does; and watches cut and held back (a network
 * partition of the client), so the API server's own history moves on meanwhile. Everything else is
 * passed through unchanged, credentials included.
 */
export class ApiProxy {
  /** Answer every `watch=1` request with HTTP 410 (the Status the API server sends for an expired resourceVersion). */
  watchGone = false;
  readonly watches: string[] = [];
  private readonly open = new Set<http.ServerResponse>();
  private held: (() => void)[] = [];
  private holding = false;
  readonly lists: string[] = [];
  private readonly server: http.Server;
  private readonly agent: https.Agent;
  private readonly target: URL;

  constructor(cp: ControlPlane) {
    this.target = new URL(cp.server);
    this.agent = new https.Agent({ ca: readFileSync(cp.caFile), keepAlive: true });
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
    this.agent.destroy();
  }

  /** Ends every watch in flight and holds new ones back until `releaseWatches()`. */
  cutWatches(): void {
    this.holding = true;
    for (const res of this.open) res.destroy();
    this.open.clear();
  }

  releaseWatches(): void {
    this.holding = false;
    for (const go of this.held.splice(0)) go();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url0 = new URL(req.url ?? '/', 'http://proxy');
    if (this.holding && (url0.searchParams.get('watch') === '1' || url0.searchParams.get('watch') === 'true')) {
      this.held.push(() => this.handle(req, res));
      return;
    }
    const url = new URL(req.url ?? '/', 'http://proxy');
    const isWatch = url.searchParams.get('watch') === '1' || url.searchParams.get('watch') === 'true';
    if (isWatch) this.watches.push(url.pathname);
    else if (req.method === 'GET') this.lists.push(url.pathname);
    if (isWatch && this.watchGone) {
      const rv = url.searchParams.get('resourceVersion') ?? '0';
      const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${rv} (${Number(rv) + 1})`, reason: 'Expired', code: 410 });
      res.writeHead(410, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (isWatch) {
      this.open.add(res);
      res.on('close', () => this.open.delete(res));
    }
    const up = https.request(
      { host: this.target.hostname, port: this.target.port, path: req.url, method: req.method, headers: { ...req.headers, host: this.target.host }, agent: this.agent },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
    res.on('close', () => up.destroy());
  }
}
