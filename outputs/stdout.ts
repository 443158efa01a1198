import { z } from 'zod';
import type { RecordBatch } from '../agent/record.ts';
import { inputs } from '../agent/config/types.ts';
import type { Output, OutputContext } from './output.ts';
import { NdjsonEncoder, encodeText } from './ndjson.ts';

export const stdoutConfig = z.strictObject({
  type: z.literal('stdout'),
  inputs,
  encoding: z.enum(['json', 'text']).default('json'),
});
export type StdoutConfig = z.infer<typeof stdoutConfig>;

/** Writes to the process's standard output; waits for 'drain' so a slow reader slows the sources, not memory. */
export class StdoutOutput implements Output {
  readonly name: string;
  private readonly encode: (batch: RecordBatch) => string;
  private readonly stream: NodeJS.WritableStream;

  constructor(config: StdoutConfig, ctx: OutputContext, stream: NodeJS.WritableStream = process.stdout) {
    this.name = ctx.name;
    this.stream = stream;
    const ndjson = new NdjsonEncoder();
    this.encode =
      config.encoding === 'json'
        ? (b) => ndjson.encodeAll(b.records)
        : (b) => {
            let out = '';
            for (const r of b.records) out += encodeText(r);
            return out;
          };
  }

  write(batch: RecordBatch): Promise<number> {
    const text = this.encode(batch);
    const bytes = Buffer.byteLength(text);
    return new Promise((resolve, reject) => {
      const ok = this.stream.write(text, (err) => (err ? reject(err) : ok && resolve(bytes)));
      if (!ok) this.stream.once('drain', () => resolve(bytes));
    });
  }

  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

export function createStdoutOutput(config: StdoutConfig, ctx: OutputContext): Output {
  return new StdoutOutput(config, ctx);
}
