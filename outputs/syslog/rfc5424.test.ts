import { describe, expect, it } from 'vitest';
import type { LogRecord } from '../../agent/record.ts';
import { recordBuilder } from '../../test/helpers/output_fixtures.ts';
import {
  compileTemplate,
  cutUtf8,
  escapeSdValue,
  facilityCode,
  headerField,
  Rfc5424Encoder,
  syslogSeverity,
  syslogTimestamp,
  validateSdId,
} from './rfc5424.ts';

const resource = Object.freeze({
  'k8s.node.name': 'node-1',
  'k8s.namespace.name': 'default',
  'k8s.pod.name': 'web-1',
  'k8s.pod.uid': '0f1e2d3c-4b5a-4697-8877-000000000001',
  'k8s.container.name': 'app',
  'container.id': '3b5c'.padEnd(64, '0'),
});
const attributes = Object.freeze({ 'log.iostream': 'stdout' });

const record = recordBuilder(resource, attributes);

const SD = '[k8s@32473 namespace="default" pod="web-1" container="app" node="node-1"]';

describe('Rfc5424Encoder', () => {
  const enc = new Rfc5424Encoder();

  it('encodes a container log line', () => {
    expect(enc.encode(record('hello world'))).toBe(`<14>1 2026-11-21T10:00:00.123456Z node-1 app web-1 - ${SD} hello world`);
  });

  it('leaves MSG and the space before it out for an empty body', () => {
    expect(enc.encode(record(''))).toBe(`<14>1 2026-11-21T10:00:00.123456Z node-1 app web-1 - ${SD}`);
  });

  it('writes an object or array body as JSON', () => {
    expect(enc.encode(record({ level: 'info', msg: 'a "q"', n: 1 }))).toBe(
      `<14>1 2026-11-21T10:00:00.123456Z node-1 app web-1 - ${SD} {"level":"info","msg":"a \\"q\\"","n":1}`,
    );
    expect(enc.encode(record([1, 'two']))).toBe(`<14>1 2026-11-21T10:00:00.123456Z node-1 app web-1 - ${SD} [1,"two"]`);
  });

  it('keeps unicode, line feeds and brackets in MSG as they are (octet counting delimits it)', () => {
    const body = 'ünïcødé ✓ 日本語 😀\nat Foo.bar(Foo.java:1)\n\t] "quoted" \\ back';
    expect(enc.encode(record(body))).toBe(`<14>1 2026-11-21T10:00:00.123456Z node-1 app web-1 - ${SD} ${body}`);
  });

  it('escapes ", \\ and ] in SD-PARAM values, and keeps their unicode', () => {
    const odd = Object.freeze({ 'k8s.namespace.name': 'ns"1', 'k8s.pod.name': 'p\\od]', 'k8s.container.name': 'ünï' });
    expect(enc.encode(record('x', { resource: odd }))).toBe(
      '<14>1 2026-11-21T10:00:00.123456Z - _n_ p\\od] - [k8s@32473 namespace="ns\\"1" pod="p\\\\od\\]" container="ünï"] x',
    );
  });

  it('writes NILVALUE for HOSTNAME, APP-NAME, PROCID and STRUCTURED-DATA when the resource has nothing', () => {
    expect(enc.encode(record('bare', { resource: {} }))).toBe('<14>1 2026-11-21T10:00:00.123456Z - - - - - bare');
  });

  it('takes host.name, then the configured hostname, when k8s.node.name is missing', () => {
    const withHost = new Rfc5424Encoder({ hostname: 'fallback' });
    expect(withHost.encode(record('m', { resource: { 'host.name': 'h1' } }))).toBe('<14>1 2026-11-21T10:00:00.123456Z h1 - - - - m');
    expect(withHost.encode(record('m', { resource: {} }))).toBe('<14>1 2026-11-21T10:00:00.123456Z fallback - - - - m');
  });

  it('encodes a journal record: service.name as APP-NAME, _PID as PROCID, its own PRIORITY', () => {
    const journal = record('Started kubelet', {
      severityText: 'FATAL',
      severityNumber: 21,
      attributes: { 'journald.PRIORITY': '1', 'journald._PID': '812' },
      resource: { 'k8s.node.name': 'node-1', 'host.name': 'node-1.example', 'service.name': 'kubelet' },
    });
    expect(enc.encode(journal)).toBe('<9>1 2026-11-21T10:00:00.123456Z node-1 kubelet 812 - [k8s@32473 node="node-1"] Started kubelet');
  });

  it('cuts APP-NAME at 48, PROCID at 128 and HOSTNAME at 255 printable characters', () => {
    const long = Object.freeze({
      'k8s.node.name': 'n'.repeat(300),
      'k8s.container.name': 'c'.repeat(63),
      'k8s.pod.name': 'p'.repeat(253),
    });
    const line = enc.encode(record('m', { resource: long }));
    const [, , host, app, procid] = line.split(' ');
    expect(host).toBe('n'.repeat(255));
    expect(app).toBe('c'.repeat(48));
    expect(procid).toBe('p'.repeat(128));
  });

  it('applies facility, templates, MSGID and SD-ID from the options', () => {
    const custom = new Rfc5424Encoder({
      facility: 'local3',
      appName: '{k8s.namespace.name}/{k8s.container.name}',
      procId: '-',
      msgId: '{log.iostream}',
      sdId: 'kta@99999',
    });
    expect(custom.encode(record('m', { severityText: 'warning' }))).toBe(
      '<156>1 2026-11-21T10:00:00.123456Z node-1 default/app - stdout [kta@99999 namespace="default" pod="web-1" container="app" node="node-1"] m',
    );
  });

  it('writes NILVALUE for STRUCTURED-DATA when structuredData is off, the header otherwise unchanged', () => {
    expect(new Rfc5424Encoder({ structuredData: false }).encode(record('m'))).toBe('<14>1 2026-11-21T10:00:00.123456Z node-1 app web-1 - - m');
  });

  it('caches per resource object, and still sees a new one', () => {
    const e = new Rfc5424Encoder();
    expect(e.encode(record('a'))).toContain('node-1');
    expect(e.encode(record('b', { resource: { ...resource, 'k8s.node.name': 'node-2' } }))).toContain(' node-2 ');
  });

  it('cuts a long body to maxMessageBytes at a character boundary, and counts it', () => {
    const e = new Rfc5424Encoder({ maxMessageBytes: 200 });
    const header = `<14>1 2026-11-21T10:00:00.123456Z node-1 app web-1 - ${SD}`;
    const room = 200 - Buffer.byteLength(header) - 1;
    const line = e.encode(record('€'.repeat(300)));
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(200);
    expect(line).toBe(`${header} ${'€'.repeat(Math.floor(room / 3))}`);
    expect(e.truncated).toBe(1);
    expect(e.encode(record('short'))).toBe(`${header} short`);
    expect(e.truncated).toBe(1);
    expect(new Rfc5424Encoder({ maxMessageBytes: 0 }).encode(record('x'.repeat(100_000))).length).toBeGreaterThan(100_000);
  });
});

