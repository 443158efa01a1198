/**
 * Include/exclude glob lists over label and annotation keys. Keys hold `/` and `.`
 * (`app.kubernetes.io/name`), so path globs do not fit: here `*` is any run of characters and `?`
 * one, nothing else is special. A key is kept when it matches an include and no exclude.
 */
export class KeyFilter {
  private readonly include: RegExp | undefined;
  private readonly exclude: RegExp | undefined;
  /** Nothing can pass: the caller may skip the work entirely. */
  readonly none: boolean;

  constructor(include: readonly string[], exclude: readonly string[]) {
    this.include = compile(include);
    this.exclude = compile(exclude);
    this.none = this.include === undefined;
  }

  keeps(key: string): boolean {
    return this.include !== undefined && this.include.test(key) && !(this.exclude?.test(key) ?? false);
  }
}

function compile(globs: readonly string[]): RegExp | undefined {
  if (globs.length === 0) return undefined;
  const alternatives = globs.map((g) =>
    g
      .split('')
      .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\/-]/g, '\\$&')))
      .join(''),
  );
  return new RegExp(`^(?:${alternatives.join('|')})$`, 's');
}
