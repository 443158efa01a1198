import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SelfMetrics } from './metrics.ts';
import type { StatusRoutes } from './status/routes.ts';

/** One check of /readyz: a component (`source containers`, `agent`) and, when not ready, why. */
export interface ReadinessCheck {
  component: string;
  ready: boolean;
  reason?: string;
}

export interface Health {
  /** The process is alive and its event loop turns. */
  live(): boolean;
  /** Every component that can be not ready, each with why not. */
  readiness(): ReadinessCheck[];
}

/**
 * /readyz's body, in the style of the Kubernetes API server's `?verbose`: `[+]source containers ok`
 * or `[-]source cluster not ready: Kubernetes API refuses access (403)`, then the verdict. A probe
 * reads only the status; a person running curl sees which component holds the agent back, and why.
 * When ready, the list is shown only with `?verbose`.
 */
export function readinessReport(checks: ReadinessCheck[], verbose = false): { ready: boolean; text: string } {
  const ready = checks.every((c) => c.ready);
  if (ready && !verbose) return { ready, text: 'ready\n' };
  const lines = checks.map((c) => (c.ready ? `[+]${c.component} ok` : `[-]${c.component} not ready: ${c.reason ?? 'no reason given'}`));
  return { ready, text: `${lines.join('\n')}${lines.length ? '\n' : ''}${ready ? 'ready' : 'not ready'}\n` };
}

/** /metrics, /healthz and /readyz on one port, as Prometheus and the kubelet's probes expect. */
export class AgentServer {
  private readonly server: Server;
  private readonly metrics: SelfMetrics;
  private readonly health: Health;
  private readonly routes: StatusRoutes | undefined;

  constructor(metrics: SelfMetrics, health: Health, routes?: StatusRoutes) {
    this.metrics = metrics;
    this.health = health;
    this.routes = routes;
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://agent');
      const path = url.pathname;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (this.routes?.handle(req, res, path, url.searchParams)) return;
      if (path === '/metrics') {
        this.metrics.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text),
          (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
        );
      } else if (path === '/healthz') {
        const ok = this.health.live();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'unhealthy\n');
      } else if (path === '/readyz') {
        const { ready, text } = readinessReport(this.health.readiness(), url.searchParams.has('verbose'));
        res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(text);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz, /readyz, /components, /tap/<component> or /status\n');
      }
    });
  }

  /** Binds `host:port`; resolves with the bound address (port 0 picks a free one). */
  listen(listen: string): Promise<AddressInfo> {
    const at = listen.lastIndexOf(':');
    const host = listen.slice(0, at).replace(/^\[|\]$/g, '');
    const port = Number(listen.slice(at + 1));
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** Why `listen` could not be bound, in plain words. */
export function listenProblem(err: unknown, listen: string): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return `${listen} is already in use by another process`;
  if (code === 'EACCES') return `${listen}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`;
  if (code === 'EADDRNOTAVAIL') return `${listen}: no such address on this host`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `${listen}: the host name cannot be resolved`;
  return `cannot listen on ${listen}: ${(err as Error).message}`;
}
