import { z } from 'zod';
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import type { RecordBatch } from '../agent/record.ts';
import { inputs } from '../agent/config/types.ts';
import type { Output, OutputContext } from './output.ts';
import { NdjsonEncoder } from './ndjson.ts';

export const fileConfig = z.strictObject({
  type: z.literal('file'),
  inputs,
  path: z.string().min(1),
  /** fsync after every batch: survives a node crash, not only an agent crash, at the cost of speed. */
  fsync: z.boolean().default(false),
});
export type FileConfig = z.infer<typeof fileConfig>;

/**
 * Appends NDJSON to one file. A batch is accepted once write(2) returned (or fsync, when set):
 * a killed agent loses nothing the kernel already has.
 */
export class FileOutput implements Output {
  readonly name: string;
  private readonly config: FileConfig;
  private readonly encoder = new NdjsonEncoder();
  private handle: fsp.FileHandle | undefined;
  private scratch = Buffer.allocUnsafeSlow(1024 * 1024);

  constructor(config: FileConfig, ctx: OutputContext) {
    this.name = ctx.name;
    this.config = config;
  }

  private async open(): Promise<fsp.FileHandle> {
    if (!this.handle) {
      await fsp.mkdir(dirname(this.config.path), { recursive: true });
      const handle = await fsp.open(this.config.path, 'a+');
      // A crash mid-write can leave a torn last line; end it so the next record starts clean.
      const { size } = await handle.stat();
      if (size > 0) {
        const last = Buffer.alloc(1);
        await handle.read(last, 0, 1, size - 1);
        if (last[0] !== 0x0a) await handle.write('\n');
      }
      this.handle = handle;
    }
    return this.handle;
  }

  async write(batch: RecordBatch): Promise<number> {
    const handle = await this.open();
    // One reused buffer: a fresh Buffer per batch is external memory the GC frees late, and RSS grows.
    const { buf, length } = this.encoder.encodeInto(batch.records, this.scratch);
    this.scratch = buf;
    for (let done = 0; done < length; ) done += (await handle.write(this.scratch, done, length - done)).bytesWritten;
    if (this.config.fsync) await handle.datasync();
    return length;
  }

  async flush(): Promise<void> {
    if (this.handle) await this.handle.datasync();
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    if (handle) {
      await handle.datasync();
      await handle.close();
    }
  }
}

export function createFileOutput(config: FileConfig, ctx: OutputContext): Output {
  return new FileOutput(config, ctx);
}
