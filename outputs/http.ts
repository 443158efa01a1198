import { z } from 'zod';
import type { LogRecord } from '../agent/record.ts';
import { outputCommon } from './common_config.ts';
import { errorForStatus, gzipBody, checkClientKeys, httpClientKeys, outputClient, type HttpClient } from './http_client.ts';
import { NdjsonEncoder } from './ndjson.ts';
import type { Output, OutputContext, SendResult } from './output.ts';

export const httpConfig = z.strictObject({
  type: z.literal('http'),
  ...outputCommon,
  ...httpClientKeys,
  method: z.enum(['POST', 'PUT']).default('POST'),
  compression: z.enum(['none', 'gzip']).default('none'),
}).superRefine(checkClientKeys);
export type HttpConfig = z.infer<typeof httpConfig>;

/** Scratch buffers above this (a batch with a huge record) are let go instead of kept for the next batch. */
const KEEP_SCRATCH_BYTES = 8 * 1024 * 1024;

/**
 * `type: http`: each batch is one request whose body is design.md's NDJSON, one record per line.
 * The receiver's status decides (errorForStatus): 2xx accepted, 408/429/5xx retried (Retry-After
 * honoured), anything else permanent. There is no per-record answer in plain NDJSON, so a batch is
 * accepted or refused as a whole.
 */
export class HttpOutput implements Output {
  readonly name: string;
  private readonly client: HttpClient;
  private readonly encoder = new NdjsonEncoder();
  private readonly method: 'POST' | 'PUT';
  private readonly gzip: boolean;
  private readonly headers: Record<string, string>;
  /** Buffers free for the next batch; one per request in flight at most, so `concurrency` bounds them. */
  private readonly scratch: Buffer<ArrayBuffer>[] = [];

  constructor(config: HttpConfig, ctx: OutputContext) {
    this.name = ctx.name;
    this.method = config.method;
    this.gzip = config.compression === 'gzip';
    this.client = outputClient(ctx.name, config);
    // A configured Content-Type wins: some receivers want application/json for the same lines.
    const configured = Object.keys(config.headers).some((h) => h.toLowerCase() === 'content-type');
    this.headers = configured ? {} : { 'content-type': 'application/x-ndjson' };
    if (this.gzip) this.headers['content-encoding'] = 'gzip';
  }

  async send(records: readonly LogRecord[], signal: AbortSignal): Promise<SendResult> {
    if (records.length === 0) return { bytes: 0 };
    const { buf, length } = this.encoder.encodeInto(records, this.scratch.pop() ?? Buffer.allocUnsafeSlow(256 * 1024));
    let body: Buffer;
    let held: Buffer<ArrayBuffer> | undefined = buf;
    if (this.gzip) {
      body = await gzipBody(buf.subarray(0, length));
      this.release(buf);
      held = undefined;
    } else body = buf.subarray(0, length);
    const res = await this.client.request({ method: this.method, headers: this.headers, body, signal });
    const err = errorForStatus(this.name, res);
    if (err) throw err;
    // The scratch buffer is reused only after a 2xx: undici writes the caller's buffer to the
    // socket without copying it, and a receiver that answers an error (or a failed request) may
    // leave some of it unsent in the socket's queue; such a buffer is left to the GC.
    if (held) this.release(held);
    return { bytes: body.length };
  }

  private release(buf: Buffer<ArrayBuffer>): void {
    if (buf.length <= KEEP_SCRATCH_BYTES) this.scratch.push(buf);
  }

  async flush(): Promise<void> {}

  close(): Promise<void> {
    return this.client.close();
  }
}

export function createHttpOutput(config: HttpConfig, ctx: OutputContext): Output {
  return new HttpOutput(config, ctx);
}
