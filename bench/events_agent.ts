/**
 * The kubernetes_events hot path without HTTP: each watch-event line is parsed, normalised, counted
 * (EventCounter: deltas of count/series), and every new occurrence goes to the event metrics and
 * becomes a log record — what the source does per watch event. Prints the occurrences counted.
 *
 *   node bench/events_agent.ts <watch.ndjson>
 */
import * as fs from 'node:fs';
import { EventMetrics } from '../agent/cluster/event_metrics.ts';
import { eventRecord } from '../agent/cluster/event_logs.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import { EventCounter } from '../agent/sources/kubernetes_events/event_counter.ts';
import { normalizeEvent } from '../agent/sources/kubernetes_events/normalize.ts';
import type { KubeObject } from '../agent/kube/types.ts';
import { reportResult } from './child.ts';

const file = process.argv[2];
if (!file) {
  console.error('usage: events_agent.ts <watch.ndjson>');
  process.exit(2);
}
const self = new SelfMetrics('bench');
const metrics = new EventMetrics(self.registry, {
  includeNamespaces: [],
  excludeNamespaces: [],
  maxReasonsPerComponent: 100,
  maxComponents: 100,
  seriesTtlMs: 24 * 3600_000,
  lookup: { get: () => Promise.resolve(undefined) },
});
const counter = new EventCounter({ maxTracked: 100_000, tombstoneTtlMs: 2 * 3600_000, eventTtlMs: 3600_000 });
const text = fs.readFileSync(file, 'utf8');
let lines = 0;
let occurrences = 0;
let recordBytes = 0;
for (let start = 0, nl = text.indexOf('\n'); nl !== -1; start = nl + 1, nl = text.indexOf('\n', start)) {
  const ev = JSON.parse(text.slice(start, nl)) as { type: string; object: KubeObject };
  const e = normalizeEvent(ev.object);
  const delta = ev.type === 'ADDED' ? counter.added(e) : ev.type === 'MODIFIED' ? counter.modified(e, undefined) : (counter.deleted(e), 0);
  lines++;
  if (delta <= 0) continue;
  occurrences += delta;
  const o = { ...e, delta };
  metrics.onEvent(o);
  recordBytes += JSON.stringify(eventRecord(o, undefined)).length;
}
reportResult({ lines, bytes: Buffer.byteLength(text), extra: { occurrences, recordMiB: (recordBytes / 1048576).toFixed(1) } });
