import { describe, it, expect } from 'vitest';
import { formatUnixMillis, normalizeRfc3339, timestampToUnixNanos } from './timestamp.ts';

describe('normalizeRfc3339', () => {
  it('returns an already normalised timestamp as the same string', () => {
    const ts = '2026-11-21T10:00:00.123456789Z';
    expect(normalizeRfc3339(ts)).toBe(ts);
  });

  it('pads containerd trimmed fractions to 9 digits without rounding', () => {
    expect(normalizeRfc3339('2026-11-21T10:00:00.1Z')).toBe('2026-11-21T10:00:00.100000000Z');
    expect(normalizeRfc3339('2026-11-21T10:00:00.12Z')).toBe('2026-11-21T10:00:00.120000000Z');
    expect(normalizeRfc3339('2026-11-21T10:00:00.12345678Z')).toBe('2026-11-21T10:00:00.123456780Z');
    expect(normalizeRfc3339('2026-11-21T10:00:00.000000001Z')).toBe('2026-11-21T10:00:00.000000001Z');
  });

  it('accepts 0 fraction digits', () => {
    expect(normalizeRfc3339('2026-11-21T10:00:01Z')).toBe('2026-11-21T10:00:01.000000000Z');
    expect(normalizeRfc3339('2026-11-21T10:00:01+00:00')).toBe('2026-11-21T10:00:01.000000000Z');
    expect(normalizeRfc3339('2026-11-21T11:00:01+01:00')).toBe('2026-11-21T10:00:01.000000000Z');
  });

  it('converts CRI-O zero offsets without changing the digits', () => {
    expect(normalizeRfc3339('2026-11-21T10:00:00.123456789+00:00')).toBe('2026-11-21T10:00:00.123456789Z');
    expect(normalizeRfc3339('2026-11-21T10:00:00.000000000-00:00')).toBe('2026-11-21T10:00:00.000000000Z');
    expect(normalizeRfc3339('2026-11-21T10:00:00.5+00:00')).toBe('2026-11-21T10:00:00.500000000Z');
  });

  it('converts non-zero offsets to UTC, keeping nanoseconds exact', () => {
    expect(normalizeRfc3339('2026-11-21T11:00:00.123456789+01:00')).toBe('2026-11-21T10:00:00.123456789Z');
    expect(normalizeRfc3339('2026-11-21T04:30:00.999999999-05:30')).toBe('2026-11-21T10:00:00.999999999Z');
    expect(normalizeRfc3339('2026-11-21T10:00:00.000000007+14:00')).toBe('2026-11-20T20:00:00.000000007Z');
  });

  it('carries offsets across day, month, year and leap-day boundaries', () => {
    expect(normalizeRfc3339('2026-12-31T20:30:00.5-05:30')).toBe('2027-01-01T02:00:00.500000000Z');
    expect(normalizeRfc3339('2026-03-01T00:00:00+01:00')).toBe('2026-02-28T23:00:00.000000000Z');
    expect(normalizeRfc3339('2028-03-01T00:00:00+01:00')).toBe('2028-02-29T23:00:00.000000000Z');
    // Date.UTC would read year 50 as 1950.
    expect(normalizeRfc3339('0050-06-15T12:00:00+02:00')).toBe('0050-06-15T10:00:00.000000000Z');
  });

  it('does not reuse a cached conversion for a different offset or second', () => {
    expect(normalizeRfc3339('2026-11-21T11:00:00.1+01:00')).toBe('2026-11-21T10:00:00.100000000Z');
    expect(normalizeRfc3339('2026-11-21T11:00:00.2+01:00')).toBe('2026-11-21T10:00:00.200000000Z');
    expect(normalizeRfc3339('2026-11-21T11:00:00.3+02:00')).toBe('2026-11-21T09:00:00.300000000Z');
    expect(normalizeRfc3339('2026-11-21T11:00:00.4-01:00')).toBe('2026-11-21T12:00:00.400000000Z');
    expect(normalizeRfc3339('2026-11-21T11:00:01.5-01:00')).toBe('2026-11-21T12:00:01.500000000Z');
    expect(normalizeRfc3339('2026-11-21T11:00:01-01:00')).toBe('2026-11-21T12:00:01.000000000Z');
  });

  it('accepts valid leap days and rejects invalid ones', () => {
    expect(normalizeRfc3339('2028-02-29T00:00:00Z')).toBe('2028-02-29T00:00:00.000000000Z');
    expect(normalizeRfc3339('2000-02-29T00:00:00Z')).toBe('2000-02-29T00:00:00.000000000Z');
    expect(normalizeRfc3339('2026-02-29T00:00:00Z')).toBeUndefined();
    expect(normalizeRfc3339('2100-02-29T00:00:00Z')).toBeUndefined();
    expect(normalizeRfc3339('2026-04-31T00:00:00Z')).toBeUndefined();
  });

  it.each([
    ['empty', ''],
    ['words', 'xyz'],
    ['month 13', '2026-13-01T00:00:00Z'],
    ['month 00', '2026-00-01T00:00:00Z'],
    ['day 00', '2026-01-00T00:00:00Z'],
    ['day 32', '2026-01-32T00:00:00Z'],
    ['hour 24', '2026-01-01T24:00:00Z'],
    ['minute 60', '2026-01-01T00:60:00Z'],
    ['leap second', '2026-06-30T23:59:60Z'],
    ['10 fraction digits', '2026-11-21T10:00:00.1234567890Z'],
    ['bare dot', '2026-11-21T10:00:00.Z'],
    ['comma fraction', '2026-11-21T10:00:00,1Z'],
    ['no zone', '2026-11-21T10:00:00.1'],
    ['lowercase z', '2026-11-21T10:00:00.1z'],
    ['lowercase t', '2026-11-21t10:00:00Z'],
    ['space for T', '2026-11-21 10:00:00Z'],
    ['offset without colon', '2026-11-21T10:00:00+0100'],
    ['offset hour 24', '2026-11-21T10:00:00+24:00'],
    ['offset minute 60', '2026-11-21T10:00:00+01:60'],
    ['trailing text', '2026-11-21T10:00:00Zx'],
    ['trailing text after offset', '2026-11-21T10:00:00+01:00 '],
    ['letter in year', '2O26-11-21T10:00:00Z'],
    ['sign in day', '2026-11-+1T10:00:00Z'],
    ['non-ASCII digit', '2026-11-2\u0661T10:00:00Z'],
    ['date only', '2026-11-21'],
    ['offset below year 0', '0000-01-01T00:00:00+01:00'],
    ['offset above year 9999', '9999-12-31T23:00:00-01:00'],
  ])('rejects %s', (_name, text) => {
    expect(normalizeRfc3339(text)).toBeUndefined();
  });
});

