import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { gunzipSync } from 'node:zlib';

/**
 * The HTTP part every receiver fake shares: a listener on 127.0.0.1 (plain or TLS), the request
 * log, gzip request bodies, and fault injection, so each fake (loki_receiver, otlp_receiver,
 * elasticsearch_bulk, splunk_hec) is only its wire format and its answers.
 */

/** One injected misbehaviour, used for the next request(s) instead of the normal answer. */
export type Fault =
  /** Answer with this status (and body/headers), without looking at the request. */
  | { status: number; body?: string; headers?: Record<string, string> }
  /** Hold the request this long, then answer normally. */
  | { delayMs: number }
  /** Destroy the connection as soon as the request arrives. */
  | { reset: true };

export interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  /** Body as sent (before gunzip). */
  wireBytes: number;
  /** Body after Content-Encoding was undone. */
  body: Buffer;
}

export interface FakeServerOptions {
  /** PEM key and certificate: serve HTTPS. */
  tls?: { key: string | Buffer; cert: string | Buffer; ca?: string | Buffer; requestCert?: boolean };
}

export type Handler = (req: ReceivedRequest) => Answer | Promise<Answer>;

export class FakeHttpServer {
  readonly requests: ReceivedRequest[] = [];
  private readonly faults: Fault[] = [];
  private readonly sockets = new Set<Socket>();
  private server: Server;
  private port = 0;
  private readonly scheme: 'http' | 'https';

  private constructor(handler: Handler, opts: FakeServerOptions) {
    const listener = (req: IncomingMessage, res: ServerResponse) => void this.serve(req, res, handler);
    this.scheme = opts.tls ? 'https' : 'http';
    this.server = opts.tls ? createHttpsServer(opts.tls, listener) : createHttpServer(listener);
    this.track(this.server);
  }

  static async start(handler: Handler, opts: FakeServerOptions = {}): Promise<FakeHttpServer> {
    const s = new FakeHttpServer(handler, opts);
    await s.listen();
    return s;
  }

  /** Base URL, e.g. http://127.0.0.1:40123 (https://localhost:... with TLS, matching the test certificate). */
  get url(): string {
    return `${this.scheme}://${this.scheme === 'https' ? 'localhost' : '127.0.0.1'}:${this.port}`;
  }

  /** The next `times` requests get `fault` instead of the normal answer (queued after earlier faults). */
  inject(fault: Fault, times = 1): void {
    for (let i = 0; i < times; i++) this.faults.push(fault);
  }

  /** Stop listening and cut every open connection: the receiver is down. */
  async down(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** Listen again on the same port. */
  async up(): Promise<void> {
    await this.listen();
  }

  async close(): Promise<void> {
    if (this.server.listening) await this.down();
  }

  private track(server: Server): void {
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    // A client refusing our certificate resets the handshake; that is the test's point, not an error here.
    server.on('tlsClientError', () => {});
  }

  private listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private async serve(req: IncomingMessage, res: ServerResponse, handler: Handler): Promise<void> {
    const chunks: Buffer[] = [];
    try {
      for await (const c of req) chunks.push(c as Buffer);
    } catch {
      return; // the client went away mid-request
    }
    const wire = Buffer.concat(chunks);
    const fault = this.faults.shift();
    if (fault && 'reset' in fault) {
      req.socket.destroy();
      return;
    }
    if (fault && 'delayMs' in fault) {
      await new Promise((r) => setTimeout(r, fault.delayMs));
      if (req.socket.destroyed) return;
    }
    let answer: Answer;
    if (fault && 'status' in fault) {
      answer = { status: fault.status, headers: fault.headers, body: fault.body };
    } else {
      let body: Buffer;
      try {
        body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(wire) : wire;
      } catch (e) {
        reply(res, { status: 400, body: `bad gzip body: ${(e as Error).message}` });
        return;
      }
      const received: ReceivedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, wireBytes: wire.length, body };
      this.requests.push(received);
      try {
        answer = await handler(received);
      } catch (e) {
        answer = { status: 400, body: `fake could not decode the request: ${(e as Error).message}` };
      }
    }
    reply(res, answer);
  }
}

function reply(res: ServerResponse, a: Answer): void {
  res.writeHead(a.status, a.headers);
  res.end(a.body);
}

/** What every receiver fake is: its FakeHttpServer (faults, request log) and its protocol's handler. */
export abstract class ReceiverFake {
  server!: FakeHttpServer;

  protected abstract handle(req: ReceivedRequest): Answer | Promise<Answer>;

  protected async listen(opts: FakeServerOptions): Promise<this> {
    this.server = await FakeHttpServer.start((req) => this.handle(req), opts);
    return this;
  }

  get url(): string {
    return this.server.url;
  }

  close(): Promise<void> {
    return this.server.close();
  }
}
