import { createServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { parse } from 'yaml';
import { expandEnv } from './config/env.ts';

/**
 * The agent's port, bound as soon as the config file names it: a few hundred milliseconds after
 * the process starts, where loading the agent's modules and building its parts takes a second or
 * more (several on a busy node), so the kubelet's liveness probe is answered from the first second.
 * Until the agent takes the port over (AgentServer.adopt), `/healthz` is 200 (the process lives and
 * its event loop turns) and everything else 503 `starting`, each answer closing its connection.
 * Only `server.listen` is read here, leniently; the config's real check comes right after.
 */
export const DEFAULT_LISTEN = '0.0.0.0:9464';
const LISTEN = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/;
/** The same accept queue as the agent's own server (agent/server.ts). */
const BACKLOG = 4096;

export class EarlyPort {
  readonly listen: string;
  private readonly listener: NetServer;
  private readonly http: HttpServer;
  private readonly onConnection = (socket: Socket) => {
    this.http.emit('connection', socket);
    socket.resume();
  };

  private constructor(listen: string, listener: NetServer) {
    this.listen = listen;
    this.listener = listener;
    this.http = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      res.shouldKeepAlive = false;
      if (path === '/healthz') res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' }).end('ok\n');
      else res.writeHead(503, { 'content-type': 'text/plain', connection: 'close' }).end(path === '/readyz' ? '[-]agent not ready: starting\nnot ready\n' : 'starting\n');
    });
    this.http.headersTimeout = 5000;
    this.http.requestTimeout = 5000;
    listener.on('connection', this.onConnection);
  }

  /**
   * The port the config text names (`server.listen`, after `${VAR}` expansion; the default when it
   * names none), bound; undefined when the text does not say clearly or the port cannot be bound:
   * the agent binds it itself later and reports why not.
   */
  static async bind(text: string, env: NodeJS.ProcessEnv): Promise<EarlyPort | undefined> {
    let listen: string;
    try {
      const expanded = expandEnv(text, env);
      if (expanded.problems.length > 0) return undefined;
      const doc = parse(expanded.text, { maxAliasCount: 0, logLevel: 'silent' }) as { server?: { listen?: unknown } } | null;
      const value = doc?.server?.listen ?? DEFAULT_LISTEN;
      if (typeof value !== 'string' || !LISTEN.test(value)) return undefined;
      listen = value;
    } catch {
      return undefined;
    }
    const at = listen.lastIndexOf(':');
    const listener = createNetServer({ pauseOnConnect: true });
    const bound = await new Promise<boolean>((resolve) => {
      listener.once('error', () => resolve(false));
      listener.listen({ host: listen.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(listen.slice(at + 1)), backlog: BACKLOG }, () => resolve(true));
    });
    return bound ? new EarlyPort(listen, listener) : undefined;
  }

  get address(): AddressInfo {
    return this.listener.address() as AddressInfo;
  }

  /** Hands the listening socket to the agent's server; connections accepted so far finish their answer. */
  release(): NetServer {
    this.listener.off('connection', this.onConnection);
    this.http.closeIdleConnections();
    return this.listener;
  }

  close(): void {
    this.listener.off('connection', this.onConnection);
    this.listener.close();
    this.http.closeAllConnections();
  }
}

/**
 * The packages the agent loads at start, heaviest first, imported one at a time with the event loop
 * turning in between: Node's module loader does not yield while it loads a graph, so loading the
 * agent in one import would leave the early port unanswered for all of it (2 to 4 s on a busy
 * node); in steps, the longest pause is the agent's own files (a few hundred ms). Packages the
 * agent loads only when needed (@kubernetes/client-node, snappy) are not on the list.
 */
const STARTUP_PACKAGES = [
  'zod',
  'yaml',
  '@bufbuild/cel',
  're2js',
  'protobufjs',
  'prom-client',
  'undici',
  'chokidar',
  '@opentelemetry/sdk-trace-base',
  '@opentelemetry/exporter-trace-otlp-proto',
];

export async function loadInSteps(): Promise<void> {
  for (const name of STARTUP_PACKAGES) {
    // A package no longer used is simply not preloaded.
    await import(name).catch(() => undefined);
    await new Promise((r) => setImmediate(r));
  }
  await import('./config/schema.ts');
  await new Promise((r) => setImmediate(r));
}
