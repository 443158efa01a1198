/**
 * Events baseline: what any watch consumer must do. Reads a file of watch-event lines (the bytes a
 * `?watch=1` stream carries) and JSON.parses each one. Nothing else.
 *
 *   node bench/events_raw.ts <watch.ndjson>
 */
import * as fs from 'node:fs';
import { reportResult } from './child.ts';

const file = process.argv[2];
if (!file) {
  console.error('usage: events_raw.ts <watch.ndjson>');
  process.exit(2);
}
const text = fs.readFileSync(file, 'utf8');
let lines = 0;
let reasons = 0;
for (let start = 0, nl = text.indexOf('\n'); nl !== -1; start = nl + 1, nl = text.indexOf('\n', start)) {
  const ev = JSON.parse(text.slice(start, nl)) as { object: { reason?: string } };
  if (ev.object.reason) reasons++;
  lines++;
}
reportResult({ lines, bytes: Buffer.byteLength(text), extra: { reasons } });