describe('syslogTimestamp', () => {
  it('cuts nanoseconds to microseconds and keeps Z', () => {
    expect(syslogTimestamp('2026-11-21T10:00:00.123456789Z')).toBe('2026-11-21T10:00:00.123456Z');
    expect(syslogTimestamp('2026-11-21T23:59:59.999999999Z')).toBe('2026-11-21T23:59:59.999999Z');
  });
  it('keeps shorter fractions, none, and offsets; upper-cases T and Z', () => {
    expect(syslogTimestamp('2026-11-21T10:00:00.5Z')).toBe('2026-11-21T10:00:00.5Z');
    expect(syslogTimestamp('2026-11-21T10:00:00Z')).toBe('2026-11-21T10:00:00Z');
    expect(syslogTimestamp('2026-11-21t10:00:00.1234567z')).toBe('2026-11-21T10:00:00.123456Z');
    expect(syslogTimestamp('2026-11-21T10:00:00.123+02:00')).toBe('2026-11-21T10:00:00.123+02:00');
  });
  it('is NILVALUE for anything else', () => {
    expect(syslogTimestamp('')).toBe('-');
    expect(syslogTimestamp('yesterday')).toBe('-');
    expect(syslogTimestamp('2026-11-21 10:00:00Z')).toBe('-');
  });
});

