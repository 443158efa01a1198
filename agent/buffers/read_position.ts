import { readFileSync } from 'node:fs';

import { writeFileAtomic } from '../atomic_file.ts';

/**
 * Where the disk buffer's first unacknowledged frame is: segment sequence number and byte offset.
 * Everything before it was acknowledged by the output. Kept in `read_position.json` beside the
 * segments, replaced atomically.
 */
export interface ReadPosition {
  readonly seq: number;
  readonly offset: number;
}

export const READ_POSITION_FILE = 'read_position.json';
const VERSION = 1;

export type LoadedPosition =
  | { readonly status: 'ok'; readonly position: ReadPosition }
  | { readonly status: 'missing' }
  | { readonly status: 'corrupt'; readonly reason: string };

export function loadReadPosition(path: string): LoadedPosition {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    return { status: 'corrupt', reason: (err as Error).message };
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { status: 'corrupt', reason: 'not JSON' };
  }
  const o = v as { version?: unknown; segment?: unknown; offset?: unknown } | null;
  if (!o || typeof o !== 'object' || o.version !== VERSION) return { status: 'corrupt', reason: 'unknown version' };
  if (!isCount(o.segment) || !isCount(o.offset)) return { status: 'corrupt', reason: 'bad segment or offset' };
  return { status: 'ok', position: { seq: o.segment, offset: o.offset } };
}

/** Throws when it cannot be written (a full volume, say); the caller keeps the position and retries. */
export function saveReadPosition(path: string, position: ReadPosition, durable: boolean): void {
  writeFileAtomic(path, JSON.stringify({ version: VERSION, segment: position.seq, offset: position.offset }), durable);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