describe('timestampToUnixNanos', () => {
  it('converts exactly, up to the int64 limit', () => {
    expect(timestampToUnixNanos('1970-01-01T00:00:00.000000001Z')).toBe(1n);
    expect(timestampToUnixNanos('2026-11-21T10:00:00.123456789Z')).toBe(1795255200123456789n);
    expect(timestampToUnixNanos('2262-04-11T23:47:16.854775807Z')).toBe(9223372036854775807n);
    expect(timestampToUnixNanos('1969-12-31T23:59:59.000000000Z')).toBe(-1_000_000_000n);
  });

  it('accepts any form normalizeRfc3339 accepts', () => {
    expect(timestampToUnixNanos('2026-11-21T11:00:00.123456789+01:00')).toBe(1795255200123456789n);
  });

  it('throws on an invalid timestamp', () => {
    expect(() => timestampToUnixNanos('nope')).toThrow(RangeError);
  });
});

describe('formatUnixMillis', () => {
  it('gives the normalised form', () => {
    expect(formatUnixMillis(0)).toBe('1970-01-01T00:00:00.000000000Z');
    expect(formatUnixMillis(1795255200123)).toBe('2026-11-21T10:00:00.123000000Z');
    expect(formatUnixMillis(1795255200123)).toBe('2026-11-21T10:00:00.123000000Z');
    expect(formatUnixMillis(1795255200124)).toBe('2026-11-21T10:00:00.124000000Z');
  });

  it('drops sub-millisecond parts and round-trips through normalizeRfc3339', () => {
    const text = formatUnixMillis(1.9);
    expect(text).toBe('1970-01-01T00:00:00.001000000Z');
    expect(normalizeRfc3339(text)).toBe(text);
  });

  it('throws for times it cannot represent', () => {
    expect(() => formatUnixMillis(Number.NaN)).toThrow(RangeError);
    expect(() => formatUnixMillis(Date.UTC(10000, 0, 1))).toThrow(RangeError);
  });
});
