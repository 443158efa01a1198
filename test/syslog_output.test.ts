import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../agent/config/load.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import type { Attributes, LogRecord } from '../agent/record.ts';
import { RetryableError, type OutputContext } from '../outputs/output.ts';
import { createOutput, outputPlugins } from '../outputs/registry.ts';
import { parseEndpoint, SyslogOutput, syslogConfig, syslogNeeds } from '../outputs/syslog/syslog_output.ts';
import { suiteScratch } from './helpers/child_agent.ts';
import { rejection } from './helpers/output_fixtures.ts';
import { makeTestPki, Rsyslog, rsyslogAvailable, type RsyslogLine, type RsyslogOptions, type TestPki } from './helpers/rsyslog.ts';

/**
 * The `syslog` output as the pipeline drives it (config -> registry -> send/close) against a real
 * rsyslogd: every message rsyslog parsed is compared field by field with what the record must
 * give, worked out here by hand from RFC 5424 rather than by the encoder.
 */

const available = rsyslogAvailable();

// --- the records and what rsyslog must store for them ----------------------------------------

interface Origin {
  resource: Attributes;
  attributes: Attributes;
  hostname: string;
  /** APP-NAME and PROCID with the default templates, MSGID with `{log.iostream}`. */
  appName: string;
  procid: string;
  iostream: string;
  structuredData: string;
  /** A journal PRIORITY, which wins over the OTel severity. */
  priority?: number;
}

const ORIGINS: readonly Origin[] = [
  {
    resource: Object.freeze({ 'k8s.node.name': 'node-1', 'k8s.namespace.name': 'default', 'k8s.pod.name': 'web-1', 'k8s.container.name': 'app' }),
    attributes: Object.freeze({ 'log.iostream': 'stdout' }),
    hostname: 'node-1',
    appName: 'app',
    procid: 'web-1',
    iostream: 'stdout',
    structuredData: '[k8s@32473 namespace="default" pod="web-1" container="app" node="node-1"]',
  },
  {
    resource: Object.freeze({ 'k8s.node.name': 'node-1', 'service.name': 'kubelet' }),
    attributes: Object.freeze({ 'journald._PID': '812', 'journald.PRIORITY': '3' }),
    hostname: 'node-1',
    appName: 'kubelet',
    procid: '812',
    iostream: '-',
    structuredData: '[k8s@32473 node="node-1"]',
    priority: 3,
  },
  {
    // No node name (nor host.name): HOSTNAME is the agent's host.
    resource: Object.freeze({ 'k8s.namespace.name': 'kube-system', 'k8s.pod.name': 'coredns-5d78c9869d-x2x4q', 'k8s.container.name': 'coredns' }),
    attributes: Object.freeze({ 'log.iostream': 'stderr' }),
    hostname: hostname(),
    appName: 'coredns',
    procid: 'coredns-5d78c9869d-x2x4q',
    iostream: 'stderr',
    structuredData: '[k8s@32473 namespace="kube-system" pod="coredns-5d78c9869d-x2x4q" container="coredns"]',
  },
];

const SEVERITIES: readonly { severityNumber?: number; severityText?: string; syslog: number }[] = [
  { syslog: 6 },
  { severityNumber: 1, severityText: 'TRACE', syslog: 7 },
  { severityNumber: 9, severityText: 'INFO', syslog: 6 },
  { severityNumber: 10, syslog: 5 },
  { severityText: 'warning', syslog: 4 },
  { severityNumber: 17, severityText: 'ERROR', syslog: 3 },
  { severityNumber: 21, syslog: 2 },
  { severityText: 'alert', syslog: 1 },
  { severityText: 'EMERG', syslog: 0 },
];

/** Bodies 5 and 6 are longer than any max_message_bytes used here. */
function body(i: number): LogRecord['body'] {
  switch (i % 8) {
    case 0:
      return `plain ascii #${i}`;
    case 1:
      return `ünïcødé ✓ 日本語 😀 #${i}`;
    case 2:
      return { level: 'error', msg: `boom "quoted" ] #${i}`, nested: { n: i, ok: false } };
    case 3:
      return `Exception #${i}\n\tat com.example.App.run(App.java:42)\n`;
    case 4:
      return '';
    case 5:
      return '€'.repeat(4000);
    case 6:
      return 'a' + '😀'.repeat(3000);
    default:
      return `controls: tab\there, esc \u001b[31mred\u001b[0m #${i}`;
  }
}

