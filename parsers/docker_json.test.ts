import { describe, it, expect } from 'vitest';
import { isParseFailure } from './container_line.ts';
import type { ContainerLine } from './container_line.ts';
import { parseDockerJsonLine } from './docker_json.ts';
import { PartialMerger } from './partial_merger.ts';

const T = '2026-11-21T10:00:00.123456789Z';

function ok(line: string): ContainerLine {
  const r = parseDockerJsonLine(line);
  if (isParseFailure(r)) throw new Error(r.error);
  return r;
}

describe('parseDockerJsonLine', () => {
  it('parses a complete line and strips its LF', () => {
    expect(parseDockerJsonLine(`{"log":"hello world\\n","stream":"stdout","time":"${T}"}`)).toEqual({
      time: T,
      stream: 'stdout',
      partial: false,
      content: 'hello world',
    });
  });

  it('ignores attrs and normalises a trimmed time', () => {
    const line = '{"log":"x\\n","stream":"stderr","attrs":{"tag":"web","env":"a=b"},"time":"2026-11-21T10:00:00.1Z"}';
    expect(parseDockerJsonLine(line)).toEqual({
      time: '2026-11-21T10:00:00.100000000Z',
      stream: 'stderr',
      partial: false,
      content: 'x',
    });
  });

  it('unescapes \\u003c, \\u003e, \\u0026 and keeps U+FFFD', () => {
    const line = `{"log":"\\u003cdiv\\u003e \\u0026 \\ufffd\\t\\"q\\"\\n","stream":"stdout","time":"${T}"}`;
    expect(ok(line).content).toBe('<div> & \uFFFD\t"q"');
  });

  it('removes the LF and then one CR of a complete line', () => {
    expect(ok(`{"log":"crlf\\r\\n","stream":"stdout","time":"${T}"}`).content).toBe('crlf');
    expect(ok(`{"log":"two\\r\\r\\n","stream":"stdout","time":"${T}"}`).content).toBe('two\r');
    expect(ok(`{"log":"\\r\\n","stream":"stdout","time":"${T}"}`).content).toBe('');
    expect(ok(`{"log":"\\n","stream":"stdout","time":"${T}"}`).content).toBe('');
  });

  it('marks a log without trailing LF as partial and leaves it untouched', () => {
    expect(parseDockerJsonLine(`{"log":"abc\\r","stream":"stdout","time":"${T}"}`)).toEqual({
      time: T,
      stream: 'stdout',
      partial: true,
      content: 'abc\r',
    });
    expect(ok(`{"log":"","stream":"stdout","time":"${T}"}`).partial).toBe(true);
  });

  it('joins 16 KiB partial messages through the merger, keeping the first time', () => {
    const a = 'a'.repeat(16384);
    const b = 'b'.repeat(16384);
    const m = new PartialMerger();
    const lines = [
      `{"log":"${a}","stream":"stdout","time":"2026-11-21T10:00:00.1Z"}`,
      `{"log":"err\\n","stream":"stderr","time":"2026-11-21T10:00:00.15Z"}`,
      `{"log":"${b}","stream":"stdout","time":"2026-11-21T10:00:00.2Z"}`,
      `{"log":"end\\r\\n","stream":"stdout","time":"2026-11-21T10:00:00.3Z"}`,
    ];
    const out = lines.map((l, i) => m.push(ok(l), i * 20000, 0));
    expect(out[0]).toBeUndefined();
    expect(out[1]).toEqual({
      time: '2026-11-21T10:00:00.150000000Z',
      stream: 'stderr',
      content: 'err',
      incomplete: false,
      truncated: false,
    });
    expect(out[2]).toBeUndefined();
    expect(out[3]).toEqual({
      time: '2026-11-21T10:00:00.100000000Z',
      stream: 'stdout',
      content: a + b + 'end',
      incomplete: false,
      truncated: false,
    });
  });

  it.each([
    ['not JSON', 'not json'],
    ['cut JSON', '{"log":"x'],
    ['empty line', ''],
  ])('rejects %s as invalid JSON', (_name, line) => {
    const r = parseDockerJsonLine(line);
    expect(isParseFailure(r) && r.error.startsWith('docker: invalid JSON: ')).toBe(true);
  });

  it('keeps the JSON error short for long lines', () => {
    const r = parseDockerJsonLine('{"log":' + 'x'.repeat(100_000));
    const error = isParseFailure(r) ? r.error : '';
    expect(error.startsWith('docker: invalid JSON: ')).toBe(true);
    expect(error.length).toBeLessThanOrEqual('docker: invalid JSON: '.length + 121);
  });

  it.each([
    ['array', '[1]', 'docker: not a JSON object'],
    ['null', 'null', 'docker: not a JSON object'],
    ['string', '"x"', 'docker: not a JSON object'],
    ['missing log', `{"stream":"stdout","time":"${T}"}`, 'docker: "log" missing'],
    ['numeric log', `{"log":1,"stream":"stdout","time":"${T}"}`, 'docker: "log" not a string'],
    ['missing stream', `{"log":"x\\n","time":"${T}"}`, 'docker: "stream" missing'],
    ['wrong stream', `{"log":"x\\n","stream":"stdin","time":"${T}"}`, 'docker: invalid stream "stdin"'],
    ['numeric stream', `{"log":"x\\n","stream":1,"time":"${T}"}`, 'docker: invalid stream 1'],
    ['missing time', '{"log":"x\\n","stream":"stdout"}', 'docker: "time" missing'],
    ['numeric time', '{"log":"x\\n","stream":"stdout","time":5}', 'docker: "time" not a string'],
    [
      'bad time',
      '{"log":"x\\n","stream":"stdout","time":"2026-11-21 10:00:00"}',
      'docker: invalid time "2026-11-21 10:00:00"',
    ],
  ])('rejects %s', (_name, line, error) => {
    expect(parseDockerJsonLine(line)).toEqual({ error });
  });
});
