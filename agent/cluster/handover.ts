import { z } from 'zod';
import { formatMicroTime, parseKubeTime } from '../kube/micro_time.ts';
import { MAX_KEYS_AT_MARK, type ReportMark } from './report_window.ts';

/**
 * What a leader hands to the next one on the Lease (annotation `telemetry-agent.io/handover`, JSON),
 * written with every renewal *before* what it describes is reported:
 * - `events`: the high-water mark of counted Events (the latest occurrence time, with microseconds)
 *   and the counts of the Events counted most recently, so a successor neither counts those again nor
 *   misses their growth;
 * - `signals`: the mark of the leader-only trackers (agent/cluster/report_window.ts).
 *
 * The Lease is state any holder of `update` on it can write: it is parsed with a schema, and a bad
 * annotation is reported (the caller logs and counts it) and replaced by what the Lease's own
 * `renewTime` says, never trusted, never a crash.
 */

export const HANDOVER_ANNOTATION = 'telemetry-agent.io/handover';
/** Written by earlier versions: the high-water mark in whole epoch ms, capped at a whole second. */
export const LEGACY_HIGH_WATER_ANNOTATION = 'telemetry-agent.io/events-high-water';
/** Event counts handed over; the Events counted most recently first to go in. */
export const MAX_RECENT_EVENTS = 256;

export interface EventsHandover {
  /** Epoch ms, µs as the fraction. */
  highWaterMs: number;
  /** [Event uid, occurrences counted]. */
  recent: [string, number][];
}

export interface Handover {
  /** The leader that wrote it. */
  identity?: string;
  events?: EventsHandover;
  signals?: ReportMark;
}

const time = z.string().max(40).transform((s, ctx) => {
  const ms = parseKubeTime(s);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `not an RFC 3339 time: ${JSON.stringify(s.slice(0, 40))}` });
    return z.NEVER;
  }
  return ms;
});

const schema = z.strictObject({
  version: z.literal(1),
  identity: z.string().max(256).optional(),
  events: z
    .strictObject({
      highWater: time,
      recent: z.array(z.tuple([z.string().min(1).max(128), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)])).max(MAX_RECENT_EVENTS),
    })
    .optional(),
  signals: z
    .strictObject({
      through: time,
      keys: z.array(z.string().min(1).max(512)).max(MAX_KEYS_AT_MARK),
      open: z.array(z.tuple([z.string().min(1).max(512), time])).max(MAX_KEYS_AT_MARK).optional(),
    })
    .optional(),
});

/** The handover in a Lease's annotations: `{}` when there is none, `error` when it is unreadable. */
export function readHandover(annotations: Record<string, unknown> | undefined): { handover?: Handover; error?: string } {
  const raw = annotations?.[HANDOVER_ANNOTATION];
  if (raw === undefined) {
    const legacy = annotations?.[LEGACY_HIGH_WATER_ANNOTATION];
    if (legacy === undefined) return {};
    const ms = typeof legacy === 'string' && /^\d{1,16}$/.test(legacy) ? Number(legacy) : NaN;
    if (!Number.isFinite(ms)) return { error: `${LEGACY_HIGH_WATER_ANNOTATION}: not an epoch ms: ${JSON.stringify(String(legacy).slice(0, 40))}` };
    // that version marked whole seconds: the rest of that second counts as counted (a miss, never a double count)
    return { handover: { events: { highWaterMs: ms + 999.999, recent: [] } } };
  }
  if (typeof raw !== 'string' || raw.length > 256 * 1024) return { error: `${HANDOVER_ANNOTATION}: not a string of at most 256 KiB` };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    return { error: `${HANDOVER_ANNOTATION}: not JSON (${(e as Error).message})` };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return { error: `${HANDOVER_ANNOTATION}: ${issue.path.join('.') || '(top)'}: ${issue.message}` };
  }
  const { identity, events, signals } = parsed.data;
  return {
    handover: {
      ...(identity !== undefined ? { identity } : {}),
      ...(events ? { events: { highWaterMs: events.highWater, recent: events.recent } } : {}),
      ...(signals ? { signals: { throughMs: signals.through, keys: signals.keys, ...(signals.open ? { open: signals.open } : {}) } } : {}),
    },
  };
}

/** The annotation value for `h`. */
export function writeHandover(h: Handover): string {
  return JSON.stringify({
    version: 1,
    ...(h.identity !== undefined ? { identity: h.identity } : {}),
    ...(h.events ? { events: { highWater: formatMicroTime(h.events.highWaterMs), recent: h.events.recent.slice(-MAX_RECENT_EVENTS) } } : {}),
    ...(h.signals
      ? {
          signals: {
            through: formatMicroTime(h.signals.throughMs),
            keys: h.signals.keys.slice(-MAX_KEYS_AT_MARK),
            ...(h.signals.open?.length ? { open: h.signals.open.slice(-MAX_KEYS_AT_MARK).map(([k, at]) => [k, formatMicroTime(at)]) } : {}),
          },
        }
      : {}),
  });
}
