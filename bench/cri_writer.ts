/**
 * A container runtime at a steady rate: creates `files` containers' CRI logs (kubelet's layout:
 * `<root>/var/log/pods/<ns>_<pod>_<uid>/app/0.log` and the `<root>/var/log/containers/*.log`
 * symlinks) and appends `rate` lines per second to them, round-robin, for `seconds`, then reports
 * what it wrote (bench/child.ts). Lines are `F` lines of 150-400 bytes of JSON or text, ASCII,
 * each with its sequence number; timestamps come from the wall clock.
 *
 *   node bench/cri_writer.ts <root> <files> <rate lines/s> <seconds>
 *
 * The schedule is by the clock (line n is due at n / rate seconds), so a late tick catches up; the
 * report's `max_behind_lines` says how far behind it ever was (a busy machine).
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { formatCriTimestamp, podDirName, symlinkName, wallClock } from '../agent/demo/node_simulator.ts';
import { reportResult } from './child.ts';

const [root, filesArg, rateArg, secondsArg] = process.argv.slice(2);
if (!root || !filesArg || !rateArg || !secondsArg) {
  console.error('usage: cri_writer.ts <root> <files> <rate lines/s> <seconds>');
  process.exit(2);
}
const files = Number(filesArg);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const total = Math.round(rate * seconds);
const TICK_MS = 20;

const podsDir = join(root, 'var/log/pods');
const containersDir = join(root, 'var/log/containers');
fs.mkdirSync(podsDir, { recursive: true });
fs.mkdirSync(containersDir, { recursive: true });

const fds: number[] = [];
for (let f = 0; f < files; f++) {
  const hex = f.toString(16).padStart(2, '0');
  const ns = ['default', 'shop', 'payments'][f % 3]!;
  const pod = `writer-${hex}-7d9f8c6b5-x${hex}kq`;
  const dir = join(podsDir, podDirName(ns, pod, `00000000-0000-4000-8000-0000000000${hex}`), 'app');
  fs.mkdirSync(dir, { recursive: true });
  const path = join(dir, '0.log');
  fds.push(fs.openSync(path, 'a'));
  fs.symlinkSync(path, join(containersDir, symlinkName(ns, pod, 'app', hex.repeat(32))));
}

// Bodies from a fixed pool: what varies per line is the time and the sequence number.
const WORDS = 'request handled upstream cache miss retry timeout connection user order payment shipped queue worker batch commit'.split(' ');
const bodies: string[] = [];
for (let i = 0; i < 64; i++) {
  const size = 150 + ((i * 97) % 251);
  let text = '';
  for (let w = i; text.length < size; w += 7) text += WORDS[w % WORDS.length] + ' ';
  text = text.slice(0, size - 60);
  bodies.push(i % 2 === 0 ? `{"level":"info","logger":"app","msg":"${text}","seq":` : `level=info logger=app msg="${text}" seq=`);
}

const now = wallClock();
const started = performance.now();
let written = 0;
let bytes = 0;
let maxBehind = 0;
const parts: string[][] = fds.map(() => []);

function tick(): void {
  const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate));
  maxBehind = Math.max(maxBehind, due - written - Math.ceil((rate * TICK_MS) / 1000));
  const ns = now();
  for (let seq = written; seq < due; seq++) {
    const body = bodies[seq % bodies.length]!;
    const line = `${formatCriTimestamp(ns + BigInt(seq - written))} stdout F ${body}${seq}${seq % 2 === 0 ? '}' : ''}\n`;
    parts[seq % fds.length]!.push(line);
  }
  for (let f = 0; f < fds.length; f++) {
    if (parts[f]!.length === 0) continue;
    const chunk = parts[f]!.join('');
    parts[f] = [];
    fs.writeSync(fds[f]!, chunk);
    bytes += Buffer.byteLength(chunk);
  }
  written = due;
  if (written < total) setTimeout(tick, TICK_MS);
  else {
    for (const fd of fds) fs.closeSync(fd);
    reportResult({ lines: written, bytes, extra: { max_behind_lines: Math.max(0, maxBehind) } });
  }
}

tick();