describe('syslogSeverity', () => {
  const sev = (extra: Partial<LogRecord>) => syslogSeverity(record('x', extra));
  it('maps OpenTelemetry severity numbers by range', () => {
    const expected: Record<number, number> = { 1: 7, 4: 7, 5: 7, 8: 7, 9: 6, 10: 5, 12: 5, 13: 4, 16: 4, 17: 3, 20: 3, 21: 2, 24: 2 };
    for (const [n, s] of Object.entries(expected)) expect(sev({ severityNumber: Number(n) }), `number ${n}`).toBe(s);
  });
  it('maps severity texts, case-insensitively, with or without the OTel digit', () => {
    const expected: Record<string, number> = {
      TRACE: 7, debug: 7, DEBUG4: 7, INFO: 6, Info2: 5, INFO4: 5, notice: 5, WARN3: 4, ERROR2: 3, FATAL4: 2, WARN: 4, warning: 4, ERROR: 3, err: 3, CRITICAL: 2, fatal: 2, alert: 1, EMERG: 0, panic: 0,
    };
    for (const [t, s] of Object.entries(expected)) expect(sev({ severityText: t }), `text ${t}`).toBe(s);
  });
  it('prefers a journal PRIORITY, then the number, then the text; defaults to informational', () => {
    expect(sev({ severityNumber: 21, attributes: { 'journald.PRIORITY': '0' } })).toBe(0);
    expect(sev({ severityNumber: 17, severityText: 'debug' })).toBe(3);
    expect(sev({ severityNumber: 0, severityText: 'debug' })).toBe(7);
    expect(sev({})).toBe(6);
    expect(sev({ severityText: 'verbose' })).toBe(6);
    expect(sev({ severityNumber: 99 })).toBe(6);
    expect(sev({ attributes: { 'journald.PRIORITY': '9' } })).toBe(6);
  });
});

describe('header pieces', () => {
  it('headerField keeps printable ASCII, replaces the rest, cuts, and is NILVALUE when empty', () => {
    expect(headerField('web-1', 48)).toBe('web-1');
    expect(headerField('a b\tc', 48)).toBe('a_b_c');
    expect(headerField('ünï', 48)).toBe('_n_');
    expect(headerField('x'.repeat(60), 48)).toBe('x'.repeat(48));
    expect(headerField('', 48)).toBe('-');
  });
  it('escapeSdValue escapes exactly ", \\ and ]', () => {
    expect(escapeSdValue('plain [x] = y')).toBe('plain [x\\] = y');
    expect(escapeSdValue('"\\]')).toBe('\\"\\\\\\]');
  });
  it('facilityCode takes names and codes, and refuses others', () => {
    expect(facilityCode('user')).toBe(1);
    expect(facilityCode('LOCAL7')).toBe(23);
    expect(facilityCode(16)).toBe(16);
    expect(() => facilityCode('local8')).toThrow(/syslog facility/);
    expect(() => facilityCode(24)).toThrow(/syslog facility/);
  });
  it('validateSdId wants name@number within 32 characters', () => {
    expect(validateSdId('k8s@32473')).toBe('k8s@32473');
    expect(validateSdId('origin@1.2.3')).toBe('origin@1.2.3');
    for (const bad of ['k8s', 'k8s@', '@32473', 'k 8s@1', 'k8s@abc', 'k8s="@1', `${'x'.repeat(30)}@123`]) {
      expect(() => validateSdId(bad), bad).toThrow(/sd_id/);
    }
  });
  it('templates take the first present key, attributes before resource, and keep literal text', () => {
    const r = record('x', { attributes: { 'k8s.container.name': 'from-attr' } });
    expect(compileTemplate('{k8s.container.name}')(r)).toBe('from-attr');
    expect(compileTemplate('{service.name|k8s.pod.name}')(r)).toBe('web-1');
    expect(compileTemplate('{missing}')(r)).toBe('');
    expect(compileTemplate('ns-{k8s.namespace.name}.{ missing | k8s.node.name }')(r)).toBe('ns-default.node-1');
    expect(compileTemplate('fixed')(r)).toBe('fixed');
    expect(compileTemplate('{journald._PID}')(record('x', { attributes: { 'journald._PID': ['1', '2'] } }))).toBe('1');
    for (const bad of ['{', '}', '{}', '{a|}', 'x{a{b}}']) expect(() => compileTemplate(bad), bad).toThrow(/syslog template/);
  });
  it('cutUtf8 never splits a character', () => {
    expect(cutUtf8('a😀b', 4)).toBe('a');
    expect(cutUtf8('a😀b', 5)).toBe('a😀');
    expect(cutUtf8('abc', 3)).toBe('abc');
    expect(cutUtf8('abc', 0)).toBe('');
  });
});
