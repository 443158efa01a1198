import { describe, it, expect } from 'vitest';
import { extractTimestamp, timestampFromValue } from './timestamp_extract.ts';

describe('timestampFromValue', () => {
  it('normalises RFC 3339 and its near misses to UTC with nine fraction digits', () => {
    const cases: [string, string][] = [
      ['2026-11-21T10:00:00.123456789Z', '2026-11-21T10:00:00.123456789Z'],
      ['2026-11-21T10:00:00Z', '2026-11-21T10:00:00.000000000Z'],
      ['2026-11-21T11:00:00.5+01:00', '2026-11-21T10:00:00.500000000Z'],
      ['2026-11-21 10:00:00.123Z', '2026-11-21T10:00:00.123000000Z'],
      ['2026-11-21t10:00:00.123z', '2026-11-21T10:00:00.123000000Z'],
      ['2026-11-21T05:00:00.123-0500', '2026-11-21T10:00:00.123000000Z'],
    ];
    for (const [input, out] of cases) expect(timestampFromValue(input), input).toBe(out);
  });

  it('reads epoch seconds, milliseconds, microseconds and nanoseconds, as numbers or strings', () => {
    expect(timestampFromValue(1763719204)).toBe('2025-11-21T10:00:04.000000000Z');
    expect(timestampFromValue(1763719204.512)).toBe('2025-11-21T10:00:04.512000000Z'); // zap's `ts`
    expect(timestampFromValue(1763719204512)).toBe('2025-11-21T10:00:04.512000000Z'); // pino's `time`
    expect(timestampFromValue(1763719204512.25)).toBe('2025-11-21T10:00:04.512250000Z');
    expect(timestampFromValue('1763719204512345')).toBe('2025-11-21T10:00:04.512345000Z');
    expect(timestampFromValue('1763719204512345678')).toBe('2025-11-21T10:00:04.512345678Z');
    expect(timestampFromValue('1763719204.123456789123')).toBe('2025-11-21T10:00:04.123456789Z');
    expect(timestampFromValue(999999999)).toBe('2001-09-09T01:46:39.000000000Z');
  });

  it('refuses durations, zone-less times and garbage', () => {
    for (const v of [
      35,
      12.5,
      0,
      -1763719204,
      1e21,
      Number.NaN,
      '35',
      '2026-11-21T10:00:00.123',
      '2026-11-21',
      '2026-13-01T00:00:00Z',
      'yesterday',
      '1763719204.',
      '.5',
      '17637192O4',
      '12345678901234567890',
      true,
      null,
      { $date: 1 },
    ]) {
      expect(timestampFromValue(v), String(v)).toBeUndefined();
    }
  });
});

describe('extractTimestamp', () => {
  it('takes the first usable field and says which', () => {
    expect(extractTimestamp({ level: 30, time: 1763719204512, msg: 'x' })).toEqual({ field: 'time', timestamp: '2025-11-21T10:00:04.512000000Z' });
    expect(extractTimestamp({ ts: 1763719204.5 })).toEqual({ field: 'ts', timestamp: '2025-11-21T10:00:04.500000000Z' });
    expect(extractTimestamp({ '@timestamp': '2026-11-21T10:00:00.123Z' })).toEqual({
      field: '@timestamp',
      timestamp: '2026-11-21T10:00:00.123000000Z',
    });
    // `time` holds a duration here: skipped for the next field.
    expect(extractTimestamp({ time: 35, timestamp: '2026-11-21T10:00:00Z' })).toEqual({ field: 'timestamp', timestamp: '2026-11-21T10:00:00.000000000Z' });
    expect(extractTimestamp({ msg: 'x' })).toBeUndefined();
    expect(extractTimestamp({ at: 1763719204, time: 1 }, ['at'])).toEqual({ field: 'at', timestamp: '2025-11-21T10:00:04.000000000Z' });
  });
});
