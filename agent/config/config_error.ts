/** A config that cannot be used: one line per problem, each naming its key path. */
export class ConfigError extends Error {
  readonly problems: string[];
  /** The command line exits 2 with the message alone (agent/cli.ts). */
  readonly exitTwo = true;
  constructor(file: string, problems: string[], headline = 'invalid config') {
    super(`${file}: ${headline}\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.problems = problems;
  }
}
