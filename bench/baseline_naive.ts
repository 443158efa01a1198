/**
 * Baseline b): what a competent engineer writes in one loop, no framework. For each
 * `<containers dir>/*.log` symlink: read 1 MiB chunks, split lines, parse the CRI prefix (indexOf
 * on spaces), join P/F per (file, stream), JSON.stringify one record per logical line in the
 * design.md shape, append NDJSON to the output with ~4 MiB writes.
 *
 *   node bench/baseline_naive.ts <containers dir> <output file> [node name]
 */
import * as fs from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { reportResult } from './child.ts';

const [dir, outPath, nodeName = 'bench-node'] = process.argv.slice(2);
if (!dir || !outPath) {
  console.error('usage: baseline_naive.ts <containers dir> <output file> [node name]');
  process.exit(2);
}

/** CRI time -> RFC 3339 UTC with 9 fraction digits (fast path for `Z`, Date for offsets). */
function nanoTime(t: string): string {
  if (t.charCodeAt(t.length - 1) !== 90 /* Z */) return new Date(t).toISOString().replace('Z', '000000Z');
  const frac = t.length > 20 && t[19] === '.' ? t.slice(20, -1) : '';
  return frac.length === 9 ? t : `${t.slice(0, 19)}.${frac.padEnd(9, '0')}Z`;
}

const out = fs.openSync(outPath, 'w');
let outParts: string[] = [];
let outLen = 0;
const buf = Buffer.allocUnsafe(1024 * 1024);
let records = 0;
let bytes = 0;
let parseErrors = 0;

for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.log')).sort()) {
  const link = join(dir, name);
  const target = fs.readlinkSync(link); // kubelet's targets are absolute
  const [namespace, pod, uid] = basename(dirname(dirname(target))).split('_');
  const stem = name.slice(0, -4);
  const resource = {
    'k8s.node.name': nodeName,
    'k8s.namespace.name': namespace,
    'k8s.pod.name': pod,
    'k8s.pod.uid': uid,
    'k8s.container.name': basename(dirname(target)),
    'k8s.container.restart_count': basename(target, '.log'),
    'container.id': stem.slice(stem.lastIndexOf('-') + 1),
  };
  const attributes = {
    stdout: { 'log.iostream': 'stdout', 'log.file.path': target },
    stderr: { 'log.iostream': 'stderr', 'log.file.path': target },
  };
  const pending: Record<string, { time: string; body: string } | undefined> = {};
  let observed = '';
  const emit = (time: string, body: string, stream: 'stdout' | 'stderr') => {
    const line = JSON.stringify({ timestamp: nanoTime(time), observed_timestamp: observed, body, attributes: attributes[stream], resource }) + '\n';
    outParts.push(line);
    outLen += line.length;
    records++;
    if (outLen >= 4 * 1024 * 1024) {
      fs.writeSync(out, outParts.join(''));
      outParts = [];
      outLen = 0;
    }
  };

  const fd = fs.openSync(link, 'r');
  let carry: Buffer | undefined;
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    bytes += n;
    const chunk = carry ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
    const end = chunk.lastIndexOf(10) + 1; // decode whole lines only (no UTF-8 char cut in two)
    carry = end < chunk.length ? Buffer.from(chunk.subarray(end)) : undefined;
    const text = chunk.toString('utf8', 0, end);
    observed = new Date().toISOString().replace('Z', '000000Z');
    for (let pos = 0; pos < text.length; ) {
      const nl = text.indexOf('\n', pos);
      const s1 = text.indexOf(' ', pos);
      const s2 = text.indexOf(' ', s1 + 1);
      const s3 = text.indexOf(' ', s2 + 1);
      const streamName = text.slice(s1 + 1, s2);
      if (s1 < 0 || s2 < 0 || s3 < 0 || s3 > nl || (streamName !== 'stdout' && streamName !== 'stderr')) {
        parseErrors++;
        pos = nl + 1;
        continue;
      }
      const stream = streamName as 'stdout' | 'stderr';
      const time = text.slice(pos, s1);
      const content = text.slice(s3 + 1, nl);
      const open = pending[stream];
      if (text.charCodeAt(s2 + 1) === 80 /* P */) {
        if (open) open.body += content;
        else pending[stream] = { time, body: content };
      } else if (open) {
        pending[stream] = undefined;
        emit(open.time, open.body + content, stream);
      } else emit(time, content, stream);
      pos = nl + 1;
    }
  }
  fs.closeSync(fd);
  // End of file: partials no F will close (container exit) are emitted as they are.
  for (const stream of ['stdout', 'stderr'] as const) {
    const open = pending[stream];
    if (open) emit(open.time, open.body, stream);
  }
}
if (outLen > 0) fs.writeSync(out, outParts.join(''));
fs.closeSync(out);
reportResult({ lines: records, bytes, extra: { parseErrors } });
