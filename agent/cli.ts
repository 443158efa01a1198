#!/usr/bin/env -S node --max-semi-space-size=16 --min-semi-space-size=16 --max-old-space-size=256
import { parseArgs } from 'node:util';
import { processSignals } from './process_signals.ts';
import { VERSION } from './version.ts';

// Signals first: SIGTERM during the half second the agent's modules take to load must be a clean
// exit 0, not Node's default death (143). Only the three small modules above load before this
// line; the agent's own are imported where a command needs them.
const signals = processSignals();

const USAGE = `telemetry-agent ${VERSION}: telemetry pipeline agent for Kubernetes nodes

Usage:
  telemetry-agent run --config FILE        run until SIGTERM/SIGINT (-c FILE)
  telemetry-agent validate --config FILE   check a config; exit 0 when valid, 2 with one line per problem
      --print                              and print it resolved: every default filled in, secrets masked
      --check                              and check this node: data_dir writable, files readable, programs
                                           present, server.listen free, receivers and the Kubernetes API reachable
  telemetry-agent tap COMPONENT            print records flowing through a source, transform or output of a
                                           running agent, sampled, until --limit or Ctrl-C
      --rate N                             records per second at most (default 20)
      --limit N                            stop after N records
      --json                               the NDJSON records instead of one readable line each
      --token-file FILE                    bearer token, for an agent on another host (server.tap.token_file)
  telemetry-agent top                      live records/s, errors, drops, buffers and tail lag per component (q quits)
      --interval DURATION                  refresh period (default 1s)
      --once                               print one table (rates over --interval) and exit
  telemetry-agent test FILE...             pipeline unit tests: input lines and pod metadata in, expected records
                                           and metrics out; exit 0 all pass, 1 a test failed, 2 a bad test file
  telemetry-agent demo [--seconds N]       the whole mission on one machine, no cluster (npm start; --help: what it shows)
  telemetry-agent --version

tap and top find the agent at --agent URL, else the server.listen of --config FILE, else
$TELEMETRY_AGENT_URL, else http://127.0.0.1:9464 (right inside the agent's pod: kubectl exec).

Exit codes: 0 clean stop, 2 bad config or arguments, 1 anything else.
`;

class UsageError extends Error {}

/** An error that means "bad config or arguments" (ConfigError): exit 2 with its message, no stack. */
interface ExitTwo {
  exitTwo: true;
  message: string;
}

function positiveNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n)) throw new UsageError(`${flag}: expected a positive number, got ${JSON.stringify(value)}`);
  return n;
}

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
      print: { type: 'boolean' },
      check: { type: 'boolean' },
      agent: { type: 'string' },
      rate: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      'token-file': { type: 'string' },
      interval: { type: 'string' },
      once: { type: 'boolean' },
      port: { type: 'string' },
      record: { type: 'string' },
      records: { type: 'boolean' },
    },
  });
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const command = positionals[0];
  if (command === 'demo' && values.help) {
    const { DEMO_HELP } = await import('./demo/demo.ts');
    process.stdout.write(DEMO_HELP);
    return 0;
  }
  if (values.help || command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  switch (command) {
    case 'validate': {
      const file = configPath(values);
      const { loadConfigFile, ConfigError } = await import('./config/load.ts');
      const config = loadConfigFile(file);
      if (values.check) {
        const { checkTarget } = await import('./config/target_check.ts');
        const report = await checkTarget(config, { scope: 'target' });
        for (const note of report.notes) process.stderr.write(`${file}: note: ${note}\n`);
        if (report.problems.length > 0) throw new ConfigError(file, report.problems, 'valid, but does not work on this node');
        if (!values.print) process.stdout.write(`${file}: valid, and works on this node (${report.checked.join(', ')})\n`);
      }
      if (values.print) {
        const { printConfig } = await import('./config/print.ts');
        process.stdout.write(printConfig(config));
        return 0;
      }
      if (!values.check) process.stdout.write(`${file}: valid\n`);
      return 0;
    }
    case 'tap': {
      const component = positionals[1];
      if (!component) throw new UsageError('tap needs a component: telemetry-agent tap COMPONENT (the names under sources, transforms and outputs)');
      const { runTap, TapRefused } = await import('./commands/tap.ts');
      const { agentUrl } = await import('./commands/agent_url.ts');
      const stop = new AbortController();
      signals.onStop(
        () => stop.abort(),
        () => process.exit(0),
      );
      try {
        return await runTap({
          url: agentUrl(values),
          component,
          rate: positiveNumber(values.rate, '--rate'),
          limit: positiveNumber(values.limit, '--limit'),
          json: values.json,
          tokenFile: values['token-file'],
          signal: stop.signal,
        });
      } catch (err) {
        if (err instanceof TapRefused) throw new UsageError(err.message);
        throw err;
      }
    }
    case 'top': {
      const { runTop } = await import('./commands/top.ts');
      const { agentUrl } = await import('./commands/agent_url.ts');
      const { parseDuration } = await import('./config/units.ts');
      const intervalMs = values.interval === undefined ? 1000 : parseDuration(values.interval);
      if (!intervalMs) throw new UsageError(`--interval: expected a duration like 2s, got ${JSON.stringify(values.interval)}`);
      return runTop({ url: agentUrl(values), intervalMs, once: values.once ?? false });
    }
    case 'test': {
      const files = positionals.slice(1);
      if (files.length === 0) throw new UsageError('test needs at least one test file: telemetry-agent test FILE...');
      const { runPipelineTests } = await import('./commands/pipeline_test.ts');
      return runPipelineTests(files);
    }
    case 'run': {
      const file = configPath(values);
      // The port first (the kubelet's liveness probe), then everything else: see agent/early_port.ts.
      const { readConfigText } = await import('./config/read.ts');
      const text = readConfigText(file);
      const { EarlyPort, loadInSteps } = await import('./early_port.ts');
      const port = await EarlyPort.bind(text, process.env);
      try {
        await loadInSteps();
        const { parseConfig, ConfigError } = await import('./config/load.ts');
        const config = parseConfig(text, file);
        const [{ Agent, StartupError }, { runUntilSignal }] = await Promise.all([import('./agent.ts'), import('./lifecycle.ts')]);
        // Loading modules never lets the event loop turn: a signal that arrived meanwhile is
        // handled here, before anything starts.
        await new Promise((r) => setImmediate(r));
        if (signals.stopRequested) {
          port?.close();
          return 0;
        }
        try {
          return await runUntilSignal(new Agent(config, undefined, { port }), { configFile: file, signals });
        } catch (err) {
          if (err instanceof StartupError) throw new ConfigError(file, err.problems, 'cannot start on this node');
          throw err;
        }
      } catch (err) {
        port?.close();
        throw err;
      }
    }
    case 'demo': {
      const { runDemo } = await import('./demo/demo.ts');
      const port = values.port === undefined ? undefined : Number(values.port);
      if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port < 65536)) throw new UsageError(`--port: expected a port number, got ${JSON.stringify(values.port)}`);
      return runDemo({ seconds: positiveNumber(values.seconds, '--seconds'), port, record: values.record, records: values.records });
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
    if ((err as Partial<ExitTwo>)?.exitTwo) {
      process.stderr.write(`${(err as ExitTwo).message}\n`);
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
