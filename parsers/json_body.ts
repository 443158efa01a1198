/**
 * JSON bodies: a line an app wrote as a JSON object becomes the record's body object.
 *
 * Only objects. OpenTelemetry's AnyValue allows an array or a scalar as a body, but what a log
 * backend can index is fields: Elasticsearch maps a body by field names (an array of mixed values
 * breaks its mapping), Loki's and most query languages' JSON filters start from keys. And a scalar
 * would change what a plain line means: a line `200` or `true` is text that happens to be valid
 * JSON, and turning it into a number loses nothing but gains nothing either, while `"quoted"` would
 * lose its quotes. So an array or a scalar stays the original string body, as does anything that
 * does not parse: the caller keeps the line as it was and counts the failure if it wants to.
 */

export type JsonObject = { [key: string]: unknown };

/**
 * Deeper bodies stay text. JSON.parse builds any depth, but every encoder after it recurses:
 * JSON.stringify throws a RangeError at a few thousand levels, protobuf decoders refuse 100
 * nested messages. A 30 KB line of `[[[[…` must not become a batch no output can send.
 */
export const MAX_JSON_DEPTH = 64;

function isJsonSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13;
}

/**
 * Parses `text` when it is one JSON object, surrounding JSON whitespace allowed. Returns undefined
 * for anything else, without throwing. Plain text lines, the common case, are rejected on their
 * first non-space character; a line cut short (max_line_bytes, a flushed partial) on its last one,
 * before JSON.parse would build an exception for it.
 *
 * Duplicate keys keep the last value (JSON.parse). A `__proto__` key is an own property, as
 * JSON.parse makes it, not a prototype: later copies must use spread or defineProperty, not `=`.
 */
export function parseJsonBody(text: string): { body: JsonObject } | undefined {
  let start = 0;
  let end = text.length - 1;
  while (start <= end && isJsonSpace(text.charCodeAt(start))) start++;
  if (text.charCodeAt(start) !== 123 /* { */) return undefined;
  while (end > start && isJsonSpace(text.charCodeAt(end))) end--;
  if (text.charCodeAt(end) !== 125 /* } */) return undefined;
  if (nestsDeeperThan(text, MAX_JSON_DEPTH)) return undefined;
  try {
    // Starting with `{` and parsing means an object: arrays and scalars cannot get here.
    return { body: JSON.parse(text) as JsonObject };
  } catch {
    return undefined;
  }
}

/**
 * Whether brackets nest deeper than `max` outside strings. Counting `{` and `[` first (native
 * indexOf) settles almost every line: fewer than `max` of them cannot nest deeper.
 */
function nestsDeeperThan(text: string, max: number): boolean {
  let opens = 0;
  for (let i = text.indexOf('{'); i !== -1 && opens <= max; i = text.indexOf('{', i + 1)) opens++;
  for (let i = text.indexOf('['); i !== -1 && opens <= max; i = text.indexOf('[', i + 1)) opens++;
  if (opens <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}
