/**
 * logfmt bodies (`level=info msg="request served" status=200 cached`), as go-logfmt, logrus and
 * Go's slog TextHandler write them.
 *
 * The grammar, one pass of charCode checks, no regex:
 * - pairs are separated by spaces or tabs; leading and trailing ones are ignored;
 * - a key is one or more characters other than space, tab, control characters, `=` and `"`;
 * - `key=value` with a bare value: everything up to the next space or tab, possibly empty (`key=`)
 *   and possibly holding `=` (`url=/x?a=1`: writers that should quote it often do not), but no `"`;
 * - `key="value"` with a quoted value: backslash escapes as in Go's strconv.Quote (`\"`, `\\`, `\n`,
 *   `\t`, `\r`, `\uXXXX`…); the closing quote must be followed by a space, a tab or the end;
 * - a bare `key` is a flag: its value is `true`.
 *
 * A line is logfmt when the whole of it follows that grammar and its first pair is `key=value`. The
 * second condition keeps text out: `Starting server port=8080` or `hello world` would parse (as
 * flags), but they are messages, and stay the string body. It also makes the common rejection cheap:
 * a text line is refused at its first space. Values stay strings: `status=200` cannot tell a
 * number from a code, and the backend can convert. A key given twice keeps its last value.
 */
export function parseLogfmt(text: string): Record<string, string | true> | undefined {
  const n = text.length;
  let i = 0;
  while (i < n && isSeparator(text.charCodeAt(i))) i++;
  if (i === n) return undefined;
  const fields: Record<string, string | true> = {};
  let first = true;
  while (i < n) {
    const keyStart = i;
    let c = text.charCodeAt(i);
    while (i < n && c !== 61 /* = */ && !isSeparator(c)) {
      if (c < 32 || c === 34 /* " */ || c === 127) return undefined;
      c = text.charCodeAt(++i);
    }
    if (i === keyStart) return undefined; // `=value`
    const key = text.slice(keyStart, i);
    if (i === n || c !== 61) {
      if (first) return undefined; // the first pair must have a value
      set(fields, key, true);
    } else {
      i++; // past `=`
      if (text.charCodeAt(i) === 34 /* " */) {
        const end = closingQuote(text, i + 1);
        if (end < 0) return undefined;
        set(fields, key, unquote(text, i + 1, end));
        i = end + 1;
        if (i < n && !isSeparator(text.charCodeAt(i))) return undefined; // `k="a"b`
      } else {
        const valueStart = i;
        for (c = text.charCodeAt(i); i < n && !isSeparator(c); c = text.charCodeAt(++i)) {
          if (c === 34 /* " */ || c < 32 || c === 127) return undefined;
        }
        set(fields, key, text.slice(valueStart, i));
      }
    }
    first = false;
    while (i < n && isSeparator(text.charCodeAt(i))) i++;
  }
  return fields;
}

function isSeparator(c: number): boolean {
  return c === 32 || c === 9;
}

/** A key named `__proto__` would set the prototype through `=`: make it an own property. */
function set(fields: Record<string, string | true>, key: string, value: string | true): void {
  if (key === '__proto__') Object.defineProperty(fields, key, { value, enumerable: true, writable: true, configurable: true });
  else fields[key] = value;
}

/** Index of the `"` that closes a value whose text starts at `from`, or -1. */
function closingQuote(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 92 /* \ */) i++;
    else if (c === 34 /* " */) return i;
  }
  return -1;
}

const SIMPLE_ESCAPES: Record<string, string> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  n: '\n',
  t: '\t',
  r: '\r',
  b: '\b',
  f: '\f',
  a: '\x07',
  v: '\v',
};

function unquote(text: string, start: number, end: number): string {
  const backslash = text.indexOf('\\', start);
  if (backslash < 0 || backslash >= end) return text.slice(start, end);
  let out = text.slice(start, backslash);
  for (let i = backslash; i < end; i++) {
    const ch = text[i]!;
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const e = text[++i]!;
    const simple = SIMPLE_ESCAPES[e];
    if (simple !== undefined) {
      out += simple;
    } else if ((e === 'u' || e === 'x') && isHex(text, i + 1, e === 'u' ? 4 : 2)) {
      const len = e === 'u' ? 4 : 2;
      out += String.fromCharCode(parseInt(text.slice(i + 1, i + 1 + len), 16));
      i += len;
    } else {
      out += '\\' + e; // unknown escape: kept as written rather than failing the whole line
    }
  }
  return out;
}

function isHex(text: string, from: number, len: number): boolean {
  for (let i = from; i < from + len; i++) {
    const c = text.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}
