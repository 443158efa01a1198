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
 *   npm run bench tail-check        (the same, as a scenario: bench/scenarios/tail_check.ts)
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { LogRecord } from '../../agent/record.ts';
import { ContainerDecoder } from '../../agent/sources/container_logs/container_decoder.ts';
import { TAIL_BYTES } from '../../agent/sources/container_logs/file_identity.ts';
import { TailedFile } from '../../agent/sources/container_logs/tailed_file.ts';

export interface TailCheckCost {
  mib: number;
  chunk: number;
  reads: number;
  /** ns per read, best of the passes. */
  readDecodeNs: number;
  plainNs: number;
  checkedNs: number;
  /** The compare and the copy alone, in memory. */
  computeNs: number;
}

/** Measures the three loops over one generated CRI file (removed after). */
export function measureTailCheck(mib: number, chunk: number, rounds: number): TailCheckCost {
  const dir = mkdtempSync(join(tmpdir(), 'kta-tail-check-'));
  try {
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
    const timeIt = (fn: () => number): { ns: number; reads: number } => {
      let best = Infinity;
      let reads = 0;
      for (let r = 0; r < rounds; r++) {
        const t0 = process.hrtime.bigint();
        reads = fn();
        const ns = Number(process.hrtime.bigint() - t0) / reads;
        if (ns < best) best = ns;
      }
      return { ns: best, reads };
    };
    const fd = openSync(path, 'r');
    try {
      const plainPass = () => {
        let n = 0;
        for (let off = 0; off < size; off += chunk) {
          readSync(fd, buf, 0, chunk, off);
          n++;
        }
        return n;
      };
      const checkedPass = () => {
        let n = 0;
        for (let off = 0; off < size; off += chunk) {
          const g = off === 0 ? 0 : TAIL_BYTES;
          const got = readSync(fd, buf, 0, chunk + g, off - g);
          if (g > 0 && tail.compare(buf, 0, g, 0, g) !== 0 && n < 0) throw new Error('unreachable');
          buf.copy(tail, 0, got - TAIL_BYTES, got);
          n++;
        }
        return n;
      };
      // Alternated, so neither gets a warmer cache or a quieter machine than the other.
      let plain = { ns: Infinity, reads: 0 };
      let checked = { ns: Infinity, reads: 0 };
      for (let r = 0; r < rounds; r++) {
        const p = timeIt(plainPass);
        const c = timeIt(checkedPass);
        if (p.ns < plain.ns) plain = p;
        if (c.ns < checked.ns) checked = c;
      }
      // The check's own work without I/O: compare 128 bytes, keep 128 bytes.
      const other = Buffer.alloc(TAIL_BYTES);
      const loops = 1_000_000;
      let best = Infinity;
      for (let r = 0; r < rounds; r++) {
        const t0 = process.hrtime.bigint();
        let diff = 0;
        for (let i = 0; i < loops; i++) {
          diff += tail.compare(other, 0, TAIL_BYTES, 0, TAIL_BYTES);
          buf.copy(tail, 0, i & 1023, (i & 1023) + TAIL_BYTES);
        }
        if (diff === 0.5) throw new Error('unreachable');
        best = Math.min(best, Number(process.hrtime.bigint() - t0) / loops);
      }
      const computeNs = best;
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
      return { mib: size / 1048576, chunk, reads: plain.reads, readDecodeNs: full.ns, plainNs: plain.ns, checkedNs: checked.ns, computeNs };
    } finally {
      closeSync(fd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The result as the lines both the CLI and the scenario print. */
export function describeTailCheck(c: TailCheckCost, rounds: number): string[] {
  const cost = c.checkedNs - c.plainNs;
  return [
    `file ${c.mib.toFixed(0)} MiB, read_chunk ${c.chunk} B, ${c.reads} reads per pass, best of ${rounds} passes`,
    `read+decode (TailedFile.read)  ${(c.readDecodeNs / 1000).toFixed(1)} µs per read`,
    `plain readSync                  ${(c.plainNs / 1000).toFixed(2)} µs per read`,
    `readSync + tail check           ${(c.checkedNs / 1000).toFixed(2)} µs per read`,
    `the check's cost                ${cost.toFixed(0)} ns per read (${((100 * cost) / c.readDecodeNs).toFixed(3)} % of a read with decoding; I/O noise dominates)`,
    `compare + keep, no I/O          ${c.computeNs.toFixed(0)} ns per read (${((100 * c.computeNs) / c.readDecodeNs).toFixed(4)} % of a read with decoding)`,
  ];
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { mib: { type: 'string', default: '64' }, chunk: { type: 'string', default: '65536' }, rounds: { type: 'string', default: '5' } } });
  const rounds = Number(values.rounds);
  for (const line of describeTailCheck(measureTailCheck(Number(values.mib), Number(values.chunk), rounds), rounds)) console.log(line);
}
