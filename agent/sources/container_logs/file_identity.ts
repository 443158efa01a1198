import { readSync, type Stats } from 'node:fs';
import { crc32 } from 'node:zlib';

/**
 * A file is (device, inode), not a path: rotation renames. Inodes are reused once a file is gone,
 * so a checkpoint also keeps a checksum of the file's first bytes to tell a reused inode apart.
 */
export const FINGERPRINT_BYTES = 256;

export interface Fingerprint {
  /** How many leading bytes were summed (fewer than FINGERPRINT_BYTES while the file is small). */
  length: number;
  crc: number;
}

export function identityKey(st: Pick<Stats, 'dev' | 'ino'>): string {
  return `${st.dev}:${st.ino}`;
}

export function fingerprint(fd: number, length = FINGERPRINT_BYTES): Fingerprint {
  const head = Buffer.allocUnsafe(length);
  const n = readSync(fd, head, 0, length, 0);
  return { length: n, crc: crc32(head.subarray(0, n)) };
}

/** True when the open file still starts with the bytes the fingerprint summed. */
export function fingerprintMatches(fd: number, fp: Fingerprint): boolean {
  const now = fingerprint(fd, fp.length);
  return now.length === fp.length && now.crc === fp.crc;
}
