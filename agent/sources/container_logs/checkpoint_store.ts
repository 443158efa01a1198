import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Fingerprint } from './file_identity.ts';

/** Where a source stands in one file: resume reading at `offset`. */
export interface FileCheckpoint {
  dev: number;
  ino: number;
  fingerprint: Fingerprint;
  offset: number;
  /** The path the file had when last seen; after a rotation the file is looked for beside it. */
  path: string;
}

export interface CheckpointState {
  /** Wall-clock ms of the write; rotated files changed after it were written while we were away. */
  writtenAt: number;
  files: FileCheckpoint[];
}

const VERSION = 1;

/**
 * One JSON file per source under data_dir, replaced atomically (write temp, fsync, rename, fsync
 * the folder) so a crash at any instant leaves either the old or the new state, never a torn one.
 */
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
    mkdirSync(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp`;
    const body = JSON.stringify({ version: VERSION, writtenAt: now, files });
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, body);
      if (durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    if (!durable) return;
    const dir = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }
}
