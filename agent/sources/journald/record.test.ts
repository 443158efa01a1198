import { describe, expect, it } from 'vitest';
import type { ExportEntry, FieldValue } from './export_reader.ts';
import { formatUnixMicros, JournalRecordMapper } from './record.ts';

const OBSERVED = '2026-11-21T10:00:01.000000000Z';

function entry(fields: Record<string, FieldValue>, truncated = false): ExportEntry {
  return { fields: new Map(Object.entries(fields)), bytes: 100, truncated };
}

const kubelet = {
  __CURSOR: 's=abc;i=1',
  __REALTIME_TIMESTAMP: '1795305924239277',
  __MONOTONIC_TIMESTAMP: '1000',
  _BOOT_ID: 'b1',
  _HOSTNAME: 'node-a',
  _SYSTEMD_UNIT: 'kubelet.service',
  SYSLOG_IDENTIFIER: 'kubelet',
  PRIORITY: '6',
  MESSAGE: 'I1121 10:00:00.123456    1234 kubelet.go:123] started',
};

describe('formatUnixMicros', () => {
  it('keeps every microsecond, as nine fraction digits', () => {
    expect(formatUnixMicros('1700000000000001')).toBe('2023-11-14T22:13:20.000001000Z');
    expect(formatUnixMicros('1700000000123456')).toBe('2023-11-14T22:13:20.123456000Z');
    expect(formatUnixMicros('0')).toBe('1970-01-01T00:00:00.000000000Z');
    expect(formatUnixMicros('42')).toBe('1970-01-01T00:00:00.000042000Z');
    expect(formatUnixMicros('253402300799999999')).toBe('9999-12-31T23:59:59.999999000Z');
  });

  it('rejects what is not a µs count', () => {
    for (const bad of ['', '-1', '1.5', 'abc', ' 1', '253402300800000000', '9'.repeat(20)]) expect(formatUnixMicros(bad), bad).toBeUndefined();
  });
});

describe('JournalRecordMapper', () => {
  const mapper = () => new JournalRecordMapper({ nodeName: 'node-1', excludeFields: ['_BOOT_ID'] });

  it('maps body, time, severity, attributes and resource', () => {
    const r = mapper().map(entry(kubelet), OBSERVED);
    expect(r).toEqual({
      timestamp: '2026-11-22T00:05:24.239277000Z',
      observedTimestamp: OBSERVED,
      severityText: 'INFO',
      severityNumber: 9,
      body: kubelet.MESSAGE,
      attributes: {
        'journald._HOSTNAME': 'node-a',
        'journald._SYSTEMD_UNIT': 'kubelet.service',
        'journald.SYSLOG_IDENTIFIER': 'kubelet',
        'journald.PRIORITY': '6',
      },
      resource: { 'k8s.node.name': 'node-1', 'host.name': 'node-a', 'service.name': 'kubelet' },
    });
  });

  it('prefers the time the client logged it', () => {
    const r = mapper().map(entry({ ...kubelet, _SOURCE_REALTIME_TIMESTAMP: '1795305924000001' }), OBSERVED);
    expect(r.timestamp).toBe('2026-11-22T00:05:24.000001000Z');
    const bad = mapper().map(entry({ ...kubelet, _SOURCE_REALTIME_TIMESTAMP: 'soon' }), OBSERVED);
    expect(bad.timestamp).toBe('2026-11-22T00:05:24.239277000Z');
    const none = mapper().map(entry({ MESSAGE: 'x' }), OBSERVED);
    expect(none.timestamp).toBe(OBSERVED);
  });

  it.each([
    ['0', 'FATAL', 21],
    ['1', 'FATAL', 21],
    ['2', 'FATAL', 21],
    ['3', 'ERROR', 17],
    ['4', 'WARN', 13],
    ['5', 'INFO2', 10],
    ['6', 'INFO', 9],
    ['7', 'DEBUG', 5],
  ])('PRIORITY %s is %s (%d)', (priority, text, number) => {
    const r = mapper().map(entry({ ...kubelet, PRIORITY: priority }), OBSERVED);
    expect([r.severityText, r.severityNumber]).toEqual([text, number]);
    expect(r.attributes['journald.PRIORITY']).toBe(priority);
  });

  it('leaves severity unset for a missing or odd PRIORITY', () => {
    for (const p of [undefined, '8', '12', 'x', ['3', '4']]) {
      const fields: Record<string, FieldValue> = { MESSAGE: 'm' };
      if (p !== undefined) fields.PRIORITY = p;
      const r = mapper().map(entry(fields), OBSERVED);
      expect(r.severityText).toBeUndefined();
      expect(r.severityNumber).toBeUndefined();
    }
  });

  it('keeps repeated fields as arrays, joins a repeated MESSAGE, marks truncation', () => {
    const r = mapper().map(entry({ MESSAGE: ['a', 'b'], TAG: ['x', 'y'] }, true), OBSERVED);
    expect(r.body).toBe('a\nb');
    expect(r.attributes).toEqual({ 'journald.TAG': ['x', 'y'], 'kta.log.truncated': true });
    expect(mapper().map(entry({ PRIORITY: '6' }), OBSERVED).body).toBe('');
  });

  it('names the service after SYSLOG_IDENTIFIER, else the unit without .service', () => {
    const m = mapper();
    const svc = (f: Record<string, FieldValue>) => m.map(entry(f), OBSERVED).resource['service.name'];
    expect(svc({ SYSLOG_IDENTIFIER: 'containerd', _SYSTEMD_UNIT: 'containerd.service' })).toBe('containerd');
    expect(svc({ _SYSTEMD_UNIT: 'kubelet.service' })).toBe('kubelet');
    expect(svc({ _SYSTEMD_UNIT: 'session-3.scope' })).toBe('session-3.scope');
    expect(svc({ MESSAGE: 'kernel?' })).toBeUndefined();
  });

  it('shares one resource object between entries with the same host and service', () => {
    const m = mapper();
    const a = m.map(entry(kubelet), OBSERVED);
    const b = m.map(entry({ ...kubelet, MESSAGE: 'other', _PID: '7' }), OBSERVED);
    const c = m.map(entry({ ...kubelet, SYSLOG_IDENTIFIER: 'containerd' }), OBSERVED);
    const d = m.map(entry({ MESSAGE: 'no host' }), OBSERVED);
    expect(b.resource).toBe(a.resource);
    expect(c.resource).not.toBe(a.resource);
    expect(d.resource).toEqual({ 'k8s.node.name': 'node-1' });
    expect(Object.isFrozen(a.resource)).toBe(true);
  });
});
