/**
 * Minimal receivers for the output benchmarks, one port per protocol, in a process of their own so
 * that what the agent's /proc shows is the agent's alone. Each reads every request to its end and
 * gives the protocol's success answer without decoding the body: decoding would measure the sink,
 * and the benchmarks check delivery through the agent's sent counter (the tests check the bytes).
 *
 *   node bench/output_sinks.ts PROTOCOL=PORT ...     (PORT 0: any free port)
 *
 * Protocols: http (200), loki (204), otlp (200, an empty ExportLogsServiceResponse in the request's
 * content type), elasticsearch (bulk `{"took":1,"errors":false,"items":[]}`), splunk_hec
 * (`{"text":"Success","code":0}`), syslog (TCP: read and discard).
 *
 * Prints `SINK_READY {"http":PORT,...}` once every port listens. Writing `stats` to its stdin prints
 * `SINK_STATS {...}` (bytes, requests and connections per protocol since start, and the sink's CPU);
 * so do SIGTERM (then it exits 0) and the end of stdin (the parent went away).
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { createInterface } from 'node:readline';

export const SINK_READY_PREFIX = 'SINK_READY ';
export const SINK_STATS_PREFIX = 'SINK_STATS ';

export const SINK_PROTOCOLS = ['http', 'loki', 'otlp', 'elasticsearch', 'splunk_hec', 'syslog'] as const;
export type SinkProtocol = (typeof SINK_PROTOCOLS)[number];

export interface ProtocolStats {
  bytes: number;
  requests: number;
  connections: number;
}

export interface SinkStats {
  protocols: Partial<Record<SinkProtocol, ProtocolStats>>;
  cpuSeconds: number;
}

type Answer = (req: IncomingMessage, res: ServerResponse) => void;

const json = (status: number, body: string): Answer => {
  const buf = Buffer.from(body);
  const headers = { 'content-type': 'application/json', 'content-length': String(buf.length) };
  return (_req, res) => {
    res.writeHead(status, headers);
    res.end(buf);
  };
};

const empty = (status: number): Answer => (_req, res) => {
  res.writeHead(status, { 'content-length': '0' });
  res.end();
};

/**
 * OTLP/HTTP: "the server MUST respond with ... the same Content-Type as the request"; a full
 * success is an empty ExportLogsServiceResponse, zero bytes in binary protobuf and `{}` in JSON
 * (https://opentelemetry.io/docs/specs/otlp/#otlphttp-response).
 */
const otlpAnswer: Answer = (req, res) => {
  const type = req.headers['content-type'] ?? 'application/x-protobuf';
  const body = type.startsWith('application/json') ? '{}' : '';
  res.writeHead(200, { 'content-type': type, 'content-length': String(body.length) });
  res.end(body);
};

const ANSWERS: Record<Exclude<SinkProtocol, 'syslog'>, Answer> = {
  http: empty(200),
  // Loki's push endpoint answers 204 No Content on success.
  loki: empty(204),
  otlp: otlpAnswer,
  elasticsearch: json(200, '{"took":1,"errors":false,"items":[]}'),
  splunk_hec: json(200, '{"text":"Success","code":0}'),
};

function parseArgs(argv: string[]): Map<SinkProtocol, number> {
  const wanted = new Map<SinkProtocol, number>();
  for (const arg of argv) {
    const [name, port] = arg.split('=');
    if (!SINK_PROTOCOLS.includes(name as SinkProtocol) || !/^\d+$/.test(port ?? '')) {
      console.error(`bad argument ${JSON.stringify(arg)}: expected PROTOCOL=PORT, PROTOCOL one of ${SINK_PROTOCOLS.join(', ')}`);
      process.exit(2);
    }
    wanted.set(name as SinkProtocol, Number(port));
  }
  if (wanted.size === 0) {
    console.error('usage: output_sinks.ts PROTOCOL=PORT ...');
    process.exit(2);
  }
  return wanted;
}

function listen(server: HttpServer | TcpServer, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
}

async function main(): Promise<void> {
  const wanted = parseArgs(process.argv.slice(2));
  const stats: Partial<Record<SinkProtocol, ProtocolStats>> = {};
  const ports: Partial<Record<SinkProtocol, number>> = {};
  const servers: (HttpServer | TcpServer)[] = [];

  for (const [protocol, port] of wanted) {
    const s: ProtocolStats = (stats[protocol] = { bytes: 0, requests: 0, connections: 0 });
    let server: HttpServer | TcpServer;
    if (protocol === 'syslog') {
      server = createTcpServer((socket) => {
        s.connections++;
        socket.on('data', (b: Buffer) => (s.bytes += b.length));
        socket.on('error', () => {});
      });
    } else {
      const answer = ANSWERS[protocol];
      const http = createHttpServer((req, res) => {
        s.requests++;
        req.on('data', (b: Buffer) => (s.bytes += b.length));
        req.on('end', () => answer(req, res));
        req.on('error', () => {});
      });
      // The agent keeps its connections for the whole run; a request may wait long in its buffer.
      http.keepAliveTimeout = 300_000;
      http.headersTimeout = 310_000;
      http.requestTimeout = 0;
      http.on('connection', () => s.connections++);
      server = http;
    }
    servers.push(server);
    ports[protocol] = await listen(server, port);
  }

  const report = () => {
    const cpu = process.cpuUsage();
    const out: SinkStats = { protocols: stats, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
    process.stdout.write(`${SINK_STATS_PREFIX}${JSON.stringify(out)}\n`);
  };
  const stop = () => {
    report();
    for (const server of servers) server.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  const commands = createInterface({ input: process.stdin });
  commands.on('line', (line) => {
    if (line.trim() === 'stats') report();
  });
  commands.on('close', stop);
  process.stdout.write(`${SINK_READY_PREFIX}${JSON.stringify(ports)}\n`);
}

await main();
