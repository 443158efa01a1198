import { describe, it, expect } from 'vitest';
import { MAX_JSON_DEPTH, parseJsonBody } from './json_body.ts';
import { NdjsonEncoder } from '../outputs/ndjson.ts';

describe('parseJsonBody', () => {
  it('turns a JSON object line into the body, nested values kept', () => {
    expect(parseJsonBody('{"level":"info","msg":"served","http":{"status":200,"path":"/x"},"tags":["a","b"]}')).toEqual({
      body: { level: 'info', msg: 'served', http: { status: 200, path: '/x' }, tags: ['a', 'b'] },
    });
    expect(parseJsonBody('  \t{"a":1}\r\n ')).toEqual({ body: { a: 1 } });
    expect(parseJsonBody('{}')).toEqual({ body: {} });
  });

  it('leaves an array or a scalar JSON line as the original text', () => {
    for (const text of ['[1,2,3]', '[{"a":1}]', '42', '-1.5e3', 'true', 'null', '"quoted"', ' [] ']) {
      expect(parseJsonBody(text), text).toBeUndefined();
    }
  });

  it('leaves text, truncated and invalid JSON as it is, without throwing', () => {
    for (const text of [
      '',
      '   ',
      'plain text line',
      '2026-11-21 INFO {"a":1}',
      '{"level":"info","msg":"cut here',
      '{"a":1} trailing',
      '{a:1}',
      "{'a':1}",
      '{"a":1,}',
      '{"a":1}}',
      '{',
      '}',
    ]) {
      expect(parseJsonBody(text), text).toBeUndefined();
    }
  });

  it('keeps the last of duplicate keys and `__proto__` as an own key', () => {
    expect(parseJsonBody('{"a":1,"a":2}')).toEqual({ body: { a: 2 } });
    const r = parseJsonBody('{"__proto__":{"polluted":true}}')!;
    expect(Object.prototype.hasOwnProperty.call(r.body, '__proto__')).toBe(true);
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });

  it('keeps a body nested deeper than MAX_JSON_DEPTH as text, so no encoder after it overflows', () => {
    const nest = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
    expect(parseJsonBody(nest(MAX_JSON_DEPTH))?.body).toBeDefined();
    expect(parseJsonBody(nest(MAX_JSON_DEPTH + 1))).toBeUndefined();
    // Arrays count as levels; brackets inside strings do not.
    const arrays = '{"a":' + '['.repeat(MAX_JSON_DEPTH) + ']'.repeat(MAX_JSON_DEPTH) + '}';
    expect(parseJsonBody(arrays)).toBeUndefined();
    const quoted = '{"s":"' + '{['.repeat(500) + '\\"' + '","ok":{"x":[1]}}';
    expect(parseJsonBody(quoted)?.body).toMatchObject({ ok: { x: [1] } });
    // A 30 KB line of braces: what JSON.stringify could not write back becomes a string body the encoders can.
    const deep = nest(10_000);
    expect(parseJsonBody(deep)).toBeUndefined();
    expect(() => new NdjsonEncoder().encode({ timestamp: 't', observedTimestamp: 't', body: deep, attributes: {}, resource: {} })).not.toThrow();
  });
});
