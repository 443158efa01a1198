import { lstatSync, readdirSync, type Stats } from 'node:fs';
import { basename, join } from 'node:path';

/** A live file's name without a rotation suffix: `0.log.20261121-100000` -> `0.log`. */
export const liveBaseOf = (path: string): string => basename(path).replace(/(\.log)\..*$/, '$1');

/** kubelet's rotated copies: `0.log.20261121-100000` (compressed `.gz` twins and `.tmp` leftovers are not read). */
function isRotatedCopy(name: string): boolean {
  return liveBaseOf(name) !== name && !name.endsWith('.gz') && !name.endsWith('.tmp');
}

/**
 * Rotation order, oldest first: kubelet's `.<YYYYMMDD-hhmmss>` suffixes sort by name; docker
 * json-file's `.1` is its newest copy, `.2` the one before.
 */
function oldestFirst(a: string, b: string): number {
  const na = /\.(\d+)$/.exec(a)?.[1];
  const nb = /\.(\d+)$/.exec(b)?.[1];
  if (na !== undefined && nb !== undefined) return Number(nb) - Number(na);
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A container instance's live file in kubelet's pods layout: `<restart count>.log`. */
const INSTANCE_FILE = /^(\d+)\.log$/;

/** The restart count a live base (`3.log`) names; undefined for other layouts (docker's `<id>-json.log`). */
export function restartOf(liveBase: string): number | undefined {
  const m = INSTANCE_FILE.exec(liveBase);
  return m ? Number(m[1]) : undefined;
}

export interface FolderFile {
  path: string;
  st: Stats;
}

/** One container instance's files in a container folder, in the order kubelet wrote them. */
export interface InstanceFiles {
  /** `<n>.log` */
  base: string;
  restart: number;
  /** Rotated copies, oldest first, then the live file when it exists: only files, never links. */
  files: FolderFile[];
}

interface FolderIndex {
  /** Rotated copies by live base, in name order. */
  rotated: Map<string, string[]>;
  /** Names that are a live base themselves (`0.log`, `<id>-json.log`). */
  live: Set<string>;
}

/**
 * The files of container folders, one folder listing per folder for as long as one instance lives
 * (a scan, a recovery): with 15,000 files in one folder a listing per file made a start-up
 * quadratic (306 s), one per folder keeps it linear.
 */
export class FolderListings {
  private readonly byDir = new Map<string, FolderIndex | null>();
  /** readdir calls made (tests check there is one per folder). */
  listings = 0;

  /** The rotated copies of `liveBase` in `dir`, oldest first; none when the folder is gone. */
  rotatedSiblings(dir: string, liveBase: string): FolderFile[] {
    return files(dir, this.index(dir)?.rotated.get(liveBase) ?? []);
  }

  /**
   * Every container instance (`<n>.log` and its rotated copies) in a pods-layout container folder
   * from restart count `from` on, in kubelet's order: by restart count, each instance's rotated
   * copies (oldest first) before its live file.
   */
  instancesFrom(dir: string, from: number): InstanceFiles[] {
    const index = this.index(dir);
    if (!index) return [];
    const restarts = new Set<number>();
    for (const base of [...index.live, ...index.rotated.keys()]) {
      const n = restartOf(base);
      // `007.log` is not a name kubelet writes.
      if (n !== undefined && n >= from && base === `${n}.log`) restarts.add(n);
    }
    const out: InstanceFiles[] = [];
    for (const restart of [...restarts].sort((a, b) => a - b)) {
      const base = `${restart}.log`;
      const files = this.instance(dir, base);
      if (files.length > 0) out.push({ base, restart, files });
    }
    return out;
  }

  /** The rotated copies of `liveBase` (oldest first), then the live file when it exists. */
  instance(dir: string, liveBase: string): FolderFile[] {
    const index = this.index(dir);
    if (!index) return [];
    return files(dir, [...(index.rotated.get(liveBase) ?? []), ...(index.live.has(liveBase) ? [liveBase] : [])]);
  }

  private index(dir: string): FolderIndex | null {
    let index = this.byDir.get(dir);
    if (index === undefined) {
      index = this.read(dir);
      this.byDir.set(dir, index);
    }
    return index;
  }

  private read(dir: string): FolderIndex | null {
    let names: string[];
    try {
      this.listings++;
      names = readdirSync(dir);
    } catch {
      return null;
    }
    const rotated = new Map<string, string[]>();
    const live = new Set<string>();
    for (const name of names) {
      if (name.endsWith('.log') && liveBaseOf(name) === name) live.add(name);
      if (!isRotatedCopy(name)) continue;
      const base = liveBaseOf(name);
      const list = rotated.get(base);
      if (list) list.push(name);
      else rotated.set(base, [name]);
    }
    for (const list of rotated.values()) list.sort(oldestFirst);
    return { rotated, live };
  }
}

/** The names that are still files (kubelet writes files: a symlink here, to /etc/shadow say, is not one). */
function files(dir: string, names: readonly string[]): FolderFile[] {
  const found: FolderFile[] = [];
  for (const name of names) {
    const path = join(dir, name);
    try {
      const st = lstatSync(path);
      if (st.isFile()) found.push({ path, st });
    } catch {
      // removed since the listing
    }
  }
  return found;
}
