/**
 * `${VAR}` and `${VAR:-default}` expansion over the raw config text, so a substituted value takes
 * the YAML type it looks like (a port number stays a number). `$${` writes a literal `${`.
 * Where each value landed in the expanded text is kept, so an error about it can name the
 * variable instead of echoing what may be a secret.
 */
export interface EnvProblem {
  line: number;
  message: string;
}

/** A value taken from the environment: `[start, end)` in the expanded text. */
export interface Substitution {
  name: string;
  value: string;
  start: number;
  end: number;
}

const REFERENCE = /\$\$\{|\$\{([^}]*)\}/g;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function expandEnv(
  text: string,
  env: NodeJS.ProcessEnv,
  maxBytes = Infinity,
): { text: string; problems: EnvProblem[]; substitutions: Substitution[] } {
  const problems: EnvProblem[] = [];
  const substitutions: Substitution[] = [];
  const lines = text.split('\n');
  let offset = 0; // of the current line in the expanded text
  let size = text.length;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.includes('${')) {
      // Comments may mention ${VAR} in prose; leave them alone.
      const commentAt = line.search(/(^|\s)#/);
      const code = commentAt >= 0 ? line.slice(0, commentAt) : line;
      const rest = commentAt >= 0 ? line.slice(commentAt) : '';
      let out = '';
      let last = 0;
      for (const m of code.matchAll(REFERENCE)) {
        out += code.slice(last, m.index);
        last = m.index + m[0].length;
        const replacement = substitute(m[0], m[1], env, i + 1, problems);
        if (replacement.name !== undefined && replacement.text !== '') {
          substitutions.push({ name: replacement.name, value: replacement.text, start: offset + out.length, end: offset + out.length + replacement.text.length });
        }
        out += replacement.text;
        size += replacement.text.length - m[0].length;
        if (size > maxBytes) {
          problems.push({ line: i + 1, message: `with \${${replacement.name ?? '?'}} and the references before it expanded, the config is larger than ${maxBytes} bytes` });
          return { text: '', problems, substitutions: [] };
        }
      }
      lines[i] = out + code.slice(last) + rest;
    }
    offset += lines[i]!.length + 1;
  }
  return { text: lines.join('\n'), problems, substitutions };
}

function substitute(
  whole: string,
  inner: string | undefined,
  env: NodeJS.ProcessEnv,
  line: number,
  problems: EnvProblem[],
): { text: string; name?: string } {
  if (whole === '$${') return { text: '${' };
  const sep = inner!.indexOf(':-');
  const name = sep >= 0 ? inner!.slice(0, sep) : inner!;
  if (!NAME.test(name)) {
    problems.push({ line, message: `"${whole}" is not a valid variable reference (use \${NAME} or \${NAME:-default})` });
    return { text: whole };
  }
  const value = env[name];
  if (value !== undefined && value !== '') return { text: value, name };
  // A default is part of the config text, not a secret: it is shown like any other value.
  if (sep >= 0) return { text: inner!.slice(sep + 2) };
  if (value === '') return { text: value, name };
  problems.push({ line, message: `environment variable ${name} is not set (give a default with \${${name}:-value})` });
  return { text: whole };
}
