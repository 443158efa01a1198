import type { Server } from 'node:http';
import { ReceiverFake, type Answer, type FakeServerOptions, type ReceivedRequest } from '../../agent/demo/fake_http_server.ts';

/**
 * A generic NDJSON-over-HTTP receiver, as the `http` output's users run one: Vector's `http_server`
 * source with `framing.method: newline_delimited` and `decoding.codec: json`, or Fluent Bit's
 * `in_http`, behind the usual reverse proxy. It answers as they document:
 * - 200 for a body whose every line is one JSON object (Vector: 200 by default; an undecodable
 *   body is 400 Bad Request with the decoder's error);
 * - 401 with `WWW-Authenticate` when credentials are required and missing or wrong (Vector's
 *   `auth` strategy basic / custom, RFC 9110 §11.6.1);
 * - 413 Payload Too Large above `maxBodyBytes`, as nginx does past `client_max_body_size`;
 * - 415 for a Content-Type other than application/x-ndjson (this output's contract);
 * - 405 for a method other than those allowed (default POST and PUT).
 * A gzip body (Content-Encoding: gzip) is undone by FakeHttpServer; faults (status with
 * Retry-After, slow, reset, down) come from it too. Every line is kept, parsed, per request.
 */

export interface NdjsonReceiverOptions extends FakeServerOptions {
  /** The exact Authorization header required; a function, for a credential that changes. */
  authorization?: string | (() => string);
  maxBodyBytes?: number;
  methods?: readonly string[];
}

export interface ReceivedLine {
  /** JSON.parse of the line. */
  value: Record<string, unknown>;
  /** Which accepted request it came in, and its line number there. */
  request: number;
  line: number;
}

export class NdjsonReceiver extends ReceiverFake {
  readonly lines: ReceivedLine[] = [];
  /** Requests answered 2xx, in order. */
  readonly accepted: ReceivedRequest[] = [];
  /** TCP connections accepted so far (keep-alive reuses them; a new one per request means it does not). */
  connections = 0;
  private readonly opts: NdjsonReceiverOptions;

  private constructor(opts: NdjsonReceiverOptions) {
    super();
    this.opts = opts;
  }

  static async start(opts: NdjsonReceiverOptions = {}): Promise<NdjsonReceiver> {
    const r = await new NdjsonReceiver(opts).listen(opts);
    // FakeHttpServer keeps its node server to itself; bracket access is TypeScript's escape for that.
    const node = r.server['server'] as Server;
    node.on('connection', () => r.connections++);
    return r;
  }

  /** All records received, in order. */
  get records(): Record<string, unknown>[] {
    return this.lines.map((l) => l.value);
  }

  protected handle(req: ReceivedRequest): Answer {
    const methods = this.opts.methods ?? ['POST', 'PUT'];
    if (!methods.includes(req.method)) return { status: 405, headers: { allow: methods.join(', ') }, body: `method ${req.method} not allowed` };
    const required = typeof this.opts.authorization === 'function' ? this.opts.authorization() : this.opts.authorization;
    if (required !== undefined && req.headers.authorization !== required) {
      return { status: 401, headers: { 'www-authenticate': 'Basic realm="ndjson", Bearer' }, body: 'invalid or missing credentials' };
    }
    if (this.opts.maxBodyBytes !== undefined && req.wireBytes > this.opts.maxBodyBytes) {
      return { status: 413, headers: { 'content-type': 'text/html' }, body: '<html><head><title>413 Request Entity Too Large</title></head><body><center><h1>413 Request Entity Too Large</h1></center></body></html>' };
    }
    const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
    if (ct !== 'application/x-ndjson') return { status: 415, body: `unsupported content type ${JSON.stringify(ct)}, expected application/x-ndjson` };

    const text = req.body.toString('utf8');
    // Decoded as UTF-8 strictly: a replacement character here means the sender wrote bytes that are not UTF-8.
    if (!Buffer.from(text, 'utf8').equals(req.body)) return { status: 400, body: 'body is not valid UTF-8' };
    if (text !== '' && !text.endsWith('\n')) return { status: 400, body: 'the last line is not terminated by a newline' };
    const parsed: Record<string, unknown>[] = [];
    const rows = text === '' ? [] : text.slice(0, -1).split('\n');
    for (let i = 0; i < rows.length; i++) {
      let value: unknown;
      try {
        value = JSON.parse(rows[i]!);
      } catch (e) {
        return { status: 400, body: `line ${i + 1}: failed to decode JSON: ${(e as Error).message}` };
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return { status: 400, body: `line ${i + 1}: expected a JSON object` };
      parsed.push(value as Record<string, unknown>);
    }
    const request = this.accepted.push(req) - 1;
    parsed.forEach((value, line) => this.lines.push({ value, request, line }));
    return { status: 200, body: '' };
  }
}
