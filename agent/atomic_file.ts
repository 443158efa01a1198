import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Replaces `path` with `body` so that a crash at any instant leaves the old or the new content,
 * never a torn one: write a temp file, rename it over. `durable` adds the fsyncs (file, then folder)
 * that also survive a power loss; without them the rename still survives the process being killed.
 * Throws on failure (a full disk, say): callers keep their state and try again later.
 */
export function writeFileAtomic(path: string, body: string, durable: boolean): void {
  const tmp = `${path}.tmp`;
  let fd: number;
  try {
    fd = openSync(tmp, 'w', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirSync(dirname(path), { recursive: true });
    fd = openSync(tmp, 'w', 0o600);
  }
  try {
    writeSync(fd, body);
    if (durable) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  if (!durable) return;
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
