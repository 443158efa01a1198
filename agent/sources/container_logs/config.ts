import { z } from 'zod';
import { duration, interval, size } from '../../config/types.ts';
import { multilineConfig } from './multiline_config.ts';
import { enrichmentKeys } from '../../enrichment/config.ts';

export const containerLogsConfig = z.strictObject({
  type: z.literal('container_logs'),
  include: z.array(z.string().min(1)).min(1).default(['/var/log/containers/*.log']),
  exclude: z.array(z.string().min(1)).default([]),
  /**
   * Folders the files (symlinks resolved) must lie under, on top of kubelet's layout, which is
   * always required (layout_check.ts). Absent: any folder with kubelet's layout.
   */
  allowed_roots: z.array(z.string().startsWith('/', 'must be an absolute path')).min(1).optional(),
  /** Where to start in files seen the first time while the agent runs from a checkpoint-less state. */
  read_from: z.enum(['beginning', 'end']).default('beginning'),
  format: z.enum(['auto', 'cri', 'docker']).default('auto'),
  /** Physical lines and joined P/F records longer than this are cut and marked truncated. */
  max_line_bytes: size('1MiB')
    .pipe(z.number().min(1, { error: 'expected a size above 0, like 1MiB' }))
    .default(1024 * 1024),
  /** How often include globs are re-scanned (fs events make most pick-ups faster). */
  glob_interval: interval('1s').default(1000),
  /** Fallback poll of open files for growth, for file systems whose events are lost. */
  poll_interval: interval('1s').default(1000),
  /** Kernel file events (inotify) as read hints; false: polling alone (network file systems, exhausted inotify limits). */
  inotify: z.boolean().default(true),
  /** A pending P chunk with no F for this long is emitted as incomplete. */
  partial_timeout: duration('5s').default(5000),
  /** A rotated or deleted file idle this long after its last read is considered finished. */
  rotate_wait: duration('5s').default(5000),
  checkpoint_interval: interval('1s').default(1000),
  /** Bytes read from one file before the tailer moves to the next (fairness between files). */
  read_chunk: size('64KiB')
    .pipe(z.number().min(1024, { error: 'expected at least 1KiB' }))
    .default(64 * 1024),
  /** Cap on open descriptors; idle live files are closed and reopened by path when over it. */
  max_open_files: z.number().int().min(8).default(1024),
  /**
   * Records read but not yet acknowledged by every output; reading pauses above it. Absent: chosen
   * from the outputs the source feeds (agent/flow_window.ts).
   */
  max_unacked_bytes: size('4MiB').optional(),
  /** Stack traces and other records spanning lines, grouped per file and stream (multiline_config.ts). */
  multiline: multilineConfig,

  // ---- Pod metadata from the Kubernetes API, pod annotations, body parsing (agent/enrichment/) ----
  ...enrichmentKeys,
});
export type ContainerLogsConfig = z.infer<typeof containerLogsConfig>;
