import { globSync, readlinkSync, realpathSync } from 'node:fs';
import { dirname, matchesGlob, resolve } from 'node:path';
import type { LayoutCheck, LayoutRefusal } from './layout_check.ts';

export interface DiscoveredFile {
  /** The path the glob matched, usually kubelet's symlink in /var/log/containers. */
  linkPath: string;
  /** The file itself, symlinks resolved (/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log). */
  realPath: string;
}

export interface DiscoveryProblem {
  path: string;
  reason: 'missing_target' | 'unreadable' | LayoutRefusal;
  message: string;
}

/**
 * Which files the include and exclude globs select now. Excludes match the link or the real path;
 * what `layout` refuses (not where kubelet puts logs) is a problem, not a file.
 */
export function discover(include: readonly string[], exclude: readonly string[], layout: LayoutCheck): {
  files: DiscoveredFile[];
  problems: DiscoveryProblem[];
} {
  const files: DiscoveredFile[] = [];
  const problems: DiscoveryProblem[] = [];
  const seen = new Set<string>();
  const excluded = (p: string) => exclude.some((g) => matchesGlob(p, g));
  for (const pattern of include) {
    for (const match of globSync(pattern)) {
      const linkPath = resolve(match);
      if (seen.has(linkPath) || excluded(linkPath)) continue;
      seen.add(linkPath);
      let realPath: string;
      try {
        realPath = realpathSync(linkPath);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        let target = '';
        try {
          target = resolve(dirname(linkPath), readlinkSync(linkPath));
        } catch {
          // not a link: the file itself vanished between glob and realpath
        }
        problems.push({
          path: linkPath,
          reason: code === 'ENOENT' ? 'missing_target' : 'unreadable',
          message: code === 'ENOENT' ? `symlink target ${target || '?'} does not exist` : (err as Error).message,
        });
        continue;
      }
      if (excluded(realPath)) continue;
      const refused = layout.problem(linkPath, realPath);
      if (refused) {
        problems.push({ path: linkPath, ...refused });
        continue;
      }
      files.push({ linkPath, realPath });
    }
  }
  return { files, problems };
}

/** The fixed folder in front of a glob's first wildcard: the place to watch for new matches. */
export function globBase(pattern: string): string {
  const parts = resolve(pattern).split('/');
  const fixed: string[] = [];
  for (const part of parts) {
    if (/[*?[\]{}]/.test(part)) break;
    fixed.push(part);
  }
  return fixed.length === parts.length ? dirname(fixed.join('/')) : fixed.join('/') || '/';
}
