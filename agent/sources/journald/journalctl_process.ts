import { spawn, type ChildProcess } from 'node:child_process';

export interface JournalctlOptions {
  directory: string;
  /** Start at this entry (`--cursor`: it is printed again, so the caller can tell whether it still exists). */
  cursor?: string;
  /** Without a cursor: entries from this time on (µs since the epoch; `read_from: end`), else all of them. */
  sinceMicros?: number;
  units: readonly string[];
  /** 0-7; 7 keeps everything and adds no filter. */
  priority: number;
}

/**
 * The command line, per the facts of log-formats.md §4.4 (observed on systemd 252):
 * - `--follow` alone implies `-n 10`: `--no-tail` says otherwise.
 * - `--follow` alone also limits the output to the journal's latest boot: entries of an earlier boot
 *   not read before a reboot would be skipped. `--merge` lifts that (and makes an empty folder fine).
 * - `--after-cursor` on a cursor whose entry is gone skips the nearest entry after it, so
 *   `--cursor` is used: it prints the cursor's entry again when it exists (the caller drops it), and
 *   otherwise starts at the nearest entry, which is how a vacuumed cursor is recognised.
 * - `--all`: fields over 4096 bytes are not elided; `-o export` keeps binary fields intact.
 */
export function journalctlArgs(opts: JournalctlOptions): string[] {
  const args = [`--directory=${opts.directory}`, '--follow', '--merge', '--all', '--output=export', '--no-pager'];
  if (opts.cursor !== undefined) args.push(`--cursor=${opts.cursor}`);
  else if (opts.sinceMicros !== undefined) args.push(`--since=@${Math.floor(opts.sinceMicros / 1e6)}.${String(opts.sinceMicros % 1e6).padStart(6, '0')}`);
  args.push('--no-tail');
  for (const unit of opts.units) args.push(`--unit=${unit}`);
  if (opts.priority < 7) args.push(`--priority=${opts.priority}`);
  return args;
}

export interface JournalctlExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the binary could not be started at all (ENOENT: not installed). */
  spawnError?: NodeJS.ErrnoException;
  /** The end of what it wrote to stderr. */
  stderr: string;
}

const STDERR_KEEP = 4096;

/**
 * One journalctl child: stdout chunks go to `onData` (pause() and resume() apply backpressure),
 * `onExit` fires once, after stdout has been read to its end (or the process could not start).
 */
export class JournalctlProcess {
  private readonly child: ChildProcess;
  private stderrTail = '';
  /** The process is gone (its stdout may still hold data). */
  private dead = false;
  /** ...and its stdout was read to the end: onExit has run. */
  private exited = false;
  private detached = false;
  private exitWaiters: (() => void)[] = [];
  /** Resolves true once the process runs, false when it could not be started. */
  readonly started: Promise<boolean>;

  constructor(binary: string, args: readonly string[], onData: (chunk: Buffer) => void, onExit: (exit: JournalctlExit) => void) {
    this.child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let spawnError: NodeJS.ErrnoException | undefined;
    let resolveStarted!: (ok: boolean) => void;
    this.started = new Promise((r) => (resolveStarted = r));
    this.child.once('spawn', () => resolveStarted(true));
    this.child.on('error', (err: NodeJS.ErrnoException) => {
      // After a successful start, errors are failed kill()s; the exit still comes through 'close'.
      if (this.child.pid === undefined) {
        spawnError = err;
        resolveStarted(false);
      }
    });
    this.child.stdout!.on('data', (chunk: Buffer) => {
      if (!this.detached) onData(chunk);
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-STDERR_KEEP);
    });
    this.child.once('exit', () => (this.dead = true));
    this.child.once('close', (code, signal) => {
      this.dead = true;
      this.exited = true;
      for (const w of this.exitWaiters) w();
      this.exitWaiters = [];
      onExit({ code, signal, spawnError, stderr: this.stderrTail.trim() });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.pid !== undefined && !this.dead;
  }

  pause(): void {
    this.child.stdout!.pause();
  }

  resume(): void {
    this.child.stdout!.resume();
  }

  /**
   * Stops the process: no more data is delivered, SIGTERM, SIGKILL after `graceMs`. Resolves
   * once it has exited (onExit has run by then).
   */
  async stop(graceMs = 2000): Promise<void> {
    this.detached = true;
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.exitWaiters.push(r));
    // Drain what is still in the pipe (ignored) so the child's 'close' is not held back by a pause.
    this.child.stdout!.resume();
    this.child.kill('SIGTERM');
    const killer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(killer);
  }
}
