import { createServer, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
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

/** The server's bounds (the config's `server` keys). */
export interface ServerLimits {
  max_connections: number;
  header_timeout: number;
  request_timeout: number;
  idle_timeout: number;
}

export const DEFAULT_LIMITS: ServerLimits = { max_connections: 256, header_timeout: 10_000, request_timeout: 30_000, idle_timeout: 5_000 };

/** Requests on one keep-alive connection before it is closed (a client then reconnects). */
const MAX_REQUESTS_PER_SOCKET = 1000;
/** Request line and headers; a probe or a scrape sends a few hundred bytes. */
const MAX_HEADER_BYTES = 8 * 1024;
/** Connections the kernel queues for accept (capped by net.core.somaxconn, 4096 by default). */
const LISTEN_BACKLOG = 4096;
/** How often Node looks for requests past header_timeout / request_timeout. */
const TIMEOUT_CHECK_MS = 1000;
/**
 * A client at the cap may close its own idle connection for a new one only when that one has been
 * open this long: a flood of reconnects from one address does not churn through sockets.
 */
const OWN_EVICTION_MIN_AGE_MS = 1000;

interface Connection {
  socket: Socket;
  /** The client's address as it connected (a closed socket no longer knows it). */
  address: string;
  /** A request on it is being answered. */
  busy: boolean;
  /** When it was opened, or last finished a request. */
  since: number;
}

/**
 * /metrics, /healthz and /readyz on one port, as Prometheus and the kubelet's probes expect.
 *
 * Bounded, because anyone who can reach the pod can open connections to it: at most
 * `max_connections` sockets; headers within `header_timeout`, the whole request within
 * `request_timeout`, keep-alive idle for `idle_timeout`, 1000 requests per connection, 8 KiB of
 * headers, and no request bodies (every route is GET or HEAD). At the cap, the client address
 * holding the most connections gives up its longest-idle one (a keep-alive between requests, or
 * one still trickling its headers; a request being answered is never cut): a neighbour's
 * thousands of slow sockets make room for the kubelet's probe and Prometheus's scrape, never the
 * other way round. A newcomer from that heaviest address itself only replaces one of its own
 * connections idle for a second or more, else it is closed at once. What the server closes is
 * counted by reason in `telemetry_agent_server_connections_closed_total`.
 */
export class AgentServer {
  private readonly server: Server;
  private listener: NetServer;
  private readonly metrics: SelfMetrics;
  private readonly health: Health;
  private readonly routes: StatusRoutes | undefined;
  private limits: ServerLimits;
  /** Open connections by client address, each map in idle order (the one idle longest first). */
  private readonly byAddress = new Map<string, Map<Socket, Connection>>();
  private open = 0;

  constructor(metrics: SelfMetrics, health: Health, routes?: StatusRoutes, limits: ServerLimits = DEFAULT_LIMITS) {
    this.metrics = metrics;
    this.health = health;
    this.routes = routes;
    this.limits = limits;
    this.server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, connectionsCheckingInterval: TIMEOUT_CHECK_MS }, (req, res) => {
      this.busy(req.socket, res);
      const url = new URL(req.url ?? '/', 'http://agent');
      const path = url.pathname;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        this.refuseBody(res, 405, { allow: 'GET, HEAD' });
        return;
      }
      if (req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined) {
        this.refuseBody(res, 413, {});
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
    this.applyLimits();
    // Connections are accepted by a plain listener first: one refused at the cap costs a socket
    // closed, not an HTTP parser set up and torn down (under a flood that is most of them). Those
    // admitted are handed to the HTTP server; 'listening' starts its timeout checks.
    this.listener = createNetServer({ pauseOnConnect: true }, this.accept);
    this.server.emit('listening');
    // Node's own answer to a request that broke a limit (408 past a timeout, 431 for headers too
    // large, 400 for garbage), counted; a socket that cannot take an answer is just closed.
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (err.code === 'ECONNRESET' || err.code === 'HPE_INVALID_EOF_STATE' || !socket.writable) {
        socket.destroy(); // the client went away mid-request: nothing to answer, nothing the server did
        return;
      }
      const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      this.metrics.serverConnectionsClosed.inc({ reason: timeout ? 'timeout' : 'bad_request' });
      const status = timeout ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      // As Node's own handler does: the answer written, the socket destroyed.
      socket.write(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      socket.destroy();
    });
  }

  private readonly accept = (socket: Socket): void => {
    if (!this.admit(socket)) return;
    this.server.emit('connection', socket);
    socket.resume();
  };

  /**
   * Takes over a port bound earlier (agent/early_port.ts, bound before the agent's modules loaded),
   * instead of binding one. It must be a paused-on-connect listener, as this server's own is.
   */
  adopt(listener: NetServer): AddressInfo {
    this.listener = listener;
    listener.on('connection', this.accept);
    return listener.address() as AddressInfo;
  }

  /** New bounds (a reload): connections beyond a lower cap go as new ones arrive. */
  setLimits(limits: ServerLimits): void {
    this.limits = limits;
    this.applyLimits();
  }

  private applyLimits(): void {
    this.server.headersTimeout = this.limits.header_timeout;
    this.server.requestTimeout = this.limits.request_timeout;
    this.server.keepAliveTimeout = this.limits.idle_timeout;
    this.server.maxRequestsPerSocket = MAX_REQUESTS_PER_SOCKET;
  }

  /** A new connection; at the cap, the heaviest client's longest-idle connection makes room, or this one goes (false). */
  private admit(socket: Socket): boolean {
    const address = socket.remoteAddress ?? '';
    if (this.open >= this.limits.max_connections) {
      this.metrics.serverConnectionsClosed.inc({ reason: 'max_connections' });
      const victim = this.victimFor(address);
      if (!victim) {
        socket.destroy();
        return false;
      }
      this.forget(victim);
      victim.socket.destroy();
    }
    let mine = this.byAddress.get(address);
    if (!mine) this.byAddress.set(address, (mine = new Map()));
    const conn: Connection = { socket, address, busy: false, since: performance.now() };
    mine.set(socket, conn);
    this.open++;
    this.metrics.serverConnections.set(this.open);
    socket.once('close', () => this.forget(conn));
    return true;
  }

  /** The connection to close for a newcomer from `address`, if any may be. */
  private victimFor(address: string): Connection | undefined {
    let heaviest: string | undefined;
    let most = 0;
    for (const [a, conns] of this.byAddress) {
      if (conns.size > most) {
        heaviest = a;
        most = conns.size;
      }
    }
    const own = this.byAddress.get(address)?.size ?? 0;
    const from = own >= most ? address : heaviest!;
    const minAge = from === address ? OWN_EVICTION_MIN_AGE_MS : 0;
    const now = performance.now();
    for (const c of this.byAddress.get(from)?.values() ?? []) {
      if (!c.busy && now - c.since >= minAge) return c;
    }
    return undefined;
  }

  private forget(conn: Connection): void {
    const mine = this.byAddress.get(conn.address);
    if (!mine?.delete(conn.socket)) return;
    if (mine.size === 0) this.byAddress.delete(conn.address);
    this.open--;
    this.metrics.serverConnections.set(this.open);
  }

  /** A request is answered on `socket`: not to be closed for room; idle again (and last in line) once answered. */
  private busy(socket: Socket, res: ServerResponse): void {
    const mine = this.byAddress.get(socket.remoteAddress ?? '');
    const conn = mine?.get(socket);
    if (!mine || !conn) return;
    conn.busy = true;
    res.once('close', () => {
      if (!mine.delete(socket)) return;
      conn.busy = false;
      conn.since = performance.now();
      mine.set(socket, conn);
    });
  }

  /** Answers without reading the body, and closes the connection (its body would follow on it). */
  private refuseBody(res: ServerResponse, status: number, headers: Record<string, string>): void {
    if (status === 413) this.metrics.serverConnectionsClosed.inc({ reason: 'request_body' });
    res.shouldKeepAlive = false;
    res.writeHead(status, { ...headers, connection: 'close' }).end();
  }

  /** Binds `host:port`; resolves with the bound address (port 0 picks a free one). */
  listen(listen: string): Promise<AddressInfo> {
    const at = listen.lastIndexOf(':');
    const host = listen.slice(0, at).replace(/^\[|\]$/g, '');
    const port = Number(listen.slice(at + 1));
    return new Promise((resolve, reject) => {
      this.listener.once('error', reject);
      // A deep accept queue: while a flood of connections is accepted and closed, a probe's
      // connection waits in it instead of having its SYN dropped (the kernel caps it at somaxconn).
      this.listener.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
        this.listener.off('error', reject);
        resolve(this.listener.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      // The HTTP server never listened itself: its close only stops its timeout checks.
      this.server.close(() => undefined);
      this.server.closeAllConnections();
      if (this.listener.listening) this.listener.close(() => resolve());
      else resolve();
      for (const conns of this.byAddress.values()) for (const socket of conns.keys()) socket.destroy();
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
