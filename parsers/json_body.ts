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
  try {
    // Starting with `{` and parsing means an object: arrays and scalars cannot get here.
    return { body: JSON.parse(text) as JsonObject };
  } catch {
    return undefined;
  }
}
