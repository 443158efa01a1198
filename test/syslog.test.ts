import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Attributes, LogRecord } from '../agent/record.ts';
import { Rfc5424Encoder } from '../outputs/syslog/rfc5424.ts';
import { SyslogTransport, SyslogTransportError, type SyslogTransportOptions } from '../outputs/syslog/transport.ts';
import { suiteScratch, waitFor } from './helpers/child_agent.ts';
import { makeTestPki, Rsyslog, rsyslogAvailable, type RsyslogLine, type TestPki } from './helpers/rsyslog.ts';

/**
 * The syslog output's encoder and transport against a real rsyslogd (imtcp, octet-counted
 * framing; TLS through its GnuTLS driver): every message rsyslog stored is compared, field by
 * field and as raw bytes, with the record it came from.
 */

const available = rsyslogAvailable();

// --- the records -----------------------------------------------------------------------------

/** A resource and what rsyslog must report for it (computed by hand, not by the encoder). */
interface Origin {
  resource: Attributes;
  attributes: Attributes;
  hostname: string;
  appName: string;
  procid: string;
  structuredData: string;
}

const ORIGINS: readonly Origin[] = [
  {
    resource: Object.freeze({ 'k8s.node.name': 'node-1', 'k8s.namespace.name': 'default', 'k8s.pod.name': 'web-1', 'k8s.container.name': 'app' }),
    attributes: Object.freeze({ 'log.iostream': 'stdout' }),
    hostname: 'node-1',
    appName: 'app',
    procid: 'web-1',
    structuredData: '[k8s@32473 namespace="default" pod="web-1" container="app" node="node-1"]',
  },
  {
    // Not valid Kubernetes names, but what the SD-PARAM escaping and header cuts are for.
    resource: Object.freeze({
      'k8s.node.name': 'node-2.example.com',
      'k8s.namespace.name': 'we"ird\\ns]',
      'k8s.pod.name': 'pod-ü',
      'k8s.container.name': 'c'.repeat(63),
    }),
    attributes: Object.freeze({ 'log.iostream': 'stderr' }),
    hostname: 'node-2.example.com',
    appName: 'c'.repeat(48),
    procid: 'pod-_',
    structuredData: `[k8s@32473 namespace="we\\"ird\\\\ns\\]" pod="pod-ü" container="${'c'.repeat(63)}" node="node-2.example.com"]`,
  },
  { resource: Object.freeze({}), attributes: Object.freeze({}), hostname: '-', appName: '-', procid: '-', structuredData: '-' },
  {
    resource: Object.freeze({ 'k8s.node.name': 'node-1', 'host.name': 'node-1.lan', 'service.name': 'kubelet' }),
    attributes: Object.freeze({ 'journald._PID': '812', 'journald.PRIORITY': '3' }),
    hostname: 'node-1',
    appName: 'kubelet',
    procid: '812',
    structuredData: '[k8s@32473 node="node-1"]',
  },
];

/** Severity fields and the syslog severity they must give. */
const SEVERITIES: readonly { severityNumber?: number; severityText?: string; syslog: number }[] = [
  { syslog: 6 },
  { severityNumber: 5, severityText: 'DEBUG', syslog: 7 },
  { severityNumber: 9, syslog: 6 },
  { severityNumber: 10, severityText: 'INFO2', syslog: 5 },
  { severityText: 'warning', syslog: 4 },
  { severityNumber: 17, syslog: 3 },
  { severityNumber: 21, severityText: 'FATAL', syslog: 2 },
  { severityText: 'alert', syslog: 1 },
  { severityText: 'emerg', syslog: 0 },
];

const LONG = 'Lorem ipsum dolor sit amet, «ünïcødé» ✓ 日本語 😀 '.repeat(400);

