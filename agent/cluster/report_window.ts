/**
 * Which transitions (a rollout that ended, a claim bound, a pod Ready, a node back) this agent
 * reports, and when its reports become visible, so that across restarts and takeovers each one is
 * reported once (span-and-metric-model.md §0.2).
 *
 * - The window starts where the previous reporter stopped: `from` is the mark it handed over (the
 *   latest end time it reported, in the objects' own clock, and the keys of what it reported last,
 *   newest last). A transition that ended before the mark is not reported again, nor one whose key
 *   was reported already: object times are whole seconds (several transitions end in the mark's
 *   second), and an object may end the same piece of work twice in the API's eyes (a rollout past its
 *   deadline that a scale sets progressing again, then superseded) while it is reported once.
 * - Work still open (a node NotReady) is handed over too, with its start: its end may come while
 *   nobody watches, and the objects no longer show that it was ever open (a node Ready again).
 * - Reports are held until `prepare()`/`release()`: the caller first persists the mark that includes
 *   them (the Lease annotation, the checkpoint), then releases them. A process killed in between has
 *   reported nothing that the mark it left does not cover, so a successor never reports twice.
 */

export interface ReportMark {
  /** Epoch ms of the latest end reported (0: nothing yet). */
  throughMs: number;
  /** Keys of the reports made last, oldest first (bounded: MAX_KEYS_AT_MARK). */
  keys: string[];
  /** Work open at the mark: [key, start epoch ms] (bounded: MAX_KEYS_AT_MARK). */
  open?: [string, number][];
}

/**
 * Keys handed over. A report whose key fell out (more than this many reports since) and that ends
 * at or after the mark could be made twice: the README states that bound.
 */
export const MAX_KEYS_AT_MARK = 300;

interface Held {
  fn: () => void;
}

export class ReportWindow {
  private fromMs = 0;
  private fromKeys = new Set<string>();
  private markMs = 0;
  private markKeys = new Set<string>();
  private held: Held[] = [];
  private readonly hold: boolean;
  private fromOpen = new Map<string, number>();
  private readonly openNow = new Map<string, number>();

  /** `hold: false` runs reports at once (tests, and callers that persist nothing). */
  constructor(from: ReportMark, o: { hold: boolean } = { hold: true }) {
    this.hold = o.hold;
    this.reset(from);
  }

  /**
   * A mark that starts the window at `ms` (a first start: nothing that ended before it is reported).
   * Object times are whole seconds: the second it falls in belongs to the window.
   */
  static startingAt(ms: number): ReportMark {
    return { throughMs: Math.floor(ms / 1000) * 1000, keys: [] };
  }

  /** The window start. */
  get from(): number {
    return this.fromMs;
  }

  /** Starts over from another reporter's mark (this agent began to lead); reports not yet released are dropped. */
  reset(from: ReportMark): void {
    this.fromMs = from.throughMs;
    this.fromKeys = new Set(from.keys);
    this.markMs = from.throughMs;
    this.markKeys = new Set(from.keys);
    this.fromOpen = new Map(from.open ?? []);
    this.openNow.clear();
    for (const [k, at] of from.open ?? []) this.openNow.set(k, at);
    this.held = [];
  }

  /** Work of `key` is open since `startMs` (handed over until `closed`). */
  opened(key: string, startMs: number): void {
    this.openNow.delete(key);
    this.openNow.set(key, startMs);
    if (this.openNow.size > MAX_KEYS_AT_MARK) this.openNow.delete(this.openNow.keys().next().value!);
  }

  closed(key: string): void {
    this.openNow.delete(key);
  }

  /** When the previous reporter saw work of `key` open, if it did. */
  openedBefore(key: string): number | undefined {
    return this.fromOpen.get(key);
  }

  /** Whether a transition of `key` that ended at `endMs` is this window's to report (not before the mark, not reported yet). */
  observes(endMs: number, key?: string): boolean {
    if (endMs < this.fromMs) return false;
    return key === undefined || (!this.fromKeys.has(key) && !this.markKeys.has(key));
  }

  /** Reports a transition once: `fn` (metrics, spans) runs now or at the next release, or never when outside the window. */
  report(key: string, endMs: number, fn: () => void): void {
    if (!this.observes(endMs, key)) return;
    if (endMs > this.markMs) this.markMs = endMs;
    this.markKeys.add(key);
    if (this.markKeys.size > MAX_KEYS_AT_MARK) this.markKeys.delete(this.markKeys.values().next().value!);
    if (this.hold) this.held.push({ fn });
    else fn();
  }

  /** The mark covering every report so far (held ones included). */
  get mark(): ReportMark {
    return { throughMs: this.markMs, keys: [...this.markKeys], ...(this.openNow.size ? { open: [...this.openNow] } : {}) };
  }

  /**
   * The mark to persist now; once it is persisted `release()` runs the reports it covers, and if it
   * could not be, `abandon()` keeps them for the next try.
   */
  prepare(): { mark: ReportMark; release: () => void; abandon: () => void } {
    const batch = this.held;
    this.held = [];
    return {
      mark: this.mark,
      release: () => {
        for (const h of batch) h.fn();
      },
      abandon: () => {
        this.held = [...batch, ...this.held];
      },
    };
  }

  /** Reports waiting for a release. */
  get pending(): number {
    return this.held.length;
  }
}