function makeRecords(n: number): LogRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const origin = ORIGINS[i % ORIGINS.length]!;
    const sev = SEVERITIES[i % SEVERITIES.length]!;
    const r: LogRecord = {
      timestamp: `2026-11-21T10:${String(Math.floor(i / 60)).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}.${String(i * 7_654_321).padStart(9, '0').slice(-9)}Z`,
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

/** The output settings the expectations depend on. */
interface Shape {
  facility: number;
  /** Fixed APP-NAME, or the default template's. */
  appName?: string;
  /** Fixed MSGID, or (undefined) `{log.iostream}`. */
  msgid?: string;
  structuredData: boolean;
  maxMessageBytes: number;
}

function expectedLine(r: LogRecord, i: number, shape: Shape): RsyslogLine {
  const origin = ORIGINS[i % ORIGINS.length]!;
  const severity = origin.priority ?? SEVERITIES[i % SEVERITIES.length]!.syslog;
  const pri = String(shape.facility * 8 + severity);
  const timestamp = r.timestamp.slice(0, 26) + 'Z'; // microseconds: nanoseconds cut, not rounded
  const appName = shape.appName ?? origin.appName;
  const msgid = shape.msgid ?? origin.iostream;
  const structuredData = shape.structuredData ? origin.structuredData : '-';
  const header = `<${pri}>1 ${timestamp} ${origin.hostname} ${appName} ${origin.procid} ${msgid} ${structuredData}`;
  const room = shape.maxMessageBytes - Buffer.byteLength(header) - 1;
  let msg: string;
  switch (i % 8) {
    case 2:
      msg = JSON.stringify(r.body);
      break;
    case 5: // 3 bytes a character: as many whole ones as fit
      msg = '€'.repeat(Math.floor(room / 3));
      break;
    case 6: // 4 bytes an emoji, after one ASCII byte: never half an emoji
      msg = 'a' + '😀'.repeat(Math.floor((room - 1) / 4));
      break;
    default:
      msg = r.body as string;
  }
  return { pri, timestamp, hostname: origin.hostname, appName, procid: origin.procid, msgid, structuredData, msg, rawmsg: msg === '' ? header : `${header} ${msg}` };
}

function expectAllDelivered(lines: readonly RsyslogLine[], records: readonly LogRecord[], shape: Shape): void {
  const wrong: string[] = [];
  for (let i = 0; i < records.length; i++) {
    const want = expectedLine(records[i]!, i, shape);
    const got = lines[i];
    for (const key of Object.keys(want) as (keyof RsyslogLine)[]) {
      if (got?.[key] !== want[key] && wrong.length < 10) {
        wrong.push(`record ${i} ${key}: got ${JSON.stringify(got?.[key])?.slice(0, 200)}, want ${JSON.stringify(want[key]).slice(0, 200)}`);
      }
    }
  }
  expect(wrong).toEqual([]);
  expect(lines.length).toBe(records.length);
}

// --- config ----------------------------------------------------------------------------------

describe('syslog output config', () => {
  const base = { type: 'syslog', inputs: ['containers'] };

  it('takes tcp:// and tls:// endpoints, with the usual ports by default', () => {
    expect(parseEndpoint('tcp://10.0.0.7:1514')).toEqual({ protocol: 'tcp', host: '10.0.0.7', port: 1514 });
    expect(parseEndpoint('tcp://syslog.example.com')).toEqual({ protocol: 'tcp', host: 'syslog.example.com', port: 514 });
    expect(parseEndpoint('tls://syslog.example.com/')).toEqual({ protocol: 'tls', host: 'syslog.example.com', port: 6514 });
    expect(parseEndpoint('tls://[fd00::1]:6514')).toEqual({ protocol: 'tls', host: 'fd00::1', port: 6514 });
    expect(parseEndpoint('udp://h:514')).toBe('expected tcp://host:port or tls://host:port, got "udp://h:514"');
    expect(parseEndpoint('syslog.example.com:514')).toBe('expected tcp://host:port or tls://host:port, got "syslog.example.com:514"');
    expect(parseEndpoint('tcp://h:514/path')).toBe('expected tcp://host:port or tls://host:port, got "tcp://h:514/path"');
    expect(parseEndpoint('tcp://h:70000')).toBe('port 70000 is outside 1-65535');
  });

  it('has defaults for everything but the endpoint', () => {
    expect(syslogConfig.parse({ ...base, endpoint: 'tls://logs.example.com' })).toMatchObject({
      facility: 'user',
      app_name: '{k8s.container.name|service.name}',
      proc_id: '{k8s.pod.name|journald._PID}',
      msg_id: '-',
      structured_data: true,
      sd_id: 'k8s@32473',
      max_message_bytes: 8192,
      connect_timeout: 10_000,
      replay: { max_bytes: 4 * 1024 * 1024, max_age: 10_000 },
      tls: { insecure_skip_verify: false },
      concurrency: 1,
    });
    expect(outputPlugins.syslog.schema).toBe(syslogConfig);
  });

  it('names the key of every mistake', () => {
    const problems = (outputs: string) => {
      try {
        parseConfig(`sources: { c: { type: container_logs } }\noutputs:\n  central: { type: syslog, inputs: [c], ${outputs} }\n`);
      } catch (e) {
        return (e as ConfigError).problems;
      }
      return [];
    };
    expect(problems('endpoint: "udp://h:514"')).toEqual(['outputs.central.endpoint: expected tcp://host:port or tls://host:port, got "udp://h:514"']);
    expect(problems('endpoint: "tcp://h:514", tls: { server_name: h, insecure_skip_verify: true }')).toEqual([
      'outputs.central.tls: tls.server_name, tls.insecure_skip_verify given, but the endpoint is tcp://: use tls://h:514 for TLS',
    ]);
    expect(problems('endpoint: "tcp://h", app_name: "{k8s.pod.name"')).toEqual(['outputs.central.app_name: syslog template "{k8s.pod.name": "{" without "}"']);
    expect(problems('endpoint: "tcp://h", sd_id: "k8s"')).toEqual([
      'outputs.central.sd_id: syslog sd_id: expected name@<enterprise number> (at most 32 characters, no space, =, ] or "), got "k8s"',
    ]);
    expect(problems('endpoint: "tcp://h", concurrency: 4')).toEqual(['outputs.central.concurrency: syslog sends over one connection, in order: concurrency must be 1']);
    expect(problems('endpoint: "tcp://h", facility: 24')[0]).toMatch(/^outputs\.central\.facility: /);
    expect(problems('endpoint: "tcp://h", facility: local8')[0]).toMatch(/^outputs\.central\.facility: /);
    expect(problems('endpoint: "tcp://h", max_message_bytes: lots')).toEqual(['outputs.central.max_message_bytes: expected a size like 8KiB, got "lots"']);
    // Files are the node's business (validate --check, start, reload): the schema stays pure.
    expect(problems('endpoint: "tls://h", tls: { ca_file: /nonexistent/ca.pem }')).toEqual([]);
    expect(syslogNeeds(syslogConfig.parse({ type: 'syslog', inputs: ['c'], endpoint: 'tls://h', tls: { ca_file: '/nonexistent/ca.pem' } }))).toEqual({
      files: [{ key: 'tls.ca_file', path: '/nonexistent/ca.pem' }],
      endpoints: [{ key: 'endpoint', url: 'tls://h:6514', tls: { ca_file: '/nonexistent/ca.pem', insecure_skip_verify: false } }],
    });
    expect(problems('endpoint: "tcp://h", max_message_bytes: 2KiB, facility: 17, structured_data: false')).toEqual([]);
  });
});

// --- against rsyslog -------------------------------------------------------------------------

describe.skipIf(!available)('syslog output against a real rsyslogd', () => {
  const scratch = suiteScratch('kta-syslog-output-', 'KTA_KEEP_SYSLOG_TEST');
  let pki: TestPki;
  const servers: Rsyslog[] = [];
  const outputs: SyslogOutput[] = [];
  const logs: string[] = [];
  const ctx: OutputContext = { name: 'central', metrics: new SelfMetrics('test'), log: (level, msg) => logs.push(`${level} ${msg}`), dataDir: scratch.root };
  scratch.onCleanup(() => {
    for (const s of servers) s.kill();
  });
  beforeAll(() => {
    pki = makeTestPki(join(scratch.root, 'pki'));
  });
  afterEach(async () => {
    await Promise.all(outputs.splice(0).map((o) => o.close()));
    for (const s of servers.splice(0)) await s.stop('SIGKILL');
    logs.length = 0;
  });

  async function rsyslog(name: string, opts: Partial<RsyslogOptions> = {}): Promise<Rsyslog> {
    const server = new Rsyslog({ dir: join(scratch.root, name), ...opts });
    servers.push(server);
    await server.start();
    return server;
  }

  /** Through the config schema and the registry, as the agent makes it. */
  function output(config: Record<string, unknown>): SyslogOutput {
    const o = createOutput(syslogConfig.parse({ type: 'syslog', inputs: ['containers'], ...config }), ctx);
    expect(o).toBeInstanceOf(SyslogOutput);
    outputs.push(o as SyslogOutput);
    return o as SyslogOutput;
  }

  const serverTls = () => ({ caFile: pki.caFile, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile });
  const signal = () => new AbortController().signal;

  async function sendAll(o: SyslogOutput, records: readonly LogRecord[], per: number): Promise<number> {
    let bytes = 0;
    for (let i = 0; i < records.length; i += per) bytes += (await o.send(records.slice(i, i + per), signal())).bytes;
    return bytes;
  }

  it('TCP: every field of every record as rsyslog parsed it; a body over max_message_bytes is cut, not split into junk', async () => {
    // rsyslog's limit and the output's agree, as they should in a real setup.
    const server = await rsyslog('tcp', { maxMessageSize: '2k' });
    const records = makeRecords(144); // every origin x severity x body, twice
    const o = output({ endpoint: `tcp://127.0.0.1:${server.port}`, facility: 'local4', msg_id: '{log.iostream}', max_message_bytes: '2KiB' });
    const bytes = await sendAll(o, records, 50);
    await o.close();
    const lines = await server.waitForLines(records.length);
    await new Promise((r) => setTimeout(r, 300)); // anything rsyslog would split off a too-long frame comes after
    expectAllDelivered(server.lines(), records, { facility: 20, structuredData: true, maxMessageBytes: 2048 });
    // The bytes reported are the octet-counted frames: each message plus "<length> ".
    expect(bytes).toBe(lines.reduce((n, l) => n + Buffer.byteLength(l.rawmsg) + `${Buffer.byteLength(l.rawmsg)} `.length, 0));
    expect(logs.filter((l) => l.includes('max_message_bytes'))).toEqual([
      'warn output central: a record\'s body was cut to fit max_message_bytes (2048); further cuts are not logged (telemetry_agent_output_truncated_records_total counts them)',
    ]);
    // A cut message fills the limit up to a character boundary; no uncut one comes near it.
    const cut = lines.filter((l) => Buffer.byteLength(l.rawmsg) > 2040).length;
    expect(cut).toBeGreaterThan(0);
    expect((await ctx.metrics.outputTruncatedRecords.get()).values.find((v) => v.labels.output === 'central')?.value).toBe(cut);
  });

  it('TLS: every field of every record, with a numeric facility, fixed APP-NAME and MSGID, no structured data', async () => {
    const server = await rsyslog('tls', { tls: serverTls() });
    const records = makeRecords(72);
    const o = output({
      endpoint: `tls://127.0.0.1:${server.port}`,
      tls: { ca_file: pki.caFile },
      facility: 10,
      app_name: 'kube-agent',
      msg_id: 'LOG',
      structured_data: false,
    });
    await sendAll(o, records, 24);
    await o.close();
    expectAllDelivered(await server.waitForLines(records.length), records, { facility: 10, appName: 'kube-agent', msgid: 'LOG', structuredData: false, maxMessageBytes: 8192 });
  });

  it('TLS: an untrusted or misnamed server certificate is a RetryableError that says what to set; nothing is delivered', async () => {
    const server = await rsyslog('tls-untrusted', { tls: serverTls() });
    const records = makeRecords(3);
    const endpoint = `tls://127.0.0.1:${server.port}`;

    const otherCa = await rejection(output({ endpoint, tls: { ca_file: pki.otherCaFile } }).send(records, signal()));
    expect(otherCa).toBeInstanceOf(RetryableError);
    expect(otherCa.message).toBe(
      `output central: syslog ${endpoint}: server certificate not trusted: unable to verify the first certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE); it is not signed by the CA in tls.ca_file (${pki.otherCaFile})`,
    );

    // No ca_file: Node's bundled public roots, which did not sign a private CA's certificate.
    const noCa = await rejection(output({ endpoint }).send(records, signal()));
    expect(noCa).toBeInstanceOf(RetryableError);
    expect(noCa.message).toBe(
      `output central: syslog ${endpoint}: server certificate not trusted: unable to verify the first certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE); set tls.ca_file to the CA that signed it`,
    );

    const wrongName = await rejection(output({ endpoint, tls: { ca_file: pki.caFile, server_name: 'syslog.example.com' } }).send(records, signal()));
    expect(wrongName).toBeInstanceOf(RetryableError);
    expect(wrongName.message).toMatch(
      new RegExp(
        `^output central: syslog tls://127\\.0\\.0\\.1:${server.port}: server certificate does not match the name: .*syslog\\.example\\.com.*; use a host name the certificate lists in endpoint, or set tls\\.server_name to one$`,
      ),
    );

    await new Promise((r) => setTimeout(r, 300));
    expect(server.lines()).toEqual([]);

    // insecure_skip_verify: encrypted, not verified, delivered.
    const insecure = output({ endpoint, tls: { insecure_skip_verify: true } });
    await insecure.send(records, signal());
    await insecure.close();
    expectAllDelivered(await server.waitForLines(3), records, { facility: 1, msgid: '-', structuredData: true, maxMessageBytes: 8192 });
  });

  it('TLS: a server that requires a client certificate: without one a RetryableError pointing at tls.cert_file, with one delivered', async () => {
    const server = await rsyslog('mtls', { tls: { ...serverTls(), authMode: 'x509/certvalid' } });
    const records = makeRecords(9);
    const endpoint = `tls://127.0.0.1:${server.port}`;
    const anonymous = await rejection(output({ endpoint, tls: { ca_file: pki.caFile } }).send(records, signal()));
    expect(anonymous).toBeInstanceOf(RetryableError);
    expect(anonymous.message).toMatch(
      new RegExp(
        `^output central: syslog tls://127\\.0\\.0\\.1:${server.port}: the server closed the connection right after the TLS handshake: it may require a client certificate, or not accept the one given( \\(.*\\))?; if it requires a client certificate, set tls\\.cert_file and tls\\.key_file$`,
      ),
    );
    const o = output({ endpoint, tls: { ca_file: pki.caFile, cert_file: pki.clientCertFile, key_file: pki.clientKeyFile } });
    await o.send(records, signal());
    await o.close();
    expectAllDelivered(await server.waitForLines(9), records, { facility: 1, msgid: '-', structuredData: true, maxMessageBytes: 8192 });
  });

  it('rsyslog down: a RetryableError; the same batch sent again once it is back is delivered, once', async () => {
    const server = await rsyslog('down');
    await server.stop();
    const records = makeRecords(16);
    const o = output({ endpoint: `tcp://127.0.0.1:${server.port}`, msg_id: '{log.iostream}' });
    const err = await rejection(o.send(records, signal()));
    expect(err).toBeInstanceOf(RetryableError);
    expect(err.message).toBe(`output central: syslog tcp://127.0.0.1:${server.port}: cannot connect: connect ECONNREFUSED 127.0.0.1:${server.port}`);
    // Still down: the retry fails the same way (the pipeline paces retries; the output does not wait).
    await expect(o.send(records, signal())).rejects.toThrow(RetryableError);

    await server.start();
    await o.send(records, signal());
    await o.close();
    const lines = await server.waitForLines(16);
    await new Promise((r) => setTimeout(r, 300));
    expectAllDelivered(server.lines(), records, { facility: 1, structuredData: true, maxMessageBytes: 8192 });
    expect(lines.length).toBe(16);
    expect(logs).toContain(`warn output central: syslog tcp://127.0.0.1:${server.port}: cannot connect: connect ECONNREFUSED 127.0.0.1:${server.port}; retrying with backoff`);
    expect(logs).toContain(`info output central: syslog tcp://127.0.0.1:${server.port}: sending again after 2 failure(s)`);
  });

  it('the AbortSignal ends a send that rsyslog does not read: a RetryableError, and the send returns', async () => {
    const server = await rsyslog('stalled');
    await server.pause();
    const records = makeRecords(8).map((r) => ({ ...r, body: 'z'.repeat(200_000) }));
    const o = output({ endpoint: `tcp://127.0.0.1:${server.port}`, max_message_bytes: 0 });
    const ac = new AbortController();
    // 64 MB do not fit in socket buffers: the send waits for a reader that never comes.
    const sending = rejection(o.send(Array.from({ length: 40 }, () => records).flat(), ac.signal));
    await new Promise((r) => setTimeout(r, 300));
    ac.abort();
    const err = await sending;
    expect(err).toBeInstanceOf(RetryableError);
    expect(err.message).toBe(`output central: syslog tcp://127.0.0.1:${server.port}: send aborted`);
  });
});
