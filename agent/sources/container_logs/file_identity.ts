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

/**
 * How many bytes just before the read offset are kept and compared on every read: what tells a
 * file that grew from one rewritten in place (copytruncate refilled past the old offset before the
 * next look), where size alone cannot.
 */
export const TAIL_BYTES = 128;

/** Checksum of the `tail.length` bytes that end at `offset`. */
export function tailAt(fd: number, offset: number, length = Math.min(TAIL_BYTES, offset)): Fingerprint {
  const bytes = Buffer.allocUnsafe(length);
  const n = length === 0 ? 0 : readSync(fd, bytes, 0, length, offset - length);
  return { length: n, crc: crc32(bytes.subarray(0, n)) };
}

/** True when the bytes ending at `offset` are still those the checksum summed. */
export function tailMatches(fd: number, offset: number, tail: Fingerprint): boolean {
  if (tail.length > offset) return false;
  const now = tailAt(fd, offset, tail.length);
  return now.length === tail.length && now.crc === tail.crc;
}
