import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../atomic_file.ts';
import type { Fingerprint } from './file_identity.ts';

/** Where a source stands in one file: resume reading at `offset`. */
export interface FileCheckpoint {
  dev: number;
  ino: number;
  fingerprint: Fingerprint;
  offset: number;
  /** Set when P/F joins were in progress: lines before it were sent, except those of the joins. */
  delivered?: number;
  pending?: { stdout?: number; stderr?: number };
  /** The path the file had when last seen; after a rotation the file is looked for beside it. */
  path: string;
  /** Checksum of the bytes just before `offset` as they were read (absent in older checkpoints). */
  tail?: Fingerprint;
}

export interface CheckpointState {
  /** Wall-clock ms of the write; rotated files changed after it were written while we were away. */
  writtenAt: number;
  files: FileCheckpoint[];
}

const VERSION = 1;

/** One JSON file per source under data_dir, replaced atomically (see writeFileAtomic). */
export class CheckpointStore {
  readonly path: string;

  constructor(dataDir: string, sourceName: string) {
    this.path = join(dataDir, 'checkpoints', `${sourceName}.json`);
  }

  /** The saved state; undefined when there is none. A corrupt file is reported, not trusted. */
  load(): { state?: CheckpointState; problem?: string } {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      return { problem: `cannot read checkpoint ${this.path}: ${(err as Error).message}` };
    }
    try {
      const data = JSON.parse(text) as { version?: number; writtenAt?: number; files?: FileCheckpoint[] };
      if (data.version !== VERSION || !Array.isArray(data.files) || typeof data.writtenAt !== 'number') {
        return { problem: `checkpoint ${this.path} has an unknown layout; starting without it` };
      }
      return { state: { writtenAt: data.writtenAt, files: data.files } };
    } catch (err) {
      return { problem: `checkpoint ${this.path} is corrupt (${(err as Error).message}); starting without it` };
    }
  }

  /**
   * Throws on failure (a full disk, say); the caller keeps the state and tries again later.
   * `durable` adds the fsyncs that survive a power loss; without them the rename still survives
   * the agent being killed, which is what bounds duplicates after a crash.
   */
  save(files: FileCheckpoint[], durable: boolean, now = Date.now()): void {
    writeFileAtomic(this.path, JSON.stringify({ version: VERSION, writtenAt: now, files }), durable);
  }
}
