/**
 * Baseline a): the floor. Reads every `*.log` of a containers dir with fs.readSync in 1 MiB chunks
 * and counts LF bytes (CRI lines, P and F alike). Nothing else.
 *
 *   node bench/baseline_raw.ts <containers dir>
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { reportResult } from './child.ts';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: baseline_raw.ts <containers dir>');
  process.exit(2);
}

const buf = Buffer.allocUnsafe(1024 * 1024);
let lines = 0;
let bytes = 0;
for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.log')).sort()) {
  const fd = fs.openSync(join(dir, name), 'r');
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    bytes += n;
    const chunk = n === buf.length ? buf : buf.subarray(0, n);
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
  }
  fs.closeSync(fd);
}
reportResult({ lines, bytes });
