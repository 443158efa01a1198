import { describe, it, expect } from 'vitest';
import { parseLogfmt } from './logfmt.ts';

describe('parseLogfmt', () => {
  it('parses pairs, quoted values with escapes, empty values and flags', () => {
    expect(
      parseLogfmt('time=2026-11-21T10:00:00.123Z level=info msg="request \\"served\\" in 3ms" path=/api/items status=200 cached'),
    ).toEqual({ time: '2026-11-21T10:00:00.123Z', level: 'info', msg: 'request "served" in 3ms', path: '/api/items', status: '200', cached: true });
    expect(parseLogfmt('a= b="" c="x\\ny\\t\\\\z" d="\\u00e9\\x41\\q"')).toEqual({ a: '', b: '', c: 'x\ny\t\\z', d: 'éA\\q' });
    expect(parseLogfmt('  \tlevel=warn\t\tcomponent=kubelet  ')).toEqual({ level: 'warn', component: 'kubelet' });
  });

  it('takes one key=value filling the line, and keys with dots, slashes and non-ASCII', () => {
    expect(parseLogfmt('status=200')).toEqual({ status: '200' });
    expect(parseLogfmt('k8s.pod/name=web-1 größe=3')).toEqual({ 'k8s.pod/name': 'web-1', größe: '3' });
  });

  it('keeps `=` inside bare values, and the last of repeated keys', () => {
    expect(parseLogfmt('method=GET url=/x?a=1&b=2 a==b')).toEqual({ method: 'GET', url: '/x?a=1&b=2', a: '=b' });
    expect(parseLogfmt('a=1 a=2')).toEqual({ a: '2' });
  });

  it('is not fooled by text, JSON or broken quoting', () => {
    for (const text of [
      '',
      '   ',
      'hello',
      'hello world',
      'Starting server port=8080',
      '2026-11-21T10:00:00Z INFO level=info',
      '{"level":"info"}',
      '=value',
      'a=1 =2',
      'msg="unterminated',
      'msg="a"b',
      'msg=a"b',
      'a="x" "y"',
      'a=1\u0000b',
    ]) {
      expect(parseLogfmt(text), text).toBeUndefined();
    }
  });

  it('makes a `__proto__` key an own property', () => {
    const r = parseLogfmt('__proto__=x a=1')!;
    expect(Object.keys(r)).toEqual(['__proto__', 'a']);
    expect(r['__proto__']).toBe('x');
    expect(Object.getPrototypeOf(r)).toBe(Object.prototype);
  });
});
