import { isIPv6 } from 'node:net';
import { RE2JS } from 're2js';

/**
 * What `redact` looks for. Every pattern is RE2 syntax run by re2js (linear time in the input,
 * whatever the pattern: no input can make a redaction hang the agent). A pattern replaces its
 * first capture group when it has one (`Bearer <token>` keeps `Bearer `), else the whole match;
 * `valid` rejects look-alikes the expression alone cannot (Luhn, octet ranges, IPv6 grammar), and
 * `hint` is a cheap substring test that skips the regex on lines that cannot match.
 */
export interface RedactPattern {
  readonly name: string;
  readonly regex: RE2JS;
  readonly group: number;
  readonly hint?: (text: string) => boolean;
  readonly valid?: (secret: string, text: string, start: number, end: number) => boolean;
}

const hasDigit = (s: string) => /\d/.test(s);
const CARD_HINT = /\d{4}[ -]?\d{4}/;

/** Luhn checksum over the digits of `s` (separators ignored). */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** An issuer's number: Visa, Mastercard, American Express, Discover, JCB, Diners Club, by prefix and length. */
function cardNumber(digits: string): boolean {
  const n = digits.length;
  const p2 = Number(digits.slice(0, 2));
  const p3 = Number(digits.slice(0, 3));
  const p4 = Number(digits.slice(0, 4));
  const issuer =
    (digits[0] === '4' && (n === 13 || n === 16 || n === 19)) ||
    (((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) && n === 16) ||
    ((p2 === 34 || p2 === 37) && n === 15) ||
    ((p4 === 6011 || p2 === 65 || (p3 >= 644 && p3 <= 649)) && n >= 16 && n <= 19) ||
    (p4 >= 3528 && p4 <= 3589 && n >= 16 && n <= 19) ||
    (((p3 >= 300 && p3 <= 305) || p2 === 36 || p2 === 38) && n === 14);
  return issuer && luhnValid(digits);
}

/** Not part of something longer: no digit, and no `.` followed or preceded by a digit, on either side (`1.2.3.4.5`, a longer id). */
function standsAlone(text: string, start: number, end: number): boolean {
  const digit = (i: number) => {
    const c = text.charCodeAt(i);
    return c >= 48 && c <= 57;
  };
  if (start > 0 && (digit(start - 1) || (text[start - 1] === '.' && digit(start - 2)))) return false;
  return !(digit(end) || (text[end] === '.' && digit(end + 1)));
}

const re = (source: string) => RE2JS.compile(source);

/** In the order they are applied: credentials before e-mail addresses (`https://user:pass@host` is a URL, not an address). */
export const BUILTIN_PATTERNS: Record<string, readonly RedactPattern[]> = {
  bearer_token: [
    {
      name: 'bearer_token',
      // The token of `Authorization: Bearer <token>`; 16 characters at least, so "bearer of" stays.
      regex: re('(?i)\\bbearer\\s+([A-Za-z0-9._~+/-]{16,}=*)'),
      group: 1,
      hint: (t) => t.includes('earer') || t.includes('EARER'),
    },
  ],
  basic_auth: [
    {
      name: 'basic_auth',
      // `Authorization: Basic <base64 of user:password>`: only what decodes to user:password.
      regex: re('(?i)\\bbasic\\s+([A-Za-z0-9+/]{8,}={0,2})'),
      group: 1,
      hint: (t) => t.includes('asic') || t.includes('ASIC'),
      valid: (secret) => Buffer.from(secret, 'base64').toString('latin1').includes(':'),
    },
    {
      name: 'basic_auth',
      // The password of a URL's user info: `https://user:password@host`.
      regex: re('[A-Za-z][A-Za-z0-9+.-]*://[^\\s/:@]+:([^\\s/@]+)@'),
      group: 1,
      hint: (t) => t.includes('://'),
    },
  ],
  jwt: [
    {
      name: 'jwt',
      regex: re('\\beyJ[A-Za-z0-9_-]{4,}\\.eyJ[A-Za-z0-9_-]{4,}\\.[A-Za-z0-9_-]*'),
      group: 0,
      hint: (t) => t.includes('eyJ'),
    },
  ],
  credit_card: [
    {
      name: 'credit_card',
      regex: re('\\b\\d(?:[ -]?\\d){12,18}\\b'),
      group: 0,
      // Two groups of four digits, at most one separator apart: most lines with digits (times, ids) have none.
      hint: (t) => CARD_HINT.test(t),
      valid: (secret, text, start, end) => {
        const digits = secret.replace(/[ -]/g, '');
        // One kind of separator, in the places card numbers have them, or none.
        if (/ /.test(secret) && /-/.test(secret)) return false;
        return standsAlone(text, start, end) && cardNumber(digits);
      },
    },
  ],
  aws_access_key: [
    {
      name: 'aws_access_key',
      regex: re('\\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\\b'),
      group: 0,
      hint: (t) => t.includes('IA') || t.includes('CCA'),
    },
  ],
  aws_secret_key: [
    {
      name: 'aws_secret_key',
      regex: re('(?i)aws_?secret_?access_?key["\']?\\s*[:=]\\s*["\']?([A-Za-z0-9/+=]{40})(?:[^A-Za-z0-9/+=]|$)'),
      group: 1,
      hint: (t) => /secret/i.test(t),
    },
  ],
  gcp_api_key: [
    {
      name: 'gcp_api_key',
      regex: re('\\b(AIza[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)'),
      group: 1,
      hint: (t) => t.includes('AIza'),
    },
  ],
  email: [
    {
      name: 'email',
      regex: re('[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,24}\\b'),
      group: 0,
      hint: (t) => t.includes('@'),
    },
  ],
  ipv4: [
    {
      name: 'ipv4',
      regex: re('\\b(?:\\d{1,3}\\.){3}\\d{1,3}\\b'),
      group: 0,
      hint: (t) => t.includes('.'),
      valid: (secret, text, start, end) => standsAlone(text, start, end) && secret.split('.').every((o) => Number(o) <= 255 && (o === '0' || !o.startsWith('0'))),
    },
  ],
  ipv6: [
    {
      name: 'ipv6',
      regex: re('(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}'),
      group: 0,
      hint: (t) => t.includes(':'),
      valid: (secret, text, start, end) => {
        const groups = secret.split(':').filter((g) => g !== '');
        const edge = (c: number) => Number.isNaN(c) || !/[0-9A-Za-z:.]/.test(String.fromCharCode(c));
        return edge(text.charCodeAt(start - 1)) && edge(text.charCodeAt(end)) && groups.length >= 2 && hasDigit(secret) && isIPv6(secret);
      },
    },
  ],
};

/** `patterns` when the config leaves it out: every built-in but the IP addresses (asked for by name). */
export const DEFAULT_PATTERNS = ['email', 'bearer_token', 'basic_auth', 'jwt', 'credit_card', 'aws_access_key', 'aws_secret_key', 'gcp_api_key'];

/** A user's RE2 pattern; throws RE2's syntax error (a lookahead, a backreference) for the config. */
export function customPattern(name: string, source: string): RedactPattern {
  const regex = RE2JS.compile(source);
  return { name, regex, group: regex.groupCount() > 0 ? 1 : 0 };
}
