/**
 * Where waiting readers and drain callers park: `wait` resolves on the next `wake` (or when the
 * signal aborts); they then look again at what changed. Never rejects.
 */
export class Wakeup {
  private waiters = new Set<() => void>();

  wait(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** Like `wait`, resolving false when `timeoutMs` passed first. */
  waitFor(timeoutMs: number): Promise<boolean> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    return this.wait(ac.signal).then(() => {
      clearTimeout(timer);
      return !ac.signal.aborted;
    });
  }

  get waiting(): boolean {
    return this.waiters.size > 0;
  }

  wake(): void {
    if (this.waiters.size === 0) return;
    for (const w of [...this.waiters]) w();
  }
}

/** Resolves true once `done()` holds, false after `timeoutMs`; `wakeup` is woken whenever it may have changed. */
export async function waitUntil(wakeup: Wakeup, done: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (!done()) {
    const left = until - Date.now();
    if (left <= 0) return false;
    await wakeup.waitFor(left);
  }
  return true;
}
