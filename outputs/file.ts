import { z } from 'zod';
import { constants, openSync, promises as fsp } from 'node:fs';
import { Socket } from 'node:net';
import { dirname } from 'node:path';
import type { TargetNeeds } from '../agent/config/target_check.ts';
import type { LogRecord } from '../agent/record.ts';
import { localOutputCommon } from './common_config.ts';
import type { Output, OutputContext, SendResult } from './output.ts';
import { NdjsonEncoder } from './ndjson.ts';

export const fileConfig = z.strictObject({
  type: z.literal('file'),
  ...localOutputCommon,
  path: z.string().min(1),
  /** fsync after every batch: survives a node crash, not only an agent crash, at the cost of speed. */
  fsync: z.boolean().default(false),
});
export type FileConfig = z.infer<typeof fileConfig>;

/** The file is created (with its folder) at the first batch: it, or its nearest existing folder, must be writable. */
export function fileNeeds(config: FileConfig): TargetNeeds {
  return { writes: [{ key: 'path', path: config.path, kind: 'file' }] };
}

/**
 * Appends NDJSON to one file. A batch is accepted once write(2) returned (or fsync, when set):
 * a killed agent loses nothing the kernel already has.
 */
/** Where encoded bytes go: a regular file through the thread pool, or a pipe without it. */
interface Sink {
  write(buf: Buffer, length: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** A regular file, appended to. A crash mid-write can leave a torn last line; end it first. */
async function openFileSink(path: string, fsync: boolean): Promise<Sink> {
  const handle = await fsp.open(path, 'a+');
  const { size } = await handle.stat();
  if (size > 0) {
    const last = Buffer.alloc(1);
    await handle.read(last, 0, 1, size - 1);
    if (last[0] !== 0x0a) await handle.write('\n');
  }
  return {
    async write(buf, length) {
      for (let done = 0; done < length; ) done += (await handle.write(buf, done, length - done)).bytesWritten;
      if (fsync) await handle.datasync();
    },
    sync: () => handle.datasync(),
    async close() {
      await handle.datasync();
      await handle.close();
    },
  };
}

/**
 * A FIFO (or socket) is written through a non-blocking libuv pipe: a blocking write in the thread
 * pool to a reader that stalls could never be cancelled, and would even hold up process exit.
 */
function openPipeSink(path: string): Sink {
  const fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  const socket = new Socket({ fd, readable: false, writable: true });
  let failure: Error | undefined;
  socket.on('error', (err) => (failure = err));
  return {
    write(buf, length) {
      if (failure) return Promise.reject(failure);
      // The socket keeps a reference until written; the caller reuses its buffer.
      const copy = Buffer.from(buf.subarray(0, length));
      return new Promise((resolve, reject) => socket.write(copy, (err) => (err ? reject(err) : resolve())));
    },
    sync: async () => {},
    async close() {
      if (socket.writableLength > 0) socket.destroy();
      else await new Promise<void>((resolve) => socket.end(resolve));
    },
  };
}

/**
 * Appends NDJSON to one file. A batch is accepted once write(2) returned (or fsync, when set):
 * a killed agent loses nothing the kernel already has.
 */
export class FileOutput implements Output {
  readonly name: string;
  private readonly config: FileConfig;
  private readonly encoder = new NdjsonEncoder();
  private sink: Sink | undefined;
  private scratch = Buffer.allocUnsafeSlow(1024 * 1024);

  constructor(config: FileConfig, ctx: OutputContext) {
    this.name = ctx.name;
    this.config = config;
  }

  private async open(): Promise<Sink> {
    if (!this.sink) {
      const { path, fsync } = this.config;
      await fsp.mkdir(dirname(path), { recursive: true });
      const st = await fsp.stat(path).catch(() => undefined);
      this.sink = st && (st.isFIFO() || st.isSocket()) ? openPipeSink(path) : await openFileSink(path, fsync);
    }
    return this.sink;
  }

  async send(records: readonly LogRecord[]): Promise<SendResult> {
    const sink = await this.open();
    // One reused buffer: a fresh Buffer per batch is external memory the GC frees late, and RSS grows.
    const { buf, length } = this.encoder.encodeInto(records, this.scratch);
    this.scratch = buf;
    await sink.write(buf, length);
    return { bytes: length };
  }

  async flush(): Promise<void> {
    await this.sink?.sync();
  }

  async close(): Promise<void> {
    const sink = this.sink;
    this.sink = undefined;
    await sink?.close();
  }
}

export function createFileOutput(config: FileConfig, ctx: OutputContext): Output {
  return new FileOutput(config, ctx);
}
