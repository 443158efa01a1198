import type { z } from 'zod';
import type { bufferConfig } from '../../outputs/common_config.ts';
import type { Logger } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';
import type { RecordBuffer } from './buffer.ts';
import { DiskBuffer } from './disk_buffer.ts';
import { MemoryBuffer } from './memory_buffer.ts';

export type BufferConfig = z.infer<typeof bufferConfig>;

/** Memory: raw bytes held. A source's own window (max_unacked_bytes) usually binds first. */
export const MEMORY_BUFFER_DEFAULT_BYTES = 32 * 1024 * 1024;
export const DISK_BUFFER_DEFAULT_BYTES = 1024 * 1024 * 1024;

/** The buffer an output's config asks for; a disk buffer recovers what a previous run left in its folder. */
export function openBuffer(output: string, config: BufferConfig, ctx: { dataDir: string; metrics: SelfMetrics; log: Logger }): RecordBuffer {
  if (config.type === 'memory') {
    return new MemoryBuffer({
      output,
      maxBytes: config.max_size ?? MEMORY_BUFFER_DEFAULT_BYTES,
      maxEvents: config.max_events,
      whenFull: config.when_full,
      metrics: ctx.metrics,
      log: ctx.log,
    });
  }
  return DiskBuffer.open({
    output,
    dataDir: ctx.dataDir,
    maxSize: config.max_size ?? DISK_BUFFER_DEFAULT_BYTES,
    whenFull: config.when_full,
    fsync: config.fsync,
    fsyncIntervalMs: config.fsync_interval,
    metrics: ctx.metrics,
    log: ctx.log,
  });
}
