import type { NormalizedEvent } from './normalize.ts';

/**
 * Counting Event occurrences without double counting (kubernetes-events.md §4). One Event object
 * stands for `occurrences` happenings and is PATCHed as more happen, so what is new is the growth
 * of that number since it was last seen:
 *
 * - `seen`: uid -> occurrences last accounted for (LRU, `maxTracked`); `tombstones`: namespace/name
 *   -> occurrences of a deleted Event, because tools/record re-creates an expired Event under the
 *   same name with a new uid and the *continued* count.
 * - `highWaterMs`: the latest `last_seen` counted, never ahead of the agent's clock (a recorder
 *   with a clock in the future must not make later events look old).
 * - The first LIST only seeds: history from before the agent started is never counted. A restart
 *   with a checkpoint (or a relist after 410) counts growth of known uids, and unknown uids only
 *   when their `last_seen` is at or after the high-water mark (they happened while not watching).
 *
 * Pure state: the source feeds it watch events and persists `snapshot()`.
 */

export interface CounterState {
  highWaterMs: number;
  /** [uid, namespace/name, occurrences], least recently used first. */
  seen: [string, string, number][];
  /** [namespace/name, occurrences, deleted at ms]. */
  tombstones: [string, number, number][];
}

export interface CounterOptions {
  maxTracked: number;
  tombstoneTtlMs: number;
  eventTtlMs: number;
  now?: () => number;
  /** A count went backwards for one uid (never expected): reported, counted as 0. */
  onBackwards?: (e: NormalizedEvent, before: number) => void;
}

interface Seen {
  key: string;
  occurrences: number;
}

export class EventCounter {
  private readonly seen = new Map<string, Seen>();
  private readonly tombstones = new Map<string, { occurrences: number; at: number }>();
  private highWaterMs = 0;
  /** State came from a checkpoint: the next LIST may count what happened while the agent was away. */
  private resumed = false;
  /**
   * After a hand-over nothing is remembered, so an Event first seen in the high-water second may be
   * one the previous leader counted: only later ones are new (times are whole seconds).
   */
  private strictAfterHighWater = false;
  private readonly o: Required<CounterOptions>;

  constructor(options: CounterOptions) {
    this.o = { now: Date.now, onBackwards: () => {}, ...options };
  }

  get tracked(): number {
    return this.seen.size;
  }

  get tombstoneCount(): number {
    return this.tombstones.size;
  }

  /** The latest `last_seen` counted (epoch ms). */
  get highWater(): number {
    return this.highWaterMs;
  }

  /**
   * Another agent led since this state was saved (a Lease takeover): what it counted is unknown here,
   * so the remembered counts are dropped (growth of those Events is not counted: an undercount, never
   * a double count) and only Events first seen at or after its high-water mark count as new.
   */
  handOver(highWaterMs: number): void {
    this.seen.clear();
    this.highWaterMs = Math.min(Math.max(this.highWaterMs, highWaterMs), this.o.now());
    this.resumed = true;
    this.strictAfterHighWater = true;
  }

  restore(state: CounterState): void {
    this.highWaterMs = Math.min(state.highWaterMs, this.o.now());
    for (const [uid, key, occurrences] of state.seen) this.remember(uid, key, occurrences);
    const cutoff = this.o.now() - this.o.tombstoneTtlMs;
    for (const [key, occurrences, at] of state.tombstones) if (at >= cutoff) this.tombstones.set(key, { occurrences, at });
    this.resumed = true;
  }

  snapshot(): CounterState {
    this.expireTombstones();
    return {
      highWaterMs: this.highWaterMs,
      seen: [...this.seen].map(([uid, s]) => [uid, s.key, s.occurrences]),
      tombstones: [...this.tombstones].map(([key, t]) => [key, t.occurrences, t.at]),
    };
  }

  /**
   * An Event found by a LIST. `initial`: the first LIST of this watch (seed); otherwise a relist
   * after the watch was lost. Returns the new occurrences to count.
   */
  listed(e: NormalizedEvent, initial: boolean): number {
    const known = this.seen.get(e.uid);
    if (known) return this.grow(e, known.occurrences);
    if (initial && !this.resumed) {
      this.remember(e.uid, keyOf(e), e.occurrences);
      return 0;
    }
    // Unknown uid after a gap: new only if it began while nobody watched (or was re-created by its
    // recorder); one that began earlier was seen by whoever watched then.
    const after = this.strictAfterHighWater ? e.firstSeenMs > this.highWaterMs : e.firstSeenMs >= this.highWaterMs;
    if (this.tombstones.has(keyOf(e)) || after) return this.added(e);
    this.remember(e.uid, keyOf(e), e.occurrences);
    return 0;
  }

  /** A watch ADDED (or MODIFIED of a uid not remembered): §4 step 2. */
  added(e: NormalizedEvent): number {
    const known = this.seen.get(e.uid);
    if (known) return this.grow(e, known.occurrences);
    const key = keyOf(e);
    const tomb = this.tombstones.get(key);
    let delta: number;
    if (tomb) {
      // re-created by the recorder after expiry: same name, new uid, continued count
      this.tombstones.delete(key);
      delta = Math.max(0, e.occurrences - tomb.occurrences);
    } else if (e.occurrences > 1 && e.firstSeenMs < this.o.now() - this.o.eventTtlMs) {
      delta = 1;
    } else {
      delta = e.occurrences;
    }
    this.remember(e.uid, key, e.occurrences);
    this.mark(e, delta);
    return delta;
  }

  /** A watch MODIFIED; `before` is the occurrences of the state the watch cache held, if any. */
  modified(e: NormalizedEvent, before: number | undefined): number {
    const known = this.seen.get(e.uid)?.occurrences ?? before;
    if (known === undefined) return this.added(e);
    return this.grow(e, known);
  }

  /** DELETED (expiry is not an occurrence): remembered by name in case the recorder re-creates it. */
  deleted(e: NormalizedEvent): void {
    const occurrences = Math.max(e.occurrences, this.seen.get(e.uid)?.occurrences ?? 0);
    this.seen.delete(e.uid);
    this.tombstones.set(keyOf(e), { occurrences, at: this.o.now() });
    this.expireTombstones();
  }

  private grow(e: NormalizedEvent, before: number): number {
    let delta = e.occurrences - before;
    if (delta < 0) {
      this.o.onBackwards(e, before);
      delta = 0;
    }
    this.remember(e.uid, keyOf(e), Math.max(before, e.occurrences));
    this.mark(e, delta);
    return delta;
  }

  private mark(e: NormalizedEvent, delta: number): void {
    // capped at the current whole second: later Events carry whole-second times at or after it
    if (delta > 0 && e.lastSeenMs > this.highWaterMs) this.highWaterMs = Math.min(e.lastSeenMs, wholeSecond(this.o.now()));
  }

  private remember(uid: string, key: string, occurrences: number): void {
    this.seen.delete(uid); // re-insert: most recently used last
    this.seen.set(uid, { key, occurrences });
    if (this.seen.size > this.o.maxTracked) this.seen.delete(this.seen.keys().next().value!);
  }

  private expireTombstones(): void {
    const cutoff = this.o.now() - this.o.tombstoneTtlMs;
    for (const [key, t] of this.tombstones) {
      if (t.at >= cutoff && this.tombstones.size <= this.o.maxTracked) break;
      this.tombstones.delete(key);
    }
  }
}

function wholeSecond(ms: number): number {
  return ms - (ms % 1000);
}

function keyOf(e: NormalizedEvent): string {
  return `${e.metadata.namespace ?? ''}/${e.name}`;
}
