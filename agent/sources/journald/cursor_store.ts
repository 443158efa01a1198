import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../atomic_file.ts';

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

/** `<data_dir>/checkpoints/<source>.json`: a cursor per journal folder, replaced atomically. */
export class CursorStore {
  readonly path: string;

  constructor(dataDir: string, sourceName: string) {
    this.path = join(dataDir, 'checkpoints', `${sourceName}.json`);
  }

  /** The saved cursors; empty when there are none. A corrupt file is reported, not trusted. */
  load(): { state: CursorState; problem?: string } {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: {} };
      return { state: {}, problem: `cannot read checkpoint ${this.path}: ${(err as Error).message}` };
    }
    try {
      const data = JSON.parse(text) as { version?: number; directories?: unknown };
      const dirs = data.directories;
      if (data.version !== VERSION || typeof dirs !== 'object' || dirs === null || Array.isArray(dirs)) {
        return { state: {}, problem: `checkpoint ${this.path} has an unknown layout; starting without it` };
      }
      const state: CursorState = {};
      for (const [dir, cp] of Object.entries(dirs as Record<string, Partial<DirectoryCheckpoint>>)) {
        const filter = typeof cp?.filter === 'string' ? cp.filter : '';
        if (typeof cp?.cursor === 'string' && cp.cursor !== '') state[dir] = { cursor: cp.cursor, filter };
        else if (typeof cp?.since === 'number' && Number.isSafeInteger(cp.since)) state[dir] = { since: cp.since, filter };
      }
      return { state };
    } catch (err) {
      return { state: {}, problem: `checkpoint ${this.path} is corrupt (${(err as Error).message}); starting without it` };
    }
  }

  /** Throws on failure (a full disk): the caller keeps its state and tries again later. */
  save(state: CursorState, durable: boolean, now = Date.now()): void {
    writeFileAtomic(this.path, JSON.stringify({ version: VERSION, writtenAt: now, directories: state }), durable);
  }
}
