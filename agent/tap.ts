import { NdjsonEncoder } from '../outputs/ndjson.ts';
import type { LogRecord } from './record.ts';

/**
 * Live taps: a copy of the records flowing through one component (a source after parsing and
 * enrichment, a transform, what an output is handed), for `telemetry-agent tap`, `top` and the
 * status page. A component owns one TapPoint and calls
 *
 *     if (point.active) point.publish(records);
 *
 * so with nobody listening the hot path pays one boolean check. With listeners, each gets at most
 * `perSecond` records a second (spread over the batches of that second: sampled, not the first N),
 * serialised at once as design.md's NDJSON record (read-only: a listener never sees, or changes, the
 * records the pipeline passes on). A listener that does not keep up loses lines, counted, rather
 * than holding memory or slowing the component.
 */

export type ComponentKind = 'source' | 'transform' | 'output';

export interface TapOptions {
  /** Records per second handed to this listener at most (default 20, at most MAX_PER_SECOND). */
  perSecond?: number;
  /** Stop after this many records (default: until unsubscribed). */
  limit?: number;
}

export interface TapListener {
  /** One NDJSON line (with its newline) per record. False when the listener is backed up: later lines are dropped until it drains. */
  write(line: string): boolean;
  /** `limit` reached: the listener should end. */
  end(): void;
}

export const TAP_DEFAULT_PER_SECOND = 20;
export const TAP_MAX_PER_SECOND = 1000;
/** Listeners on one agent at once (the status page and a few terminals). */
export const TAP_MAX_LISTENERS = 16;

class Subscription {
  readonly listener: TapListener;
  readonly perSecond: number;
  remaining: number;
  /** Budget of the current second and the second it belongs to. */
  private second = 0;
  private budget = 0;
  dropped = 0;
  backedUp = false;

  constructor(listener: TapListener, opts: TapOptions) {
    this.listener = listener;
    this.perSecond = Math.max(1, Math.min(TAP_MAX_PER_SECOND, Math.floor(opts.perSecond ?? TAP_DEFAULT_PER_SECOND)));
    this.remaining = opts.limit !== undefined && opts.limit > 0 ? Math.floor(opts.limit) : Infinity;
  }

  /**
   * Which records of a batch to hand over: every k-th so that a second's budget spreads over the
   * whole batch (a 5000-record batch with budget 20 gives records 0, 250, 500 …).
   */
  pick(count: number, nowMs: number): { step: number; take: number } {
    const second = Math.floor(nowMs / 1000);
    if (second !== this.second) {
      this.second = second;
      this.budget = this.perSecond;
    }
    const take = Math.min(this.budget, this.remaining, count);
    if (take <= 0) return { step: 0, take: 0 };
    this.budget -= take;
    return { step: Math.max(1, Math.floor(count / take)), take };
  }
}

/** One component's tap: `active` is the hot path's only cost while nobody listens. */
export class TapPoint {
  readonly component: string;
  readonly kind: ComponentKind;
  /** True while at least one listener is subscribed. */
  active = false;
  private readonly hub: TapHub;
  private subs: Subscription[] = [];
  private readonly encoder = new NdjsonEncoder();

  constructor(hub: TapHub, component: string, kind: ComponentKind) {
    this.hub = hub;
    this.component = component;
    this.kind = kind;
  }

  publish(records: readonly LogRecord[], nowMs = Date.now()): void {
    if (records.length === 0) return;
    for (const sub of this.subs) {
      const { step, take } = sub.pick(records.length, nowMs);
      for (let i = 0, n = 0; n < take; i += step, n++) {
        const line = this.encoder.encode(records[i]!);
        if (sub.backedUp) {
          sub.dropped++;
          continue;
        }
        if (!sub.listener.write(line)) sub.backedUp = true;
      }
      sub.remaining -= take;
      if (sub.remaining <= 0) this.remove(sub, true);
    }
  }

  /** @internal the hub's */
  add(sub: Subscription): void {
    this.subs = [...this.subs, sub];
    this.active = true;
  }

  /** @internal the hub's */
  remove(sub: Subscription, ended: boolean): void {
    if (!this.subs.includes(sub)) return;
    this.subs = this.subs.filter((s) => s !== sub);
    this.active = this.subs.length > 0;
    this.hub.forget(sub);
    if (ended) sub.listener.end();
  }

  listeners(): number {
    return this.subs.length;
  }
}

export interface TapHandle {
  /** The listener drained: lines flow again (the ones dropped meanwhile are counted in `dropped`). */
  resume(): void;
  /** Lines dropped because the listener was backed up. */
  readonly dropped: number;
  close(): void;
}

export class TapError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** Every component's TapPoint, by kind and name; what `tap`, `top` and the status page subscribe through. */
export class TapHub {
  private readonly points = new Map<string, TapPoint>();
  private readonly live = new Map<Subscription, TapPoint>();

  /** The point of a component (created on first use; a reloaded component keeps its point and listeners). */
  point(component: string, kind: ComponentKind): TapPoint {
    const key = `${kind}:${component}`;
    let p = this.points.get(key);
    if (!p) {
      p = new TapPoint(this, component, kind);
      this.points.set(key, p);
    }
    return p;
  }

  /**
   * The component a user named: `containers`, or `source:containers` when a source and an output
   * share the name. `known` lists the components the running config has (a point may outlive its
   * component after a reload).
   */
  resolve(name: string, known: readonly { name: string; kind: ComponentKind }[]): TapPoint {
    const colon = name.indexOf(':');
    const kind = colon > 0 ? (name.slice(0, colon) as ComponentKind) : undefined;
    const bare = colon > 0 ? name.slice(colon + 1) : name;
    const matches = known.filter((c) => c.name === bare && (kind === undefined || c.kind === kind));
    if (matches.length === 0) {
      const names = known.map((c) => c.name).join(', ') || 'none';
      throw new TapError(404, `no component ${JSON.stringify(name)} (components: ${names})`);
    }
    if (matches.length > 1) {
      throw new TapError(409, `${JSON.stringify(bare)} names ${matches.map((m) => m.kind).join(' and ')}: say ${matches.map((m) => `${m.kind}:${bare}`).join(' or ')}`);
    }
    return this.point(matches[0]!.name, matches[0]!.kind);
  }

  subscribe(point: TapPoint, listener: TapListener, opts: TapOptions = {}): TapHandle {
    if (this.live.size >= TAP_MAX_LISTENERS) throw new TapError(429, `${TAP_MAX_LISTENERS} taps are open on this agent already`);
    const sub = new Subscription(listener, opts);
    this.live.set(sub, point);
    point.add(sub);
    return {
      resume: () => (sub.backedUp = false),
      get dropped() {
        return sub.dropped;
      },
      close: () => point.remove(sub, false),
    };
  }

  /** @internal */
  forget(sub: Subscription): void {
    this.live.delete(sub);
  }

  listeners(): number {
    return this.live.size;
  }
}
