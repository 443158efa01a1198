import { describe, expect, it } from 'vitest';
import { parseConfig } from '../agent/config/load.ts';
import { createLogger, RateLimitedLog } from '../agent/log.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import type { LogRecord } from '../agent/record.ts';
import { Redact, redactConfig } from '../agent/transforms/redact.ts';
import { luhnValid } from '../agent/transforms/redact_patterns.ts';
import { sampleValue } from './helpers/agent_harness.ts';

function redactor(config: Record<string, unknown> = {}) {
  const metrics = new SelfMetrics('test');
  const log = createLogger('error');
  const r = new Redact(redactConfig.parse({ type: 'redact', inputs: ['c'], ...config }), {
    name: 'scrub',
    metrics,
    log,
    warnings: new RateLimitedLog(log),
    emit: () => {},
  });
  return { r, metrics };
}

/** [line, the line as it must come out]: each secret kind, then look-alikes that must stay as they are. */
const CORPUS: [string, string][] = [
  ['user alice@example.com logged in', 'user [REDACTED:email] logged in'],
  ['mail to First.Last+tag@mail.sub.example.co.uk, cc bob@corp.io', 'mail to [REDACTED:email], cc [REDACTED:email]'],
  ['Authorization: Bearer eyZhbGciOiJIUzI1NiJ9abcdef0123456789', 'Authorization: Bearer [REDACTED:bearer_token]'],
  ['header authorization=bearer 0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d', 'header authorization=bearer [REDACTED:bearer_token]'],
  ['Authorization: Basic YWxpY2U6czNjcjN0', 'Authorization: Basic [REDACTED:basic_auth]'],
  ['fetching https://alice:s3cr3t@registry.example.com/v2/', 'fetching https://alice:[REDACTED:basic_auth]@registry.example.com/v2/'],
  [
    'token=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U done',
    'token=[REDACTED:jwt] done',
  ],
  ['paid with 4111 1111 1111 1111 today', 'paid with [REDACTED:credit_card] today'],
  ['card=5500-0000-0000-0004;', 'card=[REDACTED:credit_card];'],
  ['amex 378282246310005 ok', 'amex [REDACTED:credit_card] ok'],
  ['key AKIAIOSFODNN7EXAMPLE in use', 'key [REDACTED:aws_access_key] in use'],
  ['aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ok', 'aws_secret_access_key = [REDACTED:aws_secret_key] ok'],
  ['maps key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY&q=x', 'maps key=[REDACTED:gcp_api_key]&q=x'],
  ['from 10.0.12.7 to 192.168.1.254.', 'from [REDACTED:ipv4] to [REDACTED:ipv4].'],
  ['peer fe80::1ff:fe23:4567:890a port 443 and 2001:db8:85a3::8a2e:370:7334', 'peer [REDACTED:ipv6] port 443 and [REDACTED:ipv6]'],
  // Look-alikes: nothing here is a secret.
  ['npm install left-pad@1.3.0 and user@localhost', 'npm install left-pad@1.3.0 and user@localhost'],
  ['the bearer of bad news; basic setup done', 'the bearer of bad news; basic setup done'],
  ['Basic authentication disabled', 'Basic authentication disabled'],
  ['order 4111111111111112 (fails Luhn), epoch 1732184400123, id 1234567890123456', 'order 4111111111111112 (fails Luhn), epoch 1732184400123, id 1234567890123456'],
  ['phone 4111-1111 1111-1111 mixed separators', 'phone 4111-1111 1111-1111 mixed separators'],
  ['version 1.2.3.4.5 and 10.0.0.256 and 01.2.3.4', 'version 1.2.3.4.5 and 10.0.0.256 and 01.2.3.4'],
  ['at 10:00:00.123 std::vector dead:beef ::1', 'at 10:00:00.123 std::vector dead:beef ::1'],
  ['AKIA1234 is too short, eyJ alone is not a token', 'AKIA1234 is too short, eyJ alone is not a token'],
  ['https://example.com/path@v2 has no password', 'https://example.com/path@v2 has no password'],
];

