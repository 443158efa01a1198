#!/usr/bin/env -S node --max-semi-space-size=8 --max-old-space-size=256
import { parseArgs } from 'node:util';
import { Agent } from './agent.ts';
import { runUntilSignal } from './lifecycle.ts';
import { ConfigError, loadConfigFile } from './config/load.ts';
import { VERSION } from './version.ts';

const USAGE = `telemetry-agent ${VERSION}: telemetry pipeline agent for Kubernetes nodes

Usage:
  telemetry-agent run --config FILE        run until SIGTERM/SIGINT (-c FILE)
  telemetry-agent validate --config FILE   check a config; exit 0 when valid, 2 with one line per problem
  telemetry-agent demo [--seconds N]       simulated node (no cluster needed): logs to stdout, /metrics on localhost
  telemetry-agent --version

Exit codes: 0 clean stop, 2 bad config or arguments, 1 anything else.
`;

class UsageError extends Error {}

function configPath(values: { config?: string }): string {
  if (!values.config) throw new UsageError('missing --config FILE');
  return values.config;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      seconds: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
  });
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const command = positionals[0];
  if (values.help || command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  switch (command) {
    case 'validate': {
      const file = configPath(values);
      loadConfigFile(file);
      process.stdout.write(`${file}: valid\n`);
      return 0;
    }
    case 'run': {
      const config = loadConfigFile(configPath(values));
      return runUntilSignal(new Agent(config), { configFile: configPath(values) });
    }
    case 'demo': {
      const { runDemo } = await import('./demo/demo.ts');
      return runDemo({ seconds: values.seconds ? Number(values.seconds) : undefined });
    }
    default:
      throw new UsageError(command ? `unknown command "${command}"` : 'missing command');
  }
}

if (Number(process.versions.node.split('.')[0]) < 24) {
  process.stderr.write(
    `telemetry-agent needs Node 24 or newer (this is ${process.version}); run it through npm (npm start, npx telemetry-agent), which uses the Node 24 pinned in devDependencies\n`,
  );
  process.exit(1);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`telemetry-agent: ${(err as Error).message}\n\n${USAGE}`);
      process.exit(2);
    }
    process.stderr.write(`telemetry-agent: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
