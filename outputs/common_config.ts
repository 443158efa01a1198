import { z } from 'zod';
import { duration, inputs, interval, size } from '../agent/config/types.ts';

/**
 * Keys every output takes besides its own: which sources feed it, its buffer, how records are
 * batched into requests and how failed requests are retried. Each plugin schema spreads
 * `outputCommon` so `validate` names the same key paths for every output type.
 */

export const bufferConfig = z
  .strictObject({
    type: z.enum(['memory', 'disk']).default('memory'),
    /** memory: raw bytes held; disk: bytes of segment files. Default 32MiB (memory) / 1GiB (disk). */
    max_size: size('256MiB').optional(),
    /** memory only: records held. */
    max_events: z.number().int().positive().default(100_000),
    when_full: z.enum(['block', 'drop_newest']).default('block'),
    /** disk only: when a record counts as accepted (see agent/buffers/buffer.ts FsyncPolicy). */
    fsync: z.enum(['always', 'interval', 'never']).default('interval'),
    fsync_interval: interval('500ms').default(500),
  })
  .prefault({});

/**
 * `timeout` defaults differ by kind of output: a network request has a cost per request, so a
 * batch waits up to 1 s to fill; a local file or stdout has none, so it writes what is there
 * (batches still grow by themselves while a write is in progress).
 */
function batchConfigWith(timeoutMs: number) {
  return z
    .strictObject({
      max_bytes: size('1MiB').default(1024 * 1024),
      max_events: z.number().int().positive().default(5000),
      /** How long a partly filled batch waits for more records. */
      timeout: duration('1s').default(timeoutMs),
    })
    .prefault({});
}

export const batchConfig = batchConfigWith(1000);

export const retryConfig = z
  .strictObject({
    initial: interval('250ms').default(250),
    max: interval('30s').default(30_000),
  })
  .prefault({});

/** Where records refused for good go: `<data_dir>/dead_letter/<output>.ndjson`, rotated once past max_size. */
export const deadLetterConfig = z
  .strictObject({
    enabled: z.boolean().default(true),
    max_size: size('100MiB').default(100 * 1024 * 1024),
  })
  .prefault({});

export const outputCommon = {
  inputs,
  buffer: bufferConfig,
  batch: batchConfig,
  retry: retryConfig,
  dead_letter: deadLetterConfig,
  /** Requests in flight at once for this output. */
  concurrency: z.number().int().min(1).max(64).default(1),
};

/** The same keys for outputs that write locally (stdout, file): batches do not wait to fill. */
export const localOutputCommon = { ...outputCommon, batch: batchConfigWith(0) };
