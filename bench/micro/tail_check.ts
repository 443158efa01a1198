/**
 * Micro-benchmark of the rewrite check on the read path (issue 14): every TailedFile.read also
 * takes the 128 bytes just before its offset in the same read(2), compares them with what was read
 * there, and keeps the last 128 bytes it read. This measures, over one CRI file in the page cache:
 *
 *   read+decode  TailedFile.read through a real ContainerDecoder: the whole cost of one read
 *   plain        readSync of read_chunk bytes at the offset (the read as it was)
 *   checked      readSync of 128 + read_chunk bytes at offset - 128, a 128-byte compare, a 128-byte copy
 *
 * and prints ns per read of each, the check's cost (checked - plain) and its share of a read.
 *
 *   node bench/micro/tail_check.ts [--mib 64] [--chunk 65536] [--rounds 5]
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { LogRecord } from '../../agent/record.ts';
import { ContainerDecoder } from '../../agent/sources/container_logs/container_decoder.ts';
import { TAIL_BYTES } from '../../agent/sources/container_logs/file_identity.ts';
import { TailedFile } from '../../agent/sources/container_logs/tailed_file.ts';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '64' }, chunk: { type: 'string', default: '65536' }, rounds: { type: 'string', default: '5' } } });
const mib = Number(values.mib);
const chunk = Number(values.chunk);
const rounds = Number(values.rounds);

const dir = mkdtempSync(join(tmpdir(), 'kta-tail-check-'));
const path = join(dir, '0.log');
const lines: string[] = [];
let bytes = 0;
for (let i = 0; bytes < mib * 1024 * 1024; i++) {
  const line = `2026-11-21T10:00:00.${String(i % 1e9).padStart(9, '0')}Z stdout F level=info msg="request handled" id=${i} took=${i % 900}ms path=/api/v1/items/${i % 9973}\n`;
  lines.push(line);
  bytes += line.length;
}
writeFileSync(path, lines.join(''));
const size = bytes;
const buf = Buffer.allocUnsafe(chunk + 1024 * 1024 + TAIL_BYTES + 1);
const tail = Buffer.allocUnsafe(TAIL_BYTES);

function timeIt(fn: () => number): { ns: number; reads: number } {
  let best = Infinity;
  let reads = 0;
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    reads = fn();
    const ns = Number(process.hrtime.bigint() - t0) / reads;
    if (ns < best) best = ns;
  }
  return { ns: best, reads };
}

const fd = openSync(path, 'r');
const plain = timeIt(() => {
  let n = 0;
  for (let off = 0; off < size; off += chunk) {
    readSync(fd, buf, 0, chunk, off);
    n++;
  }
  return n;
});
const checked = timeIt(() => {
  let n = 0;
  for (let off = 0; off < size; off += chunk) {
    const g = off === 0 ? 0 : TAIL_BYTES;
    const got = readSync(fd, buf, 0, chunk + g, off - g);
    if (g > 0 && tail.compare(buf, 0, g, 0, g) !== 0 && n < 0) throw new Error('unreachable');
    buf.copy(tail, 0, got - TAIL_BYTES, got);
    n++;
  }
  return n;
});
const full = timeIt(() => {
  const decoder = new ContainerDecoder({
    format: 'cri',
    maxLineBytes: 1024 * 1024,
    resource: {},
    path,
    events: { parseError: () => {}, truncated: () => {}, emptyLine: () => {} },
  });
  const file = new TailedFile({ fd, dev: 0, ino: 0, realPath: path, linkPath: undefined, offset: 0, fingerprint: { length: 0, crc: 0 }, decoder });
  let n = 0;
  for (;;) {
    const out: LogRecord[] = [];
    const r = file.read(buf, chunk, '2026-11-21T10:00:00.000Z', out);
    if (r.rewritten) throw new Error('a file that only grows was taken for rewritten');
    n++;
    if (!r.more) break;
  }
  return n;
});
closeSync(fd);
rmSync(dir, { recursive: true, force: true });

const cost = checked.ns - plain.ns;
console.log(`file ${(size / 1048576).toFixed(0)} MiB, read_chunk ${chunk} B, ${plain.reads} reads per pass, best of ${rounds} passes`);
console.log(`  read+decode (TailedFile.read)  ${(full.ns / 1000).toFixed(1)} µs per read`);
console.log(`  plain readSync                  ${(plain.ns / 1000).toFixed(2)} µs per read`);
console.log(`  readSync + tail check           ${(checked.ns / 1000).toFixed(2)} µs per read`);
console.log(`  the check's cost                ${cost.toFixed(0)} ns per read (${((100 * cost) / full.ns).toFixed(3)} % of a read with decoding)`);
