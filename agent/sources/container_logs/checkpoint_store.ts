import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../atomic_file.ts';
import { describeIssue, readStateJson, validEntries } from '../../state_file.ts';
import { FINGERPRINT_BYTES, TAIL_BYTES, type Fingerprint } from './file_identity.ts';

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

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const sum = z.strictObject({ length: count, crc: z.number().int().min(0).max(0xffffffff) });

/** One file's entry; anything else (a negative offset, a null fingerprint) is dropped on load. */
const fileCheckpoint = z
  .object({
    dev: count,
    ino: count,
    fingerprint: sum.refine((f) => f.length <= FINGERPRINT_BYTES, `length over ${FINGERPRINT_BYTES}`),
    offset: count,
    delivered: count.optional(),
    pending: z.strictObject({ stdout: count.optional(), stderr: count.optional() }).optional(),
    path: z.string().min(1).startsWith('/'),
    tail: sum.refine((t) => t.length <= TAIL_BYTES, `length over ${TAIL_BYTES}`).optional(),
  })
  .refine((c) => c.delivered === undefined || c.delivered >= c.offset, 'delivered before offset')
  .refine((c) => c.tail === undefined || c.tail.length <= c.offset, 'tail longer than the offset');

const layout = z.object({ version: z.literal(VERSION), writtenAt: z.number().finite(), files: z.array(z.unknown()) });

export type LoadedCheckpoint =
  | { status: 'missing' }
  /** It exists and says nothing usable: not a first start (the caller reads what the files hold). */
  | { status: 'unreadable'; problem: string; mtimeMs: number | undefined }
  /** `dropped`: why each rejected entry was dropped (their files are read as if unknown). */
  | { status: 'ok'; state: CheckpointState; dropped: string[] };

/** One JSON file per source under data_dir, replaced atomically (see writeFileAtomic). */
export class CheckpointStore {
  readonly path: string;

  constructor(dataDir: string, sourceName: string) {
    this.path = join(dataDir, 'checkpoints', `${sourceName}.json`);
  }

  /** The saved state, checked entry by entry: never trusted, never a throw. */
  load(): LoadedCheckpoint {
    const read = readStateJson(this.path);
    if (read.status === 'missing') return read;
    if (read.status === 'unreadable') return { status: 'unreadable', problem: `cannot read checkpoint ${this.path}: ${read.reason}`, mtimeMs: read.mtimeMs };
    const top = layout.safeParse(read.data);
    if (!top.success) return { status: 'unreadable', problem: `checkpoint ${this.path} has an unknown layout (${describeIssue(top.error)})`, mtimeMs: read.mtimeMs };
    const { kept, dropped } = validEntries(top.data.files, fileCheckpoint);
    // The same file twice: the first entry wins (a later one cannot be more right).
    const seen = new Set<string>();
    const files: FileCheckpoint[] = [];
    for (const cp of kept) {
      const key = `${cp.dev}:${cp.ino}`;
      if (seen.has(key)) dropped.push(`file ${cp.dev}:${cp.ino} listed twice`);
      else {
        seen.add(key);
        files.push(cp);
      }
    }
    return { status: 'ok', state: { writtenAt: top.data.writtenAt, files }, dropped };
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
