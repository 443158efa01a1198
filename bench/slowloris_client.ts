/**
 * One slowloris attacker process: `node bench/slowloris_client.ts HOST PORT CONNECTIONS SECONDS [FROM]`,
 * FROM a local address to connect from (127.0.0.2: another client than the prober on 127.0.0.1,
 * as a neighbour pod is another address than the kubelet).
 * Keeps CONNECTIONS sockets open to HOST:PORT, each sending a request line and then one header
 * line every 2 s, never finishing its headers; a socket the server closes is opened again (a
 * real attacker keeps the pressure). Opens at most 500 at once so the kernel's backlog is not the
 * limit being measured. Prints `BENCH_RESULT {...}` (bench/child.ts) with what it achieved: peak
 * sockets open at once, connections made, closed by the server.
 */
import { connect, type Socket } from 'node:net';
import { setPriority } from 'node:os';
import { RESULT_PREFIX } from './child.ts';

const [host = '127.0.0.1', portText = '9464', countText = '1000', secondsText = '60', from] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const until = Date.now() + Number(secondsText) * 1000;
const HEADER_EVERY_MS = 2000;

// A neighbour pod attacks with its own CPU budget, not the agent's: on a machine the two share, the
// attacker runs at the lowest priority so that what is measured is the agent's server, not the
// scheduler's share.
setPriority(19);
const OPENING_AT_ONCE = 500;

let open = 0;
let opening = 0;
let peakOpen = 0;
let made = 0;
let closedByServer = 0;
let failed = 0;
const sockets = new Set<Socket>();

function one(): void {
  if (Date.now() >= until) return;
  opening++;
  let connected = false;
  const s = connect({ host, port, ...(from ? { localAddress: from } : {}) });
  s.setNoDelay(true);
  s.on('connect', () => {
    opening--;
    connected = true;
    made++;
    open++;
    peakOpen = Math.max(peakOpen, open);
    sockets.add(s);
    s.write(`GET /metrics HTTP/1.1\r\nHost: ${host}\r\n`);
  });
  s.on('data', () => {}); // a 408 or 503 the server sends before closing
  s.on('error', () => {
    if (!connected) failed++;
  });
  s.on('close', () => {
    if (connected) {
      open--;
      closedByServer += Date.now() < until ? 1 : 0;
      sockets.delete(s);
    } else opening--;
    setImmediate(fill);
  });
}

function fill(): void {
  while (open + opening < count && opening < OPENING_AT_ONCE && Date.now() < until) one();
}

const trickle = setInterval(() => {
  let i = 0;
  for (const s of sockets) s.write(`X-Slow-${i++ % 1000}: ${'a'.repeat(16)}\r\n`);
}, HEADER_EVERY_MS);
fill();
const refill = setInterval(fill, 100);

setTimeout(() => {
  clearInterval(trickle);
  clearInterval(refill);
  for (const s of sockets) s.destroy();
  const usage = process.resourceUsage();
  const report = {
    lines: made,
    bytes: 0,
    cpuUserSeconds: usage.userCPUTime / 1e6,
    cpuSystemSeconds: usage.systemCPUTime / 1e6,
    peakRssBytes: usage.maxRSS * 1024,
    extra: { peak_open: peakOpen, made, closed_by_server: closedByServer, connect_failed: failed },
  };
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(report)}\n`);
  process.exit(0);
}, Math.max(0, until - Date.now()));