/** Bodies of every kind the output meets, each tagged with its index so lines can be told apart. */
function body(i: number): LogRecord['body'] {
  const tag = `#${i}`;
  switch (i % 12) {
    case 0:
      return `plain ascii line ${tag}`;
    case 1:
      return `ünïcødé ✓ 日本語 😀 ${tag} \u2028 sep`;
    case 2:
      return `say "hi" and \\ leave ${tag} "`;
    case 3:
      return `]]] [[[ [k8s@32473 pod="x"] ] ${tag}`;
    case 4:
      return `${tag} ${LONG.slice(0, 1000 + ((i * 7919) % LONG.length))}`;
    case 5:
      return { level: 'error', msg: `failed ${tag}\nwith "detail" ]`, nested: { list: [1, 'two', null], ok: false } };
    case 6:
      return `Exception in thread "main" java.lang.IllegalStateException: ${tag}\n\tat com.example.App.run(App.java:42)\n\tat com.example.App.main(App.java:7)\n`;
    case 7:
      return i % 24 === 7 ? '' : `   leading spaces and trailing   ${tag}   `;
    case 8:
      return ['array', tag, { k: 'v' }];
    case 9:
      return `controls: tab\there, bell \u0007, esc \u001b[31mred\u001b[0m, CRLF\r\n, del \u007f ${tag}`;
    case 10:
      return `{"looks":"like json","but":"is a string"} ${tag}`;
    default:
      return `${tag} ${'x'.repeat(i)}`;
  }
}

function makeRecords(n: number): LogRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const origin = ORIGINS[i % ORIGINS.length]!;
    const sev = SEVERITIES[i % SEVERITIES.length]!;
    const ns = String(i * 1_000_003).padStart(9, '0').slice(-9);
    const r: LogRecord = {
      timestamp: `2026-11-21T10:${String(Math.floor(i / 60) % 60).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}.${ns}Z`,
      observedTimestamp: '2026-11-21T11:00:00.000000000Z',
      body: body(i),
      attributes: origin.attributes,
      resource: origin.resource,
    };
    if (sev.severityNumber !== undefined) r.severityNumber = sev.severityNumber;
    if (sev.severityText !== undefined) r.severityText = sev.severityText;
    return r;
  });
}

/** What rsyslog must have stored for record i: fields as RFC 5424 defines them, worked out from the test's tables. */
function expectedLine(r: LogRecord, i: number, facility: number): RsyslogLine {
  const origin = ORIGINS[i % ORIGINS.length]!;
  // A journal PRIORITY wins over the OTel fields.
  const severity = origin.attributes['journald.PRIORITY'] !== undefined ? Number(origin.attributes['journald.PRIORITY']) : SEVERITIES[i % SEVERITIES.length]!.syslog;
  // UTF-8 cannot carry a lone surrogate (a long body cut mid-emoji has one): it arrives as U+FFFD.
  const msg = (typeof r.body === 'string' ? r.body : JSON.stringify(r.body)).toWellFormed();
  const header = [
    `<${facility * 8 + severity}>1`,
    r.timestamp.slice(0, 26) + 'Z',
    origin.hostname,
    origin.appName,
    origin.procid,
    '-',
    origin.structuredData,
  ].join(' ');
  return {
    pri: String(facility * 8 + severity),
    timestamp: r.timestamp.slice(0, 26) + 'Z',
    hostname: origin.hostname,
    appName: origin.appName,
    procid: origin.procid,
    msgid: '-',
    structuredData: origin.structuredData,
    msg,
    rawmsg: msg === '' ? header : `${header} ${msg}`,
  };
}

/** Every line equal to its record, in order; a summary of the first differences otherwise. */
function expectAllDelivered(lines: readonly RsyslogLine[], records: readonly LogRecord[], facility: number): void {
  expect(lines.length).toBe(records.length);
  const wrong: string[] = [];
  for (let i = 0; i < records.length; i++) {
    const want = expectedLine(records[i]!, i, facility);
    const got = lines[i]!;
    for (const key of Object.keys(want) as (keyof RsyslogLine)[]) {
      if (got[key] !== want[key] && wrong.length < 10) {
        wrong.push(`record ${i} ${key}: got ${JSON.stringify(got[key]).slice(0, 300)}, want ${JSON.stringify(want[key]).slice(0, 300)}`);
      }
    }
  }
  expect(wrong).toEqual([]);
}

