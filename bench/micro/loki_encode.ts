/**
 * Micro-benchmark of the loki output's send path without the network: realistic records (an
 * NDJSON file the file output wrote, e.g. `BENCH_KEEP=1 BENCH_ONLY=file npm run bench -- outputs`
 * then `<kept>/file-1/out.ndjson`) are re-read with attribute and resource objects shared by
 * identity as the agent shares them, cut into batches, and sent through LokiOutput.send to a
 * client that answers 204 at once. Prints µs of CPU per record for the whole send, and for
 * snappyjs and the output's compressor alone on the same raw protobuf bodies.
 *
 *   node bench/micro/loki_encode.ts FILE.ndjson [--batch 3119] [--rounds 5] [--encoding protobuf|json] [--line-format json|body] [--compressor none]
 *   node --cpu-prof bench/micro/loki_encode.ts FILE.ndjson
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { SelfMetrics } from '../../agent/metrics.ts';
import type { Attributes, LogRecord } from '../../agent/record.ts';
import type { HttpRequest, HttpResponse } from '../../outputs/http_client.ts';
import { blockCompressor, LokiOutput, lokiConfig } from '../../outputs/loki.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    batch: { type: 'string', default: '3119' },
    rounds: { type: 'string', default: '5' },
    encoding: { type: 'string', default: 'protobuf' },
    'line-format': { type: 'string', default: 'json' },
    /** `none`: the output's compressor returns its input, to see the encoding alone. */
    compressor: { type: 'string', default: 'output' },
  },
});
const file = positionals[0];
if (!file) throw new Error('usage: loki_encode.ts FILE.ndjson');
const batchSize = Number(values.batch);
const rounds = Number(values.rounds);

// Records as the agent holds them: one attributes and one resource object per file and stream.
const shared = new Map<string, Attributes>();
const intern = (a: Attributes): Attributes => {
  const key = JSON.stringify(a);
  let o = shared.get(key);
  if (o === undefined) shared.set(key, (o = Object.freeze(a)));
  return o;
};
const records: LogRecord[] = [];
for (const line of readFileSync(file, 'utf8').split('\n')) {
  if (!line) continue;
  const j = JSON.parse(line) as Record<string, unknown>;
  const r: LogRecord = { timestamp: j.timestamp as string, observedTimestamp: j.observed_timestamp as string, body: j.body as LogRecord['body'], attributes: intern(j.attributes as Attributes), resource: intern(j.resource as Attributes) };
  if (j.severity_text !== undefined) r.severityText = j.severity_text as string;
  if (j.severity_number !== undefined) r.severityNumber = j.severity_number as number;
  records.push(r);
}
const batches: LogRecord[][] = [];
for (let i = 0; i < records.length; i += batchSize) batches.push(records.slice(i, i + batchSize));
console.log(`${records.length} records, ${shared.size} shared objects, ${batches.length} batches of ${batchSize}`);

let bodyBytes = 0;
const bodies: Buffer[] = [];
const client = {
  request(req: HttpRequest): Promise<HttpResponse> {
    const b = req.body as Buffer;
    bodyBytes += b.length;
    if (bodies.length < batches.length) bodies.push(b);
    return Promise.resolve({ status: 204, headers: {}, body: Buffer.alloc(0) });
  },
  close: () => Promise.resolve(),
};
const config = lokiConfig.parse({ type: 'loki', inputs: ['x'], endpoint: 'http://127.0.0.1:1', encoding: values.encoding, line_format: values['line-format'] });
const out = new LokiOutput(config, { name: 'bench', metrics: new SelfMetrics('bench'), log: () => {}, dataDir: '/tmp' });
(out as unknown as { client: typeof client }).client = client;

const outputCompressor = blockCompressor();
const compress = outputCompressor.compress;
if (values.compressor === 'none') (outputCompressor as { compress: (raw: Buffer) => Buffer }).compress = (raw) => raw.subarray(0, 1);
const signal = new AbortController().signal;
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000; // ms
};
const perRecord: number[] = [];
for (let round = 0; round <= rounds; round++) {
  bodyBytes = 0;
  const t0 = cpu();
  for (const b of batches) await out.send(b, signal);
  const ms = cpu() - t0;
  if (round > 0) perRecord.push((ms * 1000) / records.length);
  // Round 0 warms up (and fills the WeakMap caches, as a long-running agent has them filled).
  console.log(`${round === 0 ? 'warm-up' : `round ${round}`}: ${((ms * 1000) / records.length).toFixed(2)} µs CPU/record, ${(bodyBytes / records.length).toFixed(0)} B/record sent`);
}
perRecord.sort((a, b) => a - b);
console.log(`send: median ${perRecord[perRecord.length >> 1]!.toFixed(2)} µs CPU/record, best ${perRecord[0]!.toFixed(2)}`);

if (values.encoding === 'protobuf' && values.compressor !== 'none') {
  // The compressors alone, on this run's raw PushRequests.
  const snappyjs = createRequire(import.meta.url)('snappyjs') as { uncompress(b: Uint8Array): Uint8Array; compress(b: Uint8Array): Uint8Array };
  const raws = bodies.map((b) => Buffer.from(snappyjs.uncompress(b)));
  const rawBytes = raws.reduce((s, r) => s + r.length, 0);
  const compressors: [string, (raw: Buffer) => unknown][] = [
    ['snappyjs', (raw) => snappyjs.compress(raw)],
    [`the output's (${outputCompressor.name})`, compress],
  ];
  for (let round = 0; round < 3; round++) {
    for (const [name, compress] of compressors) {
      const t0 = cpu();
      for (const r of raws) compress(r);
      const ms = cpu() - t0;
      console.log(`${name} alone: ${((ms * 1000) / records.length).toFixed(2)} µs CPU/record (${(rawBytes / records.length).toFixed(0)} raw B/record, ${(rawBytes / 1048576 / (ms / 1000)).toFixed(0)} MiB/s)`);
    }
  }
}