describe('redact: the built-in patterns over a corpus of secrets and look-alikes', () => {
  it('removes every secret and changes nothing else', () => {
    const { r, metrics } = redactor({ patterns: ['email', 'bearer_token', 'basic_auth', 'jwt', 'credit_card', 'aws_access_key', 'aws_secret_key', 'gcp_api_key', 'ipv4', 'ipv6'], replacement: '[REDACTED:{pattern}]' });
    for (const [line, expected] of CORPUS) expect(r.redactText(line), line).toBe(expected);
    return metrics.registry.metrics().then((text) => {
      expect(sampleValue(text, 'telemetry_agent_redactions_total', { transform: 'scrub', pattern: 'email' })).toBe(3);
      expect(sampleValue(text, 'telemetry_agent_redactions_total', { transform: 'scrub', pattern: 'credit_card' })).toBe(3);
      expect(sampleValue(text, 'telemetry_agent_redactions_total', { transform: 'scrub', pattern: 'ipv6' })).toBe(2);
    });
  });

  it('the default patterns leave IP addresses alone (asked for by name)', () => {
    const { r } = redactor();
    expect(r.redactText('alice@example.com from 10.0.0.1')).toBe('[REDACTED] from 10.0.0.1');
  });

  it('Luhn: the check digit decides', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(luhnValid('378282246310005')).toBe(true);
  });

  it('redacts every string of a parsed body at any depth, keys and other values untouched, and chosen attributes', () => {
    const { r } = redactor({ attributes: ['http.url'] });
    const attributes = Object.freeze({ 'http.url': 'https://bob:hunter22@api.example.com/x', 'log.iostream': 'stdout' });
    const resource = Object.freeze({ 'k8s.pod.name': 'web-1' });
    const body = { msg: 'login alice@example.com', 'alice@example.com': 1, nested: { list: ['ok', 'card 4111 1111 1111 1111'], n: 42 }, clean: { a: 'b' } };
    const input: LogRecord[] = [
      { timestamp: 't', observedTimestamp: 'o', body, attributes, resource },
      { timestamp: 't2', observedTimestamp: 'o', body: 'nothing here', attributes: Object.freeze({ 'log.iostream': 'stdout' }), resource },
    ];
    let out: LogRecord[] = [];
    r.process(input, {} as never, (records) => (out = records));
    expect(out[0]!.body).toEqual({
      msg: 'login [REDACTED]',
      'alice@example.com': 1,
      nested: { list: ['ok', 'card [REDACTED]'], n: 42 },
      clean: { a: 'b' },
    });
    expect((out[0]!.body as { clean: object }).clean).toBe(body.clean);
    expect(out[0]!.attributes).toEqual({ 'http.url': 'https://bob:[REDACTED]@api.example.com/x', 'log.iostream': 'stdout' });
    expect(out[0]!.resource).toBe(resource);
    // The input record is not changed (another branch may hold it); a clean record passes as it is.
    expect(input[0]!.body).toBe(body);
    expect(body.msg).toBe('login alice@example.com');
    expect(out[1]).toBe(input[1]);
  });
});

describe('redact: custom RE2 patterns', () => {
  it('replaces the first capture group when there is one, else the match', () => {
    const { r } = redactor({ patterns: [], custom: { order_token: 'tok_[A-Za-z0-9]{24}', session: 'session=([0-9a-f]{8})' } });
    expect(r.redactText('tok_ABCDEFGHIJKLMNOPQRSTUVWX session=deadbeef end')).toBe('[REDACTED] session=[REDACTED] end');
  });

  it('a pattern that backtracks catastrophically in JavaScript runs in linear time', () => {
    // /(a+)+$/ on 30 a's and a ! takes JavaScript's engine minutes; RE2 semantics make it one pass.
    const { r } = redactor({ patterns: [], custom: { evil: '(a+)+$', evil2: '(x+x+)+y' } });
    const line = 'a'.repeat(100_000) + '!';
    expect(r.redactText(line)).toBe(line);
    expect(r.redactText('x'.repeat(50_000))).toBe('x'.repeat(50_000));
    expect(r.redactText('aaaa')).toBe('[REDACTED]');
  });

  it('validate rejects what is not RE2 (lookaround, backreferences) with the key path', () => {
    const cfg = (pattern: string) => `sources:\n  c: { type: container_logs }\ntransforms:\n  scrub: { type: redact, inputs: [c], custom: { bad: ${JSON.stringify(pattern)} } }\noutputs:\n  o: { type: stdout, inputs: [scrub] }\n`;
    expect(() => parseConfig(cfg('(?=foo)bar'), 'a.yaml', {})).toThrow(
      'transforms.scrub.custom.bad: not an RE2 regex: error parsing regexp: invalid or unsupported Perl syntax: `(?=` (RE2 has no lookaround or backreferences)',
    );
    expect(() => parseConfig(cfg('(a)\\1'), 'a.yaml', {})).toThrow('transforms.scrub.custom.bad: not an RE2 regex: error parsing regexp: invalid escape sequence: `\\1`');
    expect(() => parseConfig(cfg('x').replace('custom', 'patterns: [emails], custom'), 'a.yaml', {})).toThrow('transforms.scrub.patterns[0]: expected one of');
  });
});
