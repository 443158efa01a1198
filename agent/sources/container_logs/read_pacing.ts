import type { ReadPace } from '../../pipeline.ts';

/**
 * Files a stage downstream asked to read later (a throttle with `when_exceeded: pause` whose key
 * is over its budget): the request travels back with the batch the file's records came in, and
 * the read loop skips the file until its time comes; then `resume` puts it back in line. Other
 * files keep their pace.
 */
export class ReadPacing<F extends object> {
  private readonly until = new Map<F, number>();
  private readonly paces = new WeakMap<F, ReadPace>();
  private readonly resume: (file: F) => void;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;

  constructor(resume: (file: F) => void) {
    this.resume = resume;
  }

  /** What travels with a batch of `file`'s records. */
  paceFor(file: F): ReadPace {
    let pace = this.paces.get(file);
    if (!pace) {
      pace = { holdFor: (ms) => this.hold(file, ms) };
      this.paces.set(file, pace);
    }
    return pace;
  }

  /** True while `file` must wait; it is handed to `resume` when the wait is over. */
  waiting(file: F, now = Date.now()): boolean {
    const until = this.until.get(file);
    return until !== undefined && until > now;
  }

  clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    this.until.clear();
  }

  private hold(file: F, ms: number): void {
    if (!(ms > 0)) return;
    const at = Date.now() + ms;
    if ((this.until.get(file) ?? 0) >= at) return;
    this.until.set(file, at);
    if (at < this.timerAt) this.arm(at);
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.wakeDue(), Math.max(1, at - Date.now()));
    this.timer.unref();
  }

  private wakeDue(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const [file, at] of this.until) {
      if (at <= now) {
        this.until.delete(file);
        this.resume(file);
      } else next = Math.min(next, at);
    }
    if (next < Infinity) this.arm(next);
  }
}
