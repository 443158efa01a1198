import { z } from 'zod';
import { interval, size } from '../../config/types.ts';
import { enrichmentKeys } from '../../enrichment/config.ts';

/** journalctl's priority names, in level order: `-p info` keeps levels 0 through 6. */
export const PRIORITY_NAMES = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'] as const;

const priority = z
  .union([z.enum(PRIORITY_NAMES), z.number().int().min(0).max(7)])
  .transform((p) => (typeof p === 'number' ? p : PRIORITY_NAMES.indexOf(p)));

export const journaldConfig = z.strictObject({
  type: z.literal('journald'),
  /** One journal folder (design.md's form); `directories` takes several. */
  directory: z.string().min(1).optional(),
  /**
   * Journal folders, one journalctl each: the host's persistent and volatile journals. A folder that
   * does not exist is skipped (and looked for again every few seconds).
   */
  directories: z.array(z.string().min(1)).min(1).optional(),
  /** `-u UNIT` each (journalctl ORs them); empty: every unit, and entries that have none. */
  units: z.array(z.string().min(1)).default([]),
  /** The least important level kept (`-p`): a name (`info`) or 0-7. */
  priority: priority.default(7),
  /** Journal fields left out of the record's attributes (exact names, e.g. `_CMDLINE`). */
  exclude_fields: z.array(z.string().min(1)).default([]),
  /** Where to start in a folder that has no checkpoint yet: its oldest entry, or new entries only. */
  read_from: z.enum(['beginning', 'end']).default('beginning'),
  /** The journalctl binary: a path, or a name looked up in PATH. */
  journalctl: z.string().min(1).default('journalctl'),
  /** A field longer than this is cut (the record is marked `kta.log.truncated`). */
  max_field_bytes: size('1MiB').default(1024 * 1024),
  /**
   * Entries read but not yet acknowledged by every output; reading pauses above it. Absent: chosen
   * from the outputs the source feeds (agent/flow_window.ts), at least 1 MiB.
   */
  max_unacked_bytes: size('4MiB').optional(),
  /** fsync'd checkpoint write; an unsynced one also follows every acknowledged batch. */
  checkpoint_interval: interval('1s').default(1000),
  /** Body parsing of MESSAGE (agent/enrichment/): `none`, `json`, `logfmt`, `{regex: …}`. */
  parser: enrichmentKeys.parser,
  timestamp_from_body: enrichmentKeys.timestamp_from_body,
})
  .superRefine((c, ctx) => {
    if (c.directory !== undefined && c.directories !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['directories'], message: 'give either directory or directories, not both' });
    }
  })
;
export type JournaldConfig = z.infer<typeof journaldConfig>;

/** The folders to read: `directory`, else `directories`, else the host's persistent and volatile journals. */
export function journalDirectories(config: Pick<JournaldConfig, 'directory' | 'directories'>): string[] {
  if (config.directory !== undefined) return [config.directory];
  return config.directories ?? ['/var/log/journal', '/run/log/journal'];
}
