import { z } from 'zod';
import type { LogRecord } from '../agent/record.ts';
import { localOutputCommon } from './common_config.ts';
import type { Output, OutputContext, SendResult } from './output.ts';
import { NdjsonEncoder, encodeText } from './ndjson.ts';

export const stdoutConfig = z.strictObject({
  type: z.literal('stdout'),
  ...localOutputCommon,
  encoding: z.enum(['json', 'text']).default('json'),
});
export type StdoutConfig = z.infer<typeof stdoutConfig>;

/** Writes to the process's standard output; waits for 'drain' so a slow reader slows the sources, not memory. */
export class StdoutOutput implements Output {
  readonly name: string;
  private readonly encode: (records: readonly LogRecord[]) => string;
  private readonly stream: NodeJS.WritableStream;

  constructor(config: StdoutConfig, ctx: OutputContext, stream: NodeJS.WritableStream = process.stdout) {
    this.name = ctx.name;
    this.stream = stream;
    const ndjson = new NdjsonEncoder();
    this.encode =
      config.encoding === 'json'
        ? (records) => ndjson.encodeAll(records)
        : (records) => {
            let out = '';
            for (const r of records) out += encodeText(r);
            return out;
          };
  }

  send(records: readonly LogRecord[]): Promise<SendResult> {
    const text = this.encode(records);
    const bytes = Buffer.byteLength(text);
    return new Promise((resolve, reject) => {
      const ok = this.stream.write(text, (err) => (err ? reject(err) : ok && resolve({ bytes })));
      if (!ok) this.stream.once('drain', () => resolve({ bytes }));
    });
  }

  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

export function createStdoutOutput(config: StdoutConfig, ctx: OutputContext): Output {
  return new StdoutOutput(config, ctx);
}
