import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../../atomic_file.ts';
import type { LogRecord } from '../../record.ts';
import type { CounterState } from './event_counter.ts';

/**
 * `<data_dir>/checkpoints/<source>.events.json`: the counter's seen/tombstones/high-water mark, and
 * the event log records not yet accepted by every output (re-emitted after a restart). It moves as
 * occurrences are counted, not on acknowledgement: a restart then never counts an occurrence twice
 * in the metrics, and the records it owes the outputs are in the file itself.
 */
export interface EventsCheckpoint {
  version: 1;
  counter: CounterState;
  records: LogRecord[];
}

export function loadCheckpoint(path: string): EventsCheckpoint | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const c = JSON.parse(text) as EventsCheckpoint;
  if (c?.version !== 1 || !Array.isArray(c.counter?.seen) || !Array.isArray(c.counter?.tombstones)) {
    throw new Error(`${path}: not a kubernetes_events checkpoint`);
  }
  return { version: 1, counter: c.counter, records: Array.isArray(c.records) ? c.records : [] };
}

export function saveCheckpoint(path: string, c: EventsCheckpoint, durable: boolean): void {
  writeFileAtomic(path, JSON.stringify(c), durable);
}
