import { z } from 'zod';
import { writeFileAtomic } from '../../atomic_file.ts';
import { MAX_KEYS_AT_MARK, type ReportMark } from '../../cluster/report_window.ts';
import type { LogRecord } from '../../record.ts';
import { describeIssue, readStateJson, validEntries } from '../../state_file.ts';
import type { CounterState } from './event_counter.ts';

/**
 * `<data_dir>/checkpoints/<source>.events.json`: the counter's seen/tombstones/high-water mark as of
 * the last commit, the event log records not yet accepted by every output (re-emitted after a
 * restart), and the mark of the node-local trackers. Occurrences are reported only after the state
 * that counts them is written (and, on a leader, on the Lease), so a restart never counts an
 * occurrence twice in the metrics, and the records it owes the outputs are in the file itself.
 */
export interface EventsCheckpoint {
  version: 2;
  counter: CounterState;
  records: LogRecord[];
  /** The node-local trackers' mark (report_window.ts). */
  signals?: ReportMark;
  /** Without leader election: the leader-only trackers' mark (with it, the Lease holds that). */
  leaderSignals?: ReportMark;
}

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const text = z.string().max(65536);
const seenEntry = z.tuple([text.min(1), text, count]);
const tombstone = z.tuple([text, count, count]);
const attributes = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.array(z.string())]));
/** A record owed to the outputs: the shape every encoder relies on. */
export const logRecordSchema = z.object({
  timestamp: z.string(),
  observedTimestamp: z.string(),
  severityText: z.string().optional(),
  severityNumber: z.number().int().min(0).max(24).optional(),
  body: z.union([z.string(), z.record(z.string(), z.unknown()), z.array(z.unknown())]),
  attributes,
  resource: attributes,
});
const mark = z.strictObject({
  throughMs: z.number().finite().min(0),
  keys: z.array(text).max(MAX_KEYS_AT_MARK),
  open: z.array(z.tuple([text, z.number().finite()])).max(MAX_KEYS_AT_MARK).optional(),
});
const layout = z.object({
  version: z.union([z.literal(1), z.literal(2)]),
  counter: z.object({ highWaterMs: z.number().finite().min(0), seen: z.array(z.unknown()), tombstones: z.array(z.unknown()) }),
  records: z.array(z.unknown()).default([]),
  signals: z.unknown().optional(),
  leaderSignals: z.unknown().optional(),
});

export type LoadedEventsCheckpoint =
  | { status: 'missing' }
  | { status: 'unreadable'; problem: string }
  /** `dropped`: why each invalid entry (seen, tombstone or record) was left out. */
  | { status: 'ok'; checkpoint: EventsCheckpoint; dropped: string[] };

/** Never throws: the file is untrusted input, checked entry by entry. */
export function loadCheckpoint(path: string): LoadedEventsCheckpoint {
  const read = readStateJson(path);
  if (read.status === 'missing') return read;
  if (read.status === 'unreadable') return { status: 'unreadable', problem: read.reason };
  const top = layout.safeParse(read.data);
  if (!top.success) return { status: 'unreadable', problem: `not a kubernetes_events checkpoint (${describeIssue(top.error)})` };
  const seen = validEntries(top.data.counter.seen, seenEntry);
  const tombstones = validEntries(top.data.counter.tombstones, tombstone);
  const records = validEntries(top.data.records, logRecordSchema);
  // a trackers' mark that is not one is dropped: reporting then starts at this start (a miss, never a double report)
  const markProblems: string[] = [];
  const [signals, leaderSignals] = (['signals', 'leaderSignals'] as const).map((k) => {
    if (top.data[k] === undefined) return undefined;
    const m = mark.safeParse(top.data[k]);
    if (!m.success) markProblems.push(`${k}: ${describeIssue(m.error)}`);
    return m.data;
  });
  return {
    status: 'ok',
    checkpoint: {
      version: 2,
      counter: { highWaterMs: top.data.counter.highWaterMs, seen: seen.kept, tombstones: tombstones.kept },
      records: records.kept as LogRecord[],
      ...(signals ? { signals } : {}),
      ...(leaderSignals ? { leaderSignals } : {}),
    },
    dropped: [
      ...seen.dropped.map((d) => `seen ${d}`),
      ...tombstones.dropped.map((d) => `tombstone ${d}`),
      ...records.dropped.map((d) => `record ${d}`),
      ...markProblems.map((d) => `trackers' mark ${d}`),
    ],
  };
}

export function saveCheckpoint(path: string, c: EventsCheckpoint, durable: boolean): void {
  writeFileAtomic(path, JSON.stringify(c), durable);
}
