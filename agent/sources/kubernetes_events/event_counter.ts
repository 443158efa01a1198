import type { EventsHandover } from '../../cluster/handover.ts';
import { MAX_RECENT_EVENTS } from '../../cluster/handover.ts';
import type { NormalizedEvent } from './normalize.ts';

/**
 * Counting Event occurrences without double counting (kubernetes-events.md §4). One Event object
 * stands for `occurrences` happenings and is PATCHed as more happen, so what is new is the growth
 * of that number since it was last seen:
 *
 * - `seen`: uid -> occurrences last accounted for (LRU, `maxTracked`); `tombstones`: namespace/name
 *   -> occurrences of a deleted Event, because tools/record re-creates an expired Event under the
 *   same name with a new uid and the *continued* count.
 * - `highWaterMs`: the latest occurrence time counted (µs as the fraction: events.k8s.io times are
 *   MicroTime), never ahead of the agent's clock (a recorder with a clock in the future must not
 *   make later events look old).
 * - A first start counts from the moment the agent starts to lead (`startAt`): its first LIST counts
 *   Events first seen from then on (created before that LIST came back), and seeds the rest, history
 *   from before the agent led, which is never counted. Without `startAt` the first LIST only seeds.
 * - After a gap (a restart from the checkpoint, a relist after 410, a takeover from the Lease's
 *   handover) every Event of the LIST is judged against the mark as it was *before* that LIST: a
 *   LIST comes in key (name) order, not time order, so the mark only moves once the whole LIST is
 *   in. A known uid counts its growth; an unknown uid first seen at or after the mark happened while
 *   nobody counted and counts in full; an unknown uid first seen before the mark whose latest
 *   occurrence is after it grew unseen and counts 1 (its count at the mark is unknown); the rest
 *   were counted by whoever counted before.
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
  /** uid -> occurrences of the Events counted most recently (what a successor needs), newest last. */
  private readonly recentlyCounted = new Map<string, number>();
  private highWaterMs = 0;
  /** While a LIST is applied: the latest time it counted, applied to the mark at its end. */
  private listHighWater: number | undefined;
  /** State came from a checkpoint or a handover: the next LIST may count what happened meanwhile. */
  private resumed = false;
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

  /** The latest occurrence time counted (epoch ms, µs as the fraction). */
  get highWater(): number {
    return this.highWaterMs;
  }

  /** Whether this counter already counts (a checkpoint or a handover), so a LIST is judged, not seeded. */
  get hasHistory(): boolean {
    return this.resumed;
  }

  /**
   * Another agent counted since this state was saved (a takeover): its handover replaces what is
   * remembered here, whose counts may be stale.
   */
  handOver(h: EventsHandover): void {
    this.seen.clear();
    this.recentlyCounted.clear();
    this.highWaterMs = Math.min(h.highWaterMs, this.o.now());
    for (const [uid, occurrences] of h.recent) {
      this.seen.set(uid, { key: '', occurrences });
      this.recentlyCounted.set(uid, occurrences);
    }
    this.resumed = true;
  }

  /**
   * A first start (no checkpoint, no handover): count what happens from `ms` on, judged like a gap.
   * From the start of that second: core/v1 times are whole seconds, so an Event written a moment after
   * `ms` carries the second before it.
   */
  startAt(ms: number): void {
    if (this.resumed) return;
    const second = Math.floor(Math.min(ms, this.o.now()) / 1000) * 1000;
    this.highWaterMs = second;
    this.resumed = true;
  }

  restore(state: CounterState): void {
    this.seen.clear();
    this.recentlyCounted.clear();
    this.tombstones.clear();
    this.highWaterMs = Math.min(state.highWaterMs, this.o.now());
    for (const [uid, key, occurrences] of state.seen) this.remember(uid, key, occurrences);
    const cutoff = this.o.now() - this.o.tombstoneTtlMs;
    for (const [key, occurrences, at] of state.tombstones) if (at >= cutoff) this.tombstones.set(key, { occurrences, at });
    // the Events remembered last are the ones a successor most likely still sees grow
    for (const [uid, , occurrences] of state.seen.slice(-MAX_RECENT_EVENTS)) this.recentlyCounted.set(uid, occurrences);
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

  /** What a successor needs (the Lease's handover): the mark and the counts of the Events counted last. */
  handover(): EventsHandover {
    return { highWaterMs: this.highWaterMs, recent: [...this.recentlyCounted] };
  }

  /** A LIST starts (the first, or a relist after 410): until `listEnd` the mark stays where it was. */
  listStart(): void {
    this.listHighWater = this.highWaterMs;
  }

  listEnd(): void {
    if (this.listHighWater !== undefined) this.highWaterMs = Math.max(this.highWaterMs, this.listHighWater);
    this.listHighWater = undefined;
    this.resumed = true; // after any LIST, what it held is known: the next one judges against the mark
  }

  /** An Event found by a LIST (between `listStart` and `listEnd`). Returns the new occurrences to count. */
  listed(e: NormalizedEvent): number {
    const known = this.seen.get(e.uid);
    if (known) return this.grow(e, known.occurrences);
    if (!this.resumed) {
      // history: accounted for without being counted, so the mark covers it for a successor too
      this.remember(e.uid, keyOf(e), e.occurrences);
      if (this.listHighWater !== undefined) this.listHighWater = Math.max(this.listHighWater, Math.min(e.lastSeenMs, this.o.now()));
      return 0;
    }
    const tomb = this.tombstones.get(keyOf(e));
    if (tomb || e.firstSeenMs >= this.highWaterMs) return this.added(e);
    if (e.lastSeenMs > this.highWaterMs) {
      // counted before the mark by someone whose count is not known here; it grew since: at least once
      this.remember(e.uid, keyOf(e), e.occurrences);
      this.mark(e, 1);
      return 1;
    }
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
    this.recentlyCounted.delete(e.uid);
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
    if (delta <= 0) return;
    this.recentlyCounted.delete(e.uid);
    this.recentlyCounted.set(e.uid, this.seen.get(e.uid)?.occurrences ?? e.occurrences);
    if (this.recentlyCounted.size > MAX_RECENT_EVENTS) this.recentlyCounted.delete(this.recentlyCounted.keys().next().value!);
    const at = Math.min(e.lastSeenMs, this.o.now());
    if (this.listHighWater !== undefined) this.listHighWater = Math.max(this.listHighWater, at);
    else if (at > this.highWaterMs) this.highWaterMs = at;
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

function keyOf(e: NormalizedEvent): string {
  return `${e.metadata.namespace ?? ''}/${e.name}`;
}
