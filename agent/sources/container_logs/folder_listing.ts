import { lstatSync, readdirSync, type Stats } from 'node:fs';
import { basename, join } from 'node:path';

/** A live file's name without a rotation suffix: `0.log.20261121-100000` -> `0.log`. */
export const liveBaseOf = (path: string): string => basename(path).replace(/(\.log)\..*$/, '$1');

/** kubelet's rotated copies: `0.log.20261121-100000` (compressed `.gz` twins and `.tmp` leftovers are not read). */
function isRotatedCopy(name: string): boolean {
  return liveBaseOf(name) !== name && !name.endsWith('.gz') && !name.endsWith('.tmp');
}

/**
 * The rotated copies beside live files, one folder listing per folder for as long as one instance
 * lives (a scan, a recovery): with 15,000 files in one folder a listing per file made a start-up
 * quadratic (306 s), one per folder keeps it linear.
 */
export class FolderListings {
  private readonly byDir = new Map<string, Map<string, string[]> | null>();
  /** readdir calls made (tests check there is one per folder). */
  listings = 0;

  /** The rotated copies of `liveBase` in `dir`, in rotation (name) order; none when the folder is gone. */
  rotatedSiblings(dir: string, liveBase: string): { path: string; st: Stats }[] {
    let index = this.byDir.get(dir);
    if (index === undefined) {
      index = this.read(dir);
      this.byDir.set(dir, index);
    }
    const found: { path: string; st: Stats }[] = [];
    for (const name of index?.get(liveBase) ?? []) {
      const path = join(dir, name);
      try {
        // kubelet writes rotated copies as files: a symlink here (to /etc/shadow, say) is not one.
        const st = lstatSync(path);
        if (st.isFile()) found.push({ path, st });
      } catch {
        // removed since the listing
      }
    }
    return found;
  }

  private read(dir: string): Map<string, string[]> | null {
    let names: string[];
    try {
      this.listings++;
      names = readdirSync(dir);
    } catch {
      return null;
    }
    const index = new Map<string, string[]>();
    for (const name of names) {
      if (!isRotatedCopy(name)) continue;
      const base = liveBaseOf(name);
      const list = index.get(base);
      if (list) list.push(name);
      else index.set(base, [name]);
    }
    for (const list of index.values()) list.sort();
    return index;
  }
}
