/**
 * Regex bodies: a user's pattern with named groups turns a text line into an object of those
 * groups (`^(?<ip>\S+) \S+ \S+ \[(?<time>[^\]]+)\] "(?<request>[^"]*)" (?<status>\d{3})`).
 *
 * Patterns come from the config, so they are compiled once, when the config is loaded or
 * validated, and a bad one is a config error naming its key path. The syntax is JavaScript's:
 * `(?<name>…)` for a named group and `(?i:…)` for a case-insensitive part. Patterns run on every
 * line of the sources that use them, and JavaScript regexes have no time limit: a pattern with
 * nested quantifiers over the same characters (`(a+)+$`) can take exponential time on a line that
 * almost matches. Anchor patterns and keep quantified parts disjoint.
 */

/** A regex from the config that cannot be used; the message is `<key path>: <reason>`. */
export class RegexConfigError extends Error {
  readonly keyPath: string;
  readonly reason: string;

  constructor(keyPath: string, reason: string) {
    super(`${keyPath}: ${reason}`);
    this.name = 'RegexConfigError';
    this.keyPath = keyPath;
    this.reason = reason;
  }
}

/**
 * Why a pattern cannot be used, or undefined when it can: `invalid regex: Unterminated group` (the
 * engine's own words). For a schema refinement, which adds the key path itself.
 */
export function regexProblem(pattern: string): string | undefined {
  try {
    new RegExp(pattern);
    return undefined;
  } catch (err) {
    // V8: `Invalid regular expression: /<source>/<flags>: <reason>`; reasons contain no `: `.
    const message = (err as Error).message;
    const at = message.lastIndexOf(': ');
    let reason = `invalid regex: ${at < 0 ? message : message.slice(at + 2)}`;
    if (pattern.includes('(?P<')) reason += ' ((?P<name>…) is Python/Go syntax: write (?<name>…))';
    return reason;
  }
}

/** Compiles a pattern from the config (a multiline start_pattern, say) or throws RegexConfigError. */
export function compileRegex(pattern: string, keyPath: string): RegExp {
  const problem = regexProblem(pattern);
  if (problem !== undefined) throw new RegexConfigError(keyPath, problem);
  return new RegExp(pattern);
}

export interface BodyRegex {
  readonly pattern: string;
  /** The named groups, in the order they appear. */
  readonly groups: readonly string[];
  /**
   * The named groups of the first match in `text`, or undefined when it does not match. Groups that
   * took no part in the match (`(?<a>x)|(?<b>y)`) are left out rather than set to undefined.
   */
  match(text: string): Record<string, string> | undefined;
}

/**
 * Compiles a body pattern, which must have at least one named group (without one it could only
 * ever produce an empty object). Throws RegexConfigError naming `keyPath`.
 */
export function compileBodyRegex(pattern: string, keyPath: string): BodyRegex {
  const re = compileRegex(pattern, keyPath);
  // The engine lists every named group in `groups` of any match, so match the empty string through
  // an empty alternative: the pattern compiled, so wrapping it cannot unbalance anything.
  const names = Object.keys(new RegExp(`(?:${pattern})|`).exec('')!.groups ?? {});
  if (names.length === 0) {
    throw new RegexConfigError(keyPath, 'the regex has no named groups: name what to keep with (?<name>…)');
  }
  return {
    pattern,
    groups: names,
    match(text: string): Record<string, string> | undefined {
      const m = re.exec(text);
      if (m === null) return undefined;
      const g = m.groups!;
      const out: Record<string, string> = {};
      for (const name of names) {
        const v = g[name];
        if (v === undefined) continue;
        // `out.__proto__ = v` would be ignored (a string is no prototype): make it an own key.
        if (name === '__proto__') Object.defineProperty(out, name, { value: v, enumerable: true, writable: true, configurable: true });
        else out[name] = v;
      }
      return out;
    },
  };
}
