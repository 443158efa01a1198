import { describe, it, expect } from 'vitest';
import { isParseFailure } from './container_line.ts';
import { parseCriLine } from './cri.ts';

describe('parseCriLine', () => {
  it('parses a containerd line with a trimmed fraction', () => {
    expect(parseCriLine('2026-11-21T10:00:00.1Z stdout F hello world')).toEqual({
      time: '2026-11-21T10:00:00.100000000Z',
      stream: 'stdout',
      partial: false,
      content: 'hello world',
    });
  });

  it('parses a CRI-O line with a numeric offset, and stderr', () => {
    expect(parseCriLine('2026-11-21T11:00:00.123456789+01:00 stderr P part')).toEqual({
      time: '2026-11-21T10:00:00.123456789Z',
      stream: 'stderr',
      partial: true,
      content: 'part',
    });
  });

  it('keeps content after the third space untouched', () => {
    const r = parseCriLine('2026-11-21T10:00:00Z stdout F  two  spaces\tand tab é日本😀\uFFFD ');
    expect(isParseFailure(r) ? r.error : r.content).toBe(' two  spaces\tand tab é日本😀\uFFFD ');
  });

  it('treats a trailing space after the tag as an empty record', () => {
    expect(parseCriLine('2026-11-21T10:00:01Z stdout F ')).toEqual({
      time: '2026-11-21T10:00:01.000000000Z',
      stream: 'stdout',
      partial: false,
      content: '',
    });
  });

  it('reads only the first tag', () => {
    const full = parseCriLine('2026-11-21T10:00:02Z stdout F:foo y');
    const part = parseCriLine('2026-11-21T10:00:02Z stdout P:x:y z');
    expect(isParseFailure(full) ? full.error : [full.partial, full.content]).toEqual([false, 'y']);
    expect(isParseFailure(part) ? part.error : [part.partial, part.content]).toEqual([true, 'z']);
  });

  it('removes one trailing CR from a full line only', () => {
    const content = (line: string) => {
      const r = parseCriLine(line);
      return isParseFailure(r) ? r.error : r.content;
    };
    expect(content('2026-11-21T10:00:00Z stdout F crlf\r')).toBe('crlf');
    expect(content('2026-11-21T10:00:00Z stdout F two\r\r')).toBe('two\r');
    expect(content('2026-11-21T10:00:00Z stdout F \r')).toBe('');
    expect(content('2026-11-21T10:00:00Z stdout F a\rb')).toBe('a\rb');
    expect(content('2026-11-21T10:00:00Z stdout P chunk\r')).toBe('chunk\r');
  });

  it.each([
    ['empty line', '', 'cri: empty line'],
    ['not CRI at all', 'xyz', 'cri: invalid timestamp "xyz"'],
    ['text line', 'hello world', 'cri: invalid timestamp "hello"'],
    ['docker JSON', '{"log":"x\\n"}', 'cri: invalid timestamp "{\\"log\\":\\"x\\\\n\\"}"'],
    ['month 13', '2026-13-01T00:00:00Z stdout F x', 'cri: invalid timestamp "2026-13-01T00:00:00Z"'],
    ['timestamp alone', '2026-11-21T10:00:00Z', 'cri: stream not found'],
    ['unknown stream', '2026-11-21T10:00:00Z foo F x', 'cri: invalid stream "foo"'],
    ['stream prefix', '2026-11-21T10:00:00Z stdoutx F x', 'cri: invalid stream "stdoutx"'],
    ['stream case', '2026-11-21T10:00:00Z STDOUT F x', 'cri: invalid stream "STDOUT"'],
    ['double space', '2026-11-21T10:00:00Z  stdout F x', 'cri: invalid stream ""'],
    ['no tag', '2026-11-21T10:00:00Z stdout', 'cri: log tag not found'],
    ['no space after tag', '2026-11-21T10:00:03Z stdout F', 'cri: log tag not found'],
    ['unknown tag', '2026-11-21T10:00:00Z stdout X y', 'cri: invalid log tag "X"'],
    ['two-letter tag', '2026-11-21T10:00:00Z stdout PF y', 'cri: invalid log tag "PF"'],
    ['empty tag', '2026-11-21T10:00:00Z stdout  y', 'cri: invalid log tag ""'],
    ['lowercase tag', '2026-11-21T10:00:00Z stdout f y', 'cri: invalid log tag "f"'],
  ])('rejects %s', (_name, line, error) => {
    expect(parseCriLine(line)).toEqual({ error });
  });

  it('cuts quoted input in errors to 64 characters', () => {
    const r = parseCriLine('x'.repeat(20_000));
    expect(r).toEqual({ error: `cri: invalid timestamp "${'x'.repeat(64)}"…` });
    const s = parseCriLine(`2026-11-21T10:00:00Z ${'s'.repeat(100)} F x`);
    expect(s).toEqual({ error: `cri: invalid stream "${'s'.repeat(64)}"…` });
  });
});
