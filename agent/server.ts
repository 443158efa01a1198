import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SelfMetrics } from './metrics.ts';

export interface Health {
  /** The process is alive and its event loop turns. */
  live(): boolean;
  /** Sources and outputs are started and not shutting down. */
  ready(): boolean;
}

/** /metrics, /healthz and /readyz on one port, as Prometheus and the kubelet's probes expect. */
export class AgentServer {
  private readonly server: Server;
  private readonly metrics: SelfMetrics;
  private readonly health: Health;

  constructor(metrics: SelfMetrics, health: Health) {
    this.metrics = metrics;
    this.health = health;
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (path === '/metrics') {
        this.metrics.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text),
          (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
        );
      } else if (path === '/healthz') {
        const ok = this.health.live();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'unhealthy\n');
      } else if (path === '/readyz') {
        const ok = this.health.ready();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'not ready\n');
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n');
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
