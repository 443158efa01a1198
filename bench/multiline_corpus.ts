/**
 * The multiline benchmark's input, generated once and cached like corpus.ts: CRI files of ordinary
 * application lines (Spring-style text, access logs, logfmt, JSON) with a real stack trace from
 * parsers/fixtures/ on stderr every `traceEvery` ordinary lines, ordinary stdout lines sometimes
 * written between a trace's lines (grouping is per stream). Each trace is followed by an ordinary
 * stderr line, which closes it, so the grouped record count is known: ordinary lines + traces.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { Rng, podDirName, symlinkName } from '../agent/demo/node_simulator.ts';

/** Bump when the output changes, so old cached corpora are not reused. */
const GENERATOR_VERSION = 1;
const FLUSH_BYTES = 1 << 20;

export interface MultilineCorpusParams {
  mib: number;
  files: number;
  seed: number;
  /** Ordinary lines per trace. */
  traceEvery: number;
}

export interface MultilineCorpus {
  containersDir: string;
  paths: string[];
  bytes: number;
  /** CRI lines = records with multiline off. */
  lines: number;
  /** Records with multiline auto: ordinary lines + traces. */
  grouped: number;
  traces: number;
  traceLines: number;
  dir: string;
  reused: boolean;
}

const FIXTURES = ['java_spring_npe.txt', 'python_chained.txt', 'go_panic_goroutines.txt', 'node_uncaught_typeerror.txt'];

export function ensureMultilineCorpus(dataDir: string, p: MultilineCorpusParams): MultilineCorpus {
  const dir = join(dataDir, `multiline-v${GENERATOR_VERSION}-${p.mib}mib-${p.files}f-seed${p.seed}-trace${p.traceEvery}`);
  const manifest = join(dir, 'corpus.json');
  if (fs.existsSync(manifest)) {
    const corpus = JSON.parse(fs.readFileSync(manifest, 'utf8')) as MultilineCorpus;
    const size = corpus.paths.reduce((sum, path) => sum + (fs.existsSync(path) ? fs.statSync(path).size : NaN), 0);
    if (size === corpus.bytes) return { ...corpus, reused: true };
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const corpus = generate(dir, p);
  fs.writeFileSync(manifest, JSON.stringify(corpus));
  return corpus;
}

function generate(dir: string, p: MultilineCorpusParams): MultilineCorpus {
  const rng = new Rng(p.seed);
  const traces = FIXTURES.map((name) => fs.readFileSync(new URL(`../parsers/fixtures/${name}`, import.meta.url), 'utf8').replace(/\n$/, '').split('\n'));
  const podsDir = join(dir, 'var/log/pods');
  const containersDir = join(dir, 'var/log/containers');
  fs.mkdirSync(podsDir, { recursive: true });
  fs.mkdirSync(containersDir, { recursive: true });
  const corpus: MultilineCorpus = { containersDir, paths: [], bytes: 0, lines: 0, grouped: 0, traces: 0, traceLines: 0, dir, reused: false };
  const share = Math.ceil((p.mib * 1024 * 1024) / p.files);
  let clock = Date.parse('2026-11-21T10:00:00Z') * 1e6;

  for (let f = 0; f < p.files; f++) {
    const pod = `orders-${rng.chars('bcdfghjklmnpqrstvwxz2456789', 10)}-${rng.chars('bcdfghjklmnpqrstvwxz2456789', 5)}`;
    const podDir = join(podsDir, podDirName('shop', pod, rng.uuid()));
    fs.mkdirSync(join(podDir, 'app'), { recursive: true });
    const logPath = join(podDir, 'app', '0.log');
    fs.symlinkSync(logPath, join(containersDir, symlinkName('shop', pod, 'app', rng.hex(64))));
    corpus.paths.push(logPath);

    const fd = fs.openSync(logPath, 'w');
    let parts: string[] = [];
    let pending = 0;
    let written = 0;
    const time = () => {
      clock += 1000 + Math.floor(rng.next() * 3_000_000);
      const ms = Math.floor(clock / 1e6);
      return new Date(ms).toISOString().slice(0, 20) + String(clock % 1e9).padStart(9, '0') + 'Z';
    };
    const push = (stream: 'stdout' | 'stderr', content: string) => {
      const line = `${time()} ${stream} F ${content}\n`;
      parts.push(line);
      pending += line.length;
      corpus.lines++;
      if (pending >= FLUSH_BYTES) flush();
    };
    const flush = () => {
      fs.writeSync(fd, parts.join(''));
      written += pending;
      parts = [];
      pending = 0;
    };
    const ordinary = (stream: 'stdout' | 'stderr') => {
      push(stream, ordinaryLine(rng));
      corpus.grouped++;
    };

    let sinceTrace = rng.int(0, p.traceEvery - 1);
    while (written + pending < share) {
      if (++sinceTrace < p.traceEvery) {
        ordinary(rng.next() < 0.85 ? 'stdout' : 'stderr');
        continue;
      }
      sinceTrace = 0;
      const trace = traces[rng.int(0, traces.length - 1)]!;
      for (const l of trace) {
        push('stderr', l);
        if (rng.chance(0.2)) ordinary('stdout');
      }
      corpus.traces++;
      corpus.traceLines += trace.length;
      corpus.grouped++;
      // Closes the trace on its stream (Node's ends itself; the others wait for a line).
      ordinary('stderr');
    }
    if (pending > 0) flush();
    fs.closeSync(fd);
    corpus.bytes += written;
  }
  return corpus;
}

const PATHS = ['/orders', '/orders/4711', '/cart/items', '/healthz', '/api/v1/catalog/search', '/payments/authorize'];

/** An application line that opens no group in auto mode: what most of a stack-tracing app's log is. */
function ordinaryLine(rng: Rng): string {
  const n = rng.int(1, 99999);
  const path = PATHS[rng.int(0, PATHS.length - 1)]!;
  switch (rng.int(0, 3)) {
    case 0:
      return `2026-11-21 10:00:${String(n % 60).padStart(2, '0')}.${String(n % 1000).padStart(3, '0')}  INFO 1 --- [nio-8080-exec-${n % 9}] c.e.orders.OrderService                  : order ${n} priced, ${n % 17} items, total ${(n / 100).toFixed(2)} EUR`;
    case 1:
      return `10.244.${n % 4}.${n % 250} - - [21/Nov/2026:10:00:${String(n % 60).padStart(2, '0')} +0000] "GET ${path} HTTP/1.1" 200 ${n} "-" "kube-probe/1.31"`;
    case 2:
      return `level=info ts=2026-11-21T10:00:00.${String(n).padStart(6, '0')}Z caller=reconciler.go:${n % 400} msg="reconciled shipment" id=${n} took=${n % 900}ms`;
    default:
      return `{"level":"info","ts":"2026-11-21T10:00:00Z","msg":"request served","path":"${path}","status":200,"duration_ms":${n % 500},"request_id":"${n}"}`;
  }
}