async function sendInBatches(transport: SyslogTransport, messages: readonly (string | Buffer)[], size: number): Promise<void> {
  for (let i = 0; i < messages.length; i += size) await transport.send(messages.slice(i, i + size));
}

// --- the suites ------------------------------------------------------------------------------

describe.skipIf(!available)('syslog output against a real rsyslogd', () => {
  const scratch = suiteScratch('kta-syslog-', 'KTA_KEEP_SYSLOG_TEST');
  let pki: TestPki;
  const servers: Rsyslog[] = [];
  const transports: SyslogTransport[] = [];
  scratch.onCleanup(() => {
    for (const s of servers) s.kill();
  });

  beforeAll(() => {
    pki = makeTestPki(join(scratch.root, 'pki'));
  });

  async function rsyslog(name: string, opts: Partial<ConstructorParameters<typeof Rsyslog>[0]> = {}): Promise<Rsyslog> {
    const server = new Rsyslog({ dir: join(scratch.root, name), ...opts });
    servers.push(server);
    await server.start();
    return server;
  }

  function transport(server: Rsyslog, opts: Partial<SyslogTransportOptions> = {}): SyslogTransport {
    const t = new SyslogTransport({ host: '127.0.0.1', port: server.port, backoff: { initialMs: 20, maxMs: 200 }, connectTimeoutMs: 5000, ...opts });
    transports.push(t);
    return t;
  }

  const serverTls = () => ({ caFile: pki.caFile, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile });

  it('TCP: 1,000 varied records arrive, every field and byte as sent', async () => {
    const server = await rsyslog('tcp');
    const records = makeRecords(1000);
    const encoder = new Rfc5424Encoder({ maxMessageBytes: 0 });
    const t = transport(server);
    await sendInBatches(t, records.map((r) => encoder.encode(r)), 37);
    expect(await t.close()).toBe(true);
    expectAllDelivered(await server.waitForLines(1000), records, 1);
  });

  it('TLS: 1,000 varied records arrive, every field and byte as sent (Buffers, facility local0)', async () => {
    const server = await rsyslog('tls', { tls: serverTls() });
    const records = makeRecords(1000);
    const encoder = new Rfc5424Encoder({ facility: 'local0', maxMessageBytes: 0 });
    const t = transport(server, { tls: { caFile: pki.caFile } });
    await sendInBatches(t, records.map((r) => Buffer.from(encoder.encode(r))), 100);
    expect(await t.close()).toBe(true);
    expectAllDelivered(await server.waitForLines(1000), records, 16);
    expect(t.endpoint).toBe(`tls://127.0.0.1:${server.port}`);
  });

  it('TLS: a server certificate that does not verify is a clear error, and nothing is sent', async () => {
    const server = await rsyslog('tls-untrusted', { tls: serverTls() });
    const records = makeRecords(5);
    const encoder = new Rfc5424Encoder({ maxMessageBytes: 0 });
    const messages = records.map((r) => encoder.encode(r));

    // Trusting another CA only.
    const untrusted = transport(server, { tls: { caFile: pki.otherCaFile } });
    const err = await untrusted.send(messages).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SyslogTransportError);
    const e = err as SyslogTransportError;
    expect(e.kind).toBe('tls');
    expect(e.code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(e.message).toBe(
      `syslog tls://127.0.0.1:${server.port}: server certificate not trusted: unable to verify the first certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE)`,
    );
    // The retry fails the same way, after the backoff.
    await expect(untrusted.send(messages)).rejects.toMatchObject({ kind: 'tls' });

    // The right CA, but a name the certificate does not carry.
    const wrongName = transport(server, { tls: { caFile: pki.caFile, serverName: 'syslog.example.com' } });
    await expect(wrongName.send(messages)).rejects.toThrow(
      new RegExp(`^syslog tls://127\\.0\\.0\\.1:${server.port}: server certificate does not match the name: .*syslog\\.example\\.com`),
    );

    // Nothing was sent: no connection got past the handshake, and rsyslog stored nothing.
    expect(untrusted.stats.connects + wrongName.stats.connects).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    expect(server.lines()).toEqual([]);

    // And the right settings deliver, to show the server was fine.
    const ok = transport(server, { tls: { caFile: pki.caFile, serverName: 'localhost' } });
    await ok.send(messages);
    await ok.close();
    expectAllDelivered(await server.waitForLines(5), records, 1);
  });

  it('TLS: a client certificate is presented when the server requires one (x509/certvalid)', async () => {
    const server = await rsyslog('mtls', { tls: { ...serverTls(), authMode: 'x509/certvalid' } });
    const records = makeRecords(20);
    const encoder = new Rfc5424Encoder({ maxMessageBytes: 0 });
    const messages = records.map((r) => encoder.encode(r));

    // rsyslog lets the TLS 1.3 handshake complete on our side, then finds no certificate and hangs up.
    const anonymous = transport(server, { tls: { caFile: pki.caFile } });
    await expect(anonymous.send(messages)).rejects.toThrow(
      `syslog tls://127.0.0.1:${server.port}: the server closed the connection right after the TLS handshake: it may require a client certificate, or not accept the one given`,
    );
    await expect(anonymous.send(messages)).rejects.toMatchObject({ kind: 'tls' });
    await new Promise((r) => setTimeout(r, 300));
    expect(server.lines()).toEqual([]);

    const withCert = transport(server, { tls: { caFile: pki.caFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile } });
    await withCert.send(messages);
    expect(await withCert.close()).toBe(true);
    expectAllDelivered(await server.waitForLines(20), records, 1);
  });

  it('a body longer than the server accepts is cut by the encoder, not by rsyslog into junk messages', async () => {
    const server = await rsyslog('small', { maxMessageSize: '8k' });
    const encoder = new Rfc5424Encoder(); // maxMessageBytes 8192, rsyslog's default
    const records = makeRecords(3).map((r, i) => ({ ...r, body: i === 1 ? 'ü'.repeat(50_000) : `short ${i}` }));
    const t = transport(server);
    await t.send(records.map((r) => encoder.encode(r)));
    await t.close();
    const lines = await server.waitForLines(3);
    await new Promise((r) => setTimeout(r, 300));
    expect(server.lines().length).toBe(3);
    expect(encoder.truncated).toBe(1);
    expect(Buffer.byteLength(lines[1]!.rawmsg)).toBeLessThanOrEqual(8192);
    expect(Buffer.byteLength(lines[1]!.rawmsg)).toBeGreaterThan(8190);
    expect(lines[1]!.msg).toMatch(/^ü+$/);
    expect([lines[0]!.msg, lines[2]!.msg]).toEqual(['short 0', 'short 2']);
  });

  for (const tls of [false, true]) {
    it(`${tls ? 'TLS' : 'TCP'}: rsyslog stops reading and dies after the last send: close() sends the kept batches to the restarted rsyslog`, async () => {
      // What a loaded machine does by chance to the restart tests below, made certain: every send
      // resolves into the socket buffers of a server that no longer reads, and the connection is
      // reset only when nothing is left to send, so no send fails and only close() can replay.
      const server = await rsyslog(`lost-after-last-${tls ? 'tls' : 'tcp'}`, tls ? { tls: serverTls() } : {});
      const records = makeRecords(24);
      const encoder = new Rfc5424Encoder({ maxMessageBytes: 0 });
      const messages = records.map((r) => encoder.encode(r));
      const t = transport(server, tls ? { tls: { caFile: pki.caFile } } : {});
      await sendInBatches(t, messages.slice(0, 12), 4);
      await server.waitForLines(12);
      await server.pause();
      // About 22 KB: fits in the socket buffers of the stopped reader, so every send resolves.
      await sendInBatches(t, messages.slice(12), 4);
      await server.stop('SIGKILL'); // unread data: the kernel resets the connection
      await waitFor('the reset seen by the transport', () => !t.connected, 5000);
      await server.start();
      expect(await t.close()).toBe(true);

      // The first 12 were stored before the pause; the replay sends the whole kept window again.
      const lines = await server.waitForLines(12 + 24);
      expectAllDelivered(lines.slice(0, 12), records.slice(0, 12), 1);
      expectAllDelivered(lines.slice(12), records, 1);
      expect(t.stats).toEqual({ connects: 2, losses: 1, replayedBatches: 6, replayedMessages: 24 });
    });
  }

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    for (const tls of [false, true]) {
      it(`${tls ? 'TLS' : 'TCP'}: rsyslog stopped (${signal}) mid-stream and restarted: reconnect, retry, nothing lost, duplicates bounded`, async () => {
        const server = await rsyslog(`restart-${signal}-${tls ? 'tls' : 'tcp'}`, tls ? { tls: serverTls() } : {});
        const encoder = new Rfc5424Encoder();
        const BATCHES = 300;
        const PER = 20;
        const want = (b: number, m: number) => `batch ${b} message ${m} ${'p'.repeat(200)}`;
        const warnings: string[] = [];
        const log = (level: string, msg: string) => {
          if (level === 'warn') warnings.push(msg);
        };
        const t = transport(server, tls ? { tls: { caFile: pki.caFile }, log } : { log });
        const failures: SyslogTransportError[] = [];
        let restarted: Promise<void> | undefined;
        for (let b = 0; b < BATCHES; b++) {
          const messages = Array.from({ length: PER }, (_, m) =>
            encoder.encode({
              timestamp: '2026-11-21T10:00:00.000000000Z',
              observedTimestamp: '2026-11-21T10:00:00.000000000Z',
              body: want(b, m),
              attributes: ORIGINS[0]!.attributes,
              resource: ORIGINS[0]!.resource,
            }),
          );
          if (b === 100) {
            restarted = (async () => {
              await server.stop(signal);
              await new Promise((r) => setTimeout(r, 300));
              await server.start();
            })();
          }
          // The caller's side: the same batch again until it is accepted.
          for (;;) {
            try {
              await t.send(messages);
              break;
            } catch (err) {
              expect(err).toBeInstanceOf(SyslogTransportError);
              failures.push(err as SyslogTransportError);
              await new Promise((r) => setTimeout(r, 50));
            }
          }
        }
        await restarted;
        expect(await t.close()).toBe(true);

        // Every message is there: wait until rsyslog has stored them all (or give up and list what is missing).
        let counts = new Map<string, number>();
        const missing = () => {
          counts = new Map();
          for (const line of server.lines()) counts.set(line.msg, (counts.get(line.msg) ?? 0) + 1);
          const out: string[] = [];
          for (let b = 0; b < BATCHES; b++) for (let m = 0; m < PER; m++) if (!counts.has(want(b, m))) out.push(`${b}/${m}`);
          return out;
        };
        await waitFor('every message in rsyslog', () => missing().length === 0, 20_000).catch(() => {});
        expect(missing()).toEqual([]);

        // The loss was seen and said what happened; the transport reconnected. No send needs to
        // have failed: rsyslog may stop reading with every remaining batch fitting in the socket
        // buffers, and reset the connection only after the last send (then close() replays).
        const endpoint = `${tls ? 'tls' : 'tcp'}://127.0.0.1:${server.port}`;
        expect(warnings.filter((w) => w.startsWith(`syslog ${endpoint}: connection `))).not.toEqual([]);
        for (const f of failures) {
          expect(['connection', 'connect', 'tls']).toContain(f.kind);
          expect(f.message.startsWith(`syslog ${endpoint}: `)).toBe(true);
        }
        expect(t.stats.losses).toBeGreaterThanOrEqual(1);
        expect(t.stats.connects).toBeGreaterThanOrEqual(2);
        expect(t.stats.replayedBatches).toBeGreaterThan(0);

        // Duplicates come only from what was written twice: the replayed window and the retried batches.
        let duplicates = 0;
        for (const n of counts.values()) duplicates += n - 1;
        expect(duplicates).toBeLessThanOrEqual(t.stats.replayedMessages + failures.length * PER);
      });
    }
  }
});
