/**
 * `${VAR}` and `${VAR:-default}` expansion over the raw config text, so a substituted value takes
 * the YAML type it looks like (a port number stays a number). `$${` writes a literal `${`.
 */
export interface EnvProblem {
  line: number;
  message: string;
}

const REFERENCE = /\$\$\{|\$\{([^}]*)\}/g;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function expandEnv(text: string, env: NodeJS.ProcessEnv): { text: string; problems: EnvProblem[] } {
  const problems: EnvProblem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.includes('${')) continue;
    // Comments may mention ${VAR} in prose; leave them alone.
    const commentAt = line.search(/(^|\s)#/);
    const code = commentAt >= 0 ? line.slice(0, commentAt) : line;
    const rest = commentAt >= 0 ? line.slice(commentAt) : '';
    lines[i] =
      code.replace(REFERENCE, (whole, inner: string | undefined) => {
        if (whole === '$${') return '${';
        const sep = inner!.indexOf(':-');
        const name = sep >= 0 ? inner!.slice(0, sep) : inner!;
        if (!NAME.test(name)) {
          problems.push({ line: i + 1, message: `"${whole}" is not a valid variable reference (use \${NAME} or \${NAME:-default})` });
          return whole;
        }
        const value = env[name];
        if (value !== undefined && value !== '') return value;
        if (sep >= 0) return inner!.slice(sep + 2);
        if (value === '') return value;
        problems.push({ line: i + 1, message: `environment variable ${name} is not set (give a default with \${${name}:-value})` });
        return whole;
      }) + rest;
  }
  return { text: lines.join('\n'), problems };
}
