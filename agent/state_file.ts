import { openSync, closeSync, fstatSync, readSync } from 'node:fs';
import type { z } from 'zod';

/**
 * The agent's own state (checkpoints) is untrusted input on the next start: a crash, a full disk,
 * a hand edit or another version may have left anything there. Files are read with a size cap and
 * parsed against a schema, entry by entry: a bad entry is dropped (the caller counts and logs it),
 * never a crash, never a reason to skip data.
 */

/** Larger than any checkpoint the agent writes by far (5,000 files take about 1 MiB). */
export const MAX_STATE_FILE_BYTES = 256 * 1024 * 1024;

export type StateRead =
  | { readonly status: 'missing' }
  /** The file exists but says nothing usable: the caller must not take this for a first start. */
  | { readonly status: 'unreadable'; readonly reason: string; readonly mtimeMs: number | undefined }
  | { readonly status: 'ok'; readonly data: unknown; readonly mtimeMs: number };

/** Reads and parses one JSON state file. */
export function readStateJson(path: string): StateRead {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    return { status: 'unreadable', reason: (err as Error).message, mtimeMs: undefined };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { status: 'unreadable', reason: 'not a regular file', mtimeMs: st.mtimeMs };
    if (st.size > MAX_STATE_FILE_BYTES) return { status: 'unreadable', reason: `${st.size} bytes, over the ${MAX_STATE_FILE_BYTES}-byte cap`, mtimeMs: st.mtimeMs };
    const buf = Buffer.allocUnsafe(st.size);
    let got = 0;
    while (got < st.size) {
      const n = readSync(fd, buf, got, st.size - got, got);
      if (n === 0) break;
      got += n;
    }
    try {
      return { status: 'ok', data: JSON.parse(buf.toString('utf8', 0, got)) as unknown, mtimeMs: st.mtimeMs };
    } catch (err) {
      return { status: 'unreadable', reason: `not JSON (${(err as Error).message})`, mtimeMs: st.mtimeMs };
    }
  } catch (err) {
    return { status: 'unreadable', reason: (err as Error).message, mtimeMs: undefined };
  } finally {
    closeSync(fd);
  }
}

/** The entries of `list` that `schema` accepts, and why each other one was dropped. */
export function validEntries<T>(list: readonly unknown[], schema: z.ZodType<T>): { kept: T[]; dropped: string[] } {
  const kept: T[] = [];
  const dropped: string[] = [];
  for (let i = 0; i < list.length; i++) {
    const r = schema.safeParse(list[i]);
    if (r.success) kept.push(r.data);
    else dropped.push(`entry ${i}: ${describeIssue(r.error)}`);
  }
  return { kept, dropped };
}

/** The first problem of a failed parse, with its key path: enough for one log line. */
export function describeIssue(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return 'invalid';
  const path = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  return `${path}${issue.message}`;
}

/** A count of bytes or an offset: a safe non-negative integer. */
export const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
