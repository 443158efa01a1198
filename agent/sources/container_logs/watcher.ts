import { watch, type FSWatcher } from 'node:fs';

/**
 * Kernel file events (inotify via fs.watch) on folders, as hints only: the tailer's poll catches
 * whatever events miss (lost events, network file systems, inotify limits), so a folder that cannot
 * be watched is reported once and left to polling.
 */
export class FolderWatcher {
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly onEvent: (event: string, dir: string, file: string | null) => void;
  private readonly onProblem: (dir: string, err: Error) => void;

  constructor(onEvent: (event: string, dir: string, file: string | null) => void, onProblem: (dir: string, err: Error) => void) {
    this.onEvent = onEvent;
    this.onProblem = onProblem;
  }

  watch(dir: string): void {
    if (this.watchers.has(dir)) return;
    try {
      const w = watch(dir, { persistent: false }, (event, file) => this.onEvent(event, dir, file));
      w.on('error', (err) => {
        this.unwatch(dir);
        this.onProblem(dir, err);
      });
      this.watchers.set(dir, w);
    } catch (err) {
      this.onProblem(dir, err as Error);
    }
  }

  unwatch(dir: string): void {
    const w = this.watchers.get(dir);
    if (!w) return;
    this.watchers.delete(dir);
    w.close();
  }

  /** Stop watching folders not in `keep`. */
  retain(keep: ReadonlySet<string>): void {
    for (const dir of [...this.watchers.keys()]) if (!keep.has(dir)) this.unwatch(dir);
  }

  close(): void {
    for (const dir of [...this.watchers.keys()]) this.unwatch(dir);
  }
}
