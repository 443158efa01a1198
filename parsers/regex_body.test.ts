import { describe, it, expect } from 'vitest';
import { compileBodyRegex, compileRegex, regexProblem, RegexConfigError } from './regex_body.ts';

const NGINX = '^(?<remote_addr>\\S+) - (?<remote_user>\\S+) \\[(?<time_local>[^\\]]+)\\] "(?<request>[^"]*)" (?<status>\\d{3}) (?<body_bytes_sent>\\d+)';

describe('compileBodyRegex', () => {
  it('turns a matching line into its named groups', () => {
    const re = compileBodyRegex(NGINX, 'sources.web.parser.pattern');
    expect(re.groups).toEqual(['remote_addr', 'remote_user', 'time_local', 'request', 'status', 'body_bytes_sent']);
    expect(re.match('10.1.4.7 - - [21/Nov/2026:10:00:02 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.31"')).toEqual({
      remote_addr: '10.1.4.7',
      remote_user: '-',
      time_local: '21/Nov/2026:10:00:02 +0000',
      request: 'GET /healthz HTTP/1.1',
      status: '200',
      body_bytes_sent: '2',
    });
    expect(re.match('not an access log line')).toBeUndefined();
  });

  it('leaves out groups that took no part, and is stateless between lines', () => {
    const re = compileBodyRegex('(?<word>[a-z]+)|(?<number>\\d+)', 'k');
    expect(re.match('abc')).toEqual({ word: 'abc' });
    expect(re.match('123')).toEqual({ number: '123' });
    expect(re.match('abc')).toEqual({ word: 'abc' });
    expect(compileBodyRegex('(?i:level)=(?<level>\\w+)', 'k').match('LEVEL=warn')).toEqual({ level: 'warn' });
  });

  it('names the key path and the reason for a regex that does not compile', () => {
    expect(() => compileBodyRegex('^(?<level>\\w+', 'sources.app.parser.pattern')).toThrow(
      new RegexConfigError('sources.app.parser.pattern', 'invalid regex: Unterminated group'),
    );
    try {
      compileBodyRegex('*', 'sources.app.parser.pattern');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(RegexConfigError);
      expect((err as Error).message).toBe('sources.app.parser.pattern: invalid regex: Nothing to repeat');
      expect((err as RegexConfigError).keyPath).toBe('sources.app.parser.pattern');
    }
    expect(() => compileBodyRegex('(?P<level>\\w+)', 'sources.app.parser.pattern')).toThrow(
      'sources.app.parser.pattern: invalid regex: Invalid group ((?P<name>…) is Python/Go syntax: write (?<name>…))',
    );
    expect(() => compileBodyRegex('a\\', 'p')).toThrow('p: invalid regex: \\ at end of pattern');
  });

  it('rejects a pattern without named groups', () => {
    for (const p of ['^(\\w+) (\\d+)$', '', '\\(?<notagroup>\\)', '[(?<x>)]']) {
      expect(() => compileBodyRegex(p, 'sources.app.parser.pattern'), p).toThrow(
        'sources.app.parser.pattern: the regex has no named groups: name what to keep with (?<name>…)',
      );
    }
  });
});

describe('compileRegex and regexProblem', () => {
  it('compile a plain pattern (a multiline start_pattern) or explain why not', () => {
    expect(compileRegex('^\\d{4}-', 'sources.app.multiline.start_pattern').test('2026-11-21 x')).toBe(true);
    expect(() => compileRegex('[', 'sources.app.multiline.start_pattern')).toThrow(
      'sources.app.multiline.start_pattern: invalid regex: Unterminated character class',
    );
    expect(regexProblem('^\\S')).toBeUndefined();
    expect(regexProblem('a)')).toBe("invalid regex: Unmatched ')'");
  });
});
