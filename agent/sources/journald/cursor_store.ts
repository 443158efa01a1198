import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../atomic_file.ts';
import { describeIssue, readStateJson } from '../../state_file.ts';

/** Where a source stands in one journal folder. */
export interface DirectoryCheckpoint {
  /** `__CURSOR` of the last entry every output accepted (opaque, stored verbatim). */
  cursor?: string;
  /** `read_from: end` before any entry was accepted: when reading began (µs since the epoch). */
  since?: number;
  /**
   * The filters (units, priority) in force when it was taken: with other filters the checkpointed
   * entry may not match any more, so not finding it says nothing about the journal.
   */
  filter: string;
}

export type CursorState = Record<string, DirectoryCheckpoint>;

const VERSION = 1;

const directoryCheckpoint = z.object({
  cursor: z.string().min(1).max(4096).optional(),
  since: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  filter: z.string().max(65536).default(''),
});
const layout = z.object({ version: z.literal(VERSION), directories: z.record(z.string(), z.unknown()) });

/** `<data_dir>/checkpoints/<source>.json`: a cursor per journal folder, replaced atomically. */
export class CursorStore {
  readonly path: string;

  constructor(dataDir: string, sourceName: string) {
    this.path = join(dataDir, 'checkpoints', `${sourceName}.json`);
  }

  /**
   * The saved cursors, checked folder by folder (a bad entry is dropped and named in `dropped`).
   * `unreadable`: the file exists but says nothing usable, which is not a first start.
   */
  load(): { state: CursorState; problem?: string; unreadable?: boolean; dropped: string[] } {
    const read = readStateJson(this.path);
    if (read.status === 'missing') return { state: {}, dropped: [] };
    if (read.status === 'unreadable') return { state: {}, problem: `cannot read checkpoint ${this.path}: ${read.reason}`, unreadable: true, dropped: [] };
    const top = layout.safeParse(read.data);
    if (!top.success) {
      return { state: {}, problem: `checkpoint ${this.path} has an unknown layout (${describeIssue(top.error)})`, unreadable: true, dropped: [] };
    }
    const state: CursorState = {};
    const dropped: string[] = [];
    for (const [dir, value] of Object.entries(top.data.directories)) {
      const r = directoryCheckpoint.safeParse(value);
      if (!r.success) dropped.push(`${dir}: ${describeIssue(r.error)}`);
      else if (r.data.cursor !== undefined) state[dir] = { cursor: r.data.cursor, filter: r.data.filter };
      else if (r.data.since !== undefined) state[dir] = { since: r.data.since, filter: r.data.filter };
      else dropped.push(`${dir}: neither cursor nor since`);
    }
    return { state, dropped };
  }

  /** Throws on failure (a full disk): the caller keeps its state and tries again later. */
  save(state: CursorState, durable: boolean, now = Date.now()): void {
    writeFileAtomic(this.path, JSON.stringify({ version: VERSION, writtenAt: now, directories: state }), durable);
  }
}
