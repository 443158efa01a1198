import type { OutputConfig } from '../outputs/registry.ts';

/** The window when every output the source feeds writes locally (stdout, file): records die young, which V8 collects cheaply. */
export const LOCAL_WINDOW_BYTES = 256 * 1024;
/** A disk buffer holds no records in memory, and accepts only after an fsync (every `fsync_interval`): the window must cover that wait. */
export const DISK_WINDOW_BYTES = 8 * 1024 * 1024;

/**
 * How much a source may have read but not yet acknowledged (`max_unacked_bytes`) when the config
 * leaves it out. A memory buffer acknowledges on delivery, so the window must hold a couple of full
 * batches of each output the source feeds, or batches never fill and each waits out
 * `batch.timeout`; but every byte of it is records alive in memory, so it is no larger than that.
 */
export function autoUnackedWindow(outputs: readonly OutputConfig[], floor = LOCAL_WINDOW_BYTES): number {
  let window = floor;
  for (const o of outputs) {
    if (o.buffer.type === 'disk') window = Math.max(window, DISK_WINDOW_BYTES);
    else if (o.batch.timeout > 0) window = Math.max(window, 2 * o.batch.max_bytes);
  }
  return window;
}
