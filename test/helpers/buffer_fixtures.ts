import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

import { createLogger, type Logger } from '../../agent/log.ts';
import type { SelfMetrics } from '../../agent/metrics.ts';
import type { Attributes, LogRecord } from '../../agent/record.ts';

/** Shared by the records of one "file", as the tailer shares them. */
const ATTRS: Attributes = { 'log.iostream': 'stdout', 'log.file.path': '/var/log/pods/default_web-1_0f1e/app/0.log' };
const RESOURCE: Attributes = { 'k8s.namespace.name': 'default', 'k8s.pod.name': 'web-1', 'k8s.container.name': 'app', 'kta.list': ['a', 'b'] };

/** Record number `i`, in a few shapes (plain text, parsed object, severity, non-ASCII); `id(r)` gives `i` back. */
export function rec(i: number, pad = 0): LogRecord {
  const ts = `2026-11-21T10:00:00.${String(i % 1e9).padStart(9, '0')}Z`;
  const r: LogRecord = { timestamp: ts, observedTimestamp: ts, body: `line ${i} ${'x'.repeat(pad)}`, attributes: ATTRS, resource: RESOURCE };
  if (i % 3 === 1) r.body = { msg: `line ${i}`, n: i, nested: { ok: true, list: [1, 'two'] } };
  if (i % 5 === 2) {
    r.severityText = 'ERROR';
    r.severityNumber = 17;
  }
  if (i % 7 === 3) r.body = `línea ${i} — ünïcødé ✓ ${'y'.repeat(pad)}`;
  return r;
}

export function recs(from: number, count: number, pad = 0): LogRecord[] {
  return Array.from({ length: count }, (_, k) => rec(from + k, pad));
}

export function id(r: LogRecord): number {
  const text = typeof r.body === 'string' ? r.body : String((r.body as { msg: string }).msg);
  return Number(/ (\d+)/.exec(text)![1]);
}

export interface Frame {
  readonly offset: number;
  readonly length: number;
  readonly payload: string;
}

/** The frames of a segment file, parsed independently of the agent's code: [u32 LE len][u32 LE crc32][payload]. */
export function readFrames(path: string): { frames: Frame[]; trailing: number } {
  const buf = readFileSync(path);
  const frames: Frame[] = [];
  let at = 0;
  while (at + 8 <= buf.length) {
    const length = buf.readUInt32LE(at);
    if (length === 0 || at + 8 + length > buf.length) break;
    const payload = buf.subarray(at + 8, at + 8 + length);
    if (crc32(payload) !== buf.readUInt32LE(at + 4)) break;
    frames.push({ offset: at, length, payload: payload.toString('utf8') });
    at += 8 + length;
  }
  return { frames, trailing: buf.length - at };
}

export function segmentFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.seg'))
    .sort()
    .map((n) => join(dir, n));
}

/** Bytes of the segment files in `dir`. */
export function segmentBytes(dir: string): number {
  return segmentFiles(dir).reduce((n, p) => n + statSync(p).size, 0);
}

/** A metric's value for exactly these labels (0 when absent). */
export async function metricValue(metrics: SelfMetrics, name: string, labels: Record<string, string>): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  const hit = values.find((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want));
  return hit?.value ?? 0;
}

/** A logger that keeps its lines. */
export function memoryLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger('debug', (l) => lines.push(l)), lines };
}

export function tick(ms = 0): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
