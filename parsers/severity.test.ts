import { describe, it, expect } from 'vitest';
import { LEVELS, severityFromFields, severityFromText, severityFromValue, severityLevel, severityShortName } from './severity.ts';

describe('severityFromValue', () => {
  it('maps level words in any case, keeping the text as written', () => {
    const cases: [string, number][] = [
      ['trace', 1],
      ['DEBUG', 5],
      ['Information', 9],
      ['info', 9],
      ['notice', 10],
      ['warn', 13],
      ['WARNING', 13],
      ['Warning', 13],
      ['err', 17],
      ['ERROR', 17],
      ['SEVERE', 17],
      ['CRITICAL', 21],
      ['fatal', 21],
      ['panic', 21],
      ['alert', 21],
      ['emerg', 21],
      ['Verbose', 1],
    ];
    for (const [value, number] of cases) expect(severityFromValue(value), value).toEqual({ text: value, number });
  });

  it('numbers single letters and numbers, keeping the text as the source wrote it (the data model`s SeverityText)', () => {
    expect(severityFromValue('W')).toEqual({ text: 'W', number: 13 });
    expect(severityFromValue('e')).toEqual({ text: 'e', number: 17 });
    // pino / bunyan
    expect([10, 20, 30, 40, 50, 60, 35].map((v) => severityFromValue(v))).toEqual([
      { text: '10', number: 1 },
      { text: '20', number: 5 },
      { text: '30', number: 9 },
      { text: '40', number: 13 },
      { text: '50', number: 17 },
      { text: '60', number: 21 },
      { text: '35', number: 9 },
    ]);
    // syslog, also as strings
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((v) => severityFromValue(v)?.number)).toEqual([21, 21, 21, 17, 13, 10, 9, 5]);
    expect(severityFromValue('3')).toEqual({ text: '3', number: 17 });
    expect(severityFromValue('5')).toEqual({ text: '5', number: 10 });
  });

  it('gives receivers that key on a level one of six names per number, whatever the spelling', () => {
    const spellings = ['warn', 'WARNING', 'Warning', 'W', '40', 'wrn'];
    expect(new Set(spellings.map((v) => severityLevel(severityFromValue(v)!.number)))).toEqual(new Set(['warn']));
    expect([1, 4, 5, 8, 9, 10, 12, 13, 16, 17, 20, 21, 24].map(severityLevel)).toEqual([
      'trace', 'trace', 'debug', 'debug', 'info', 'info', 'info', 'warn', 'warn', 'error', 'error', 'fatal', 'fatal',
    ]);
    expect([undefined, 0, 25].map(severityLevel)).toEqual([undefined, undefined, undefined]);
    expect(LEVELS).toEqual(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
  });

  it('leaves unknown values alone', () => {
    for (const v of ['', 'x', 'loud', '8', '61', 'warnings', '3.5', 3.5, -1, 100, 9, true, null, {}, ['error'], 'a'.repeat(40)]) {
      expect(severityFromValue(v), JSON.stringify(v)).toBeUndefined();
    }
  });

  it('names every number', () => {
    expect([1, 4, 5, 9, 12, 13, 17, 20, 21, 24].map(severityShortName)).toEqual([
      'TRACE',
      'TRACE4',
      'DEBUG',
      'INFO',
      'INFO4',
      'WARN',
      'ERROR',
      'ERROR4',
      'FATAL',
      'FATAL4',
    ]);
  });
});

describe('severityFromFields', () => {
  it('reads the common level fields', () => {
    expect(severityFromFields({ level: 'warn', msg: 'x' })).toEqual({ text: 'warn', number: 13 });
    expect(severityFromFields({ level: 50, msg: 'pino' })).toEqual({ text: '50', number: 17 });
    expect(severityFromFields({ severity: 'WARNING', message: 'gcp' })).toEqual({ text: 'WARNING', number: 13 });
    expect(severityFromFields({ lvl: 'eror' })).toBeUndefined();
    expect(severityFromFields({ loglevel: 'debug' })).toEqual({ text: 'debug', number: 5 });
    expect(severityFromFields({ 'log.level': 'error', '@timestamp': 'x' })).toEqual({ text: 'error', number: 17 });
    expect(severityFromFields({ log: { level: 'info', logger: 'app' } })).toEqual({ text: 'info', number: 9 });
    expect(severityFromFields({ levelname: 'CRITICAL' })).toEqual({ text: 'CRITICAL', number: 21 });
    expect(severityFromFields({ '@l': 'Warning', '@mt': 'x' })).toEqual({ text: 'Warning', number: 13 });
    expect(severityFromFields({ LogLevel: 'Information' })).toEqual({ text: 'Information', number: 9 });
  });

  it('skips a field it does not recognise for the next one, and finds nothing in others', () => {
    expect(severityFromFields({ level: { name: 'x' }, severity: 'E' })).toEqual({ text: 'E', number: 17 });
    expect(severityFromFields({ msg: 'error happened', status: 'error' })).toBeUndefined();
    expect(severityFromFields({ log: ['error'] })).toBeUndefined();
  });
});

describe('severityFromText', () => {
  it('reads the level at the start of common text formats', () => {
    const cases: [string, string, number][] = [
      ['ERROR something broke', 'ERROR', 17],
      ['[WARN] disk almost full', 'WARN', 13],
      ['[warn] disk almost full', 'warn', 13],
      ['E1121 10:00:00.123456    1234 file.go:123] failed to sync', 'E', 17],
      ['W1121 10:00:00.123456    1234 file.go:123] slow', 'W', 13],
      ['I1121 10:00:00.123456    1234 file.go:123] ok', 'I', 9],
      ['2026-11-21T10:00:00.512+01:00  INFO 1 --- [orders] [main] c.e.App : Started', 'INFO', 9],
      ['2026-11-21 10:00:02,377 ERROR worker.main: job 77 failed', 'ERROR', 17],
      ['2026-11-21 10:00:02.377 [http-nio-8080-exec-1] WARN  c.e.Api - slow request', 'WARN', 13],
      ['2026/11/21 10:00:00 [error] 29#29: *1 open() "/x" failed', 'error', 17],
      ['WARNING:root:disk almost full', 'WARNING', 13],
      ['10:00AM INF request served', 'INF', 9],
      ['[2026-11-21T10:00:00Z ERROR my_crate::db] connection lost', 'ERROR', 17],
      ['FATAL', 'FATAL', 21],
      ['  DEBUG|cache|miss', 'DEBUG', 5],
    ];
    for (const [line, text, number] of cases) expect(severityFromText(line), line).toEqual({ text, number });
  });

  it('does not guess from words elsewhere or in lower case', () => {
    for (const line of [
      '',
      'error connecting to db',
      'debug mode on',
      'Started server, no ERROR',
      'GET /error 500',
      '2026-11-21T10:00:00Z request failed with ERROR',
      '[main] [pool-1] ERROR too deep',
      'INFORMATIONAL_THING happened',
      'E112 short klog',
      'X1121 10:00:00.123456 not klog',
      '2026-11-21',
      '{"level":"error"}',
      '[unterminated ERROR',
    ]) {
      expect(severityFromText(line), line).toBeUndefined();
    }
  });
});
