import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../agent/config/load.ts';
import { enrichmentKeys } from '../agent/enrichment/config.ts';
import type { AgentConfig } from '../agent/config/schema.ts';
import type { ContainerLogsConfig } from '../agent/sources/container_logs/config.ts';
import { VERSION } from '../agent/version.ts';
import { CLI, NODE } from './helpers/child_agent.ts';

/** The `containers` source of a config() config, narrowed to its type. */
function containers(cfg: AgentConfig): ContainerLogsConfig {
  const src = cfg.sources.containers!;
  if (src.type !== 'container_logs') throw new Error(`expected a container_logs source, got ${src.type}`);
  return src;
}

/** `sources:` with one container_logs source named `containers` plus `extra` keys, read by one stdout output. */
function config(extra = '', outputExtra = ''): string {
  return `sources:
  containers:
    type: container_logs
${extra}outputs:
  out:
    type: stdout
    inputs: [containers]
${outputExtra}`;
}

/** The problems parseConfig reports for `text` (fails the test when it is accepted). */
function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, 'agent.yaml', env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error(`config was accepted:\n${text}`);
}

describe('parseConfig: defaults', () => {
  it('fills every default into a minimal config', () => {
    const cfg = parseConfig(config(), 'agent.yaml', {});
    expect(cfg.node_name).toBe(hostname());
    expect(cfg.data_dir).toBe('/var/lib/telemetry-agent');
    expect(cfg.log_level).toBe('info');
    expect(cfg.shutdown_timeout).toBe(30_000);
    expect(cfg.server).toEqual({ listen: '0.0.0.0:9464', max_connections: 256, header_timeout: 10_000, request_timeout: 30_000, idle_timeout: 5_000, status_page: false, tap: { enabled: true } });
    expect(cfg.log_format).toBe('text');
    expect(cfg.kubernetes.mode).toBe('auto');
    // The defaults design.md fixes, exactly; the tuning knobs (tuned by benchmarks) are set and sane.
    const src = containers(cfg);
    expect(src).toMatchObject({
      type: 'container_logs',
      include: ['/var/log/containers/*.log'],
      exclude: [],
      read_from: 'beginning',
      format: 'auto',
      multiline: null,
      inotify: true,
    });
    // max_unacked_bytes has no fixed default: absent, the agent picks it from the outputs (flow_window.ts).
    const knobs = ['max_line_bytes', 'glob_interval', 'poll_interval', 'partial_timeout', 'rotate_wait', 'checkpoint_interval', 'read_chunk', 'max_open_files'] as const;
    expect(src).not.toHaveProperty('max_unacked_bytes');
    const enrichment = Object.keys(enrichmentKeys);
    expect(Object.keys(src).sort()).toEqual(['type', 'include', 'exclude', 'read_from', 'format', 'multiline', 'inotify', ...knobs, ...enrichment].sort());
    expect(src).toMatchObject({
      parser: 'none',
      timestamp_from_body: false,
      kubernetes_metadata: {
        enabled: true,
        pod_labels: { include: ['*'], exclude: [] },
        pod_annotations: { include: [], exclude: [] },
        namespace_labels: { include: [], exclude: [] },
        wait_for_pod: 2000,
        wait_max_bytes: 4 * 1024 * 1024,
      },
    });
    expect(cfg.kubernetes.pod_grace_period).toBe(5 * 60_000);
    for (const k of knobs) {
      expect(Number.isSafeInteger(src[k]), k).toBe(true);
      expect(src[k], k).toBeGreaterThan(0);
    }
    expect(src.max_line_bytes).toBeGreaterThanOrEqual(16 * 1024); // a whole containerd line fits
    expect(cfg.outputs.out).toMatchObject({ type: 'stdout', inputs: ['containers'], encoding: 'json', buffer: { type: 'memory', when_full: 'block' }, concurrency: 1 });
  });

  it('defaults a file output to no fsync', () => {
    const cfg = parseConfig(
      `sources: { c: { type: container_logs } }\noutputs: { f: { type: file, inputs: [c], path: /tmp/x.ndjson } }\n`,
      'agent.yaml',
      {},
    );
    expect(cfg.outputs.f).toMatchObject({ type: 'file', inputs: ['c'], path: '/tmp/x.ndjson', fsync: false });
  });

  it('keeps explicit values over defaults', () => {
    const cfg = parseConfig(
      `node_name: node-7\ndata_dir: /data\nlog_level: debug\nshutdown_timeout: 5s\nserver: { listen: "127.0.0.1:9000" }\nkubernetes: { mode: disabled }\n` +
        config('    read_from: end\n    format: cri\n    include: [/logs/*.log]\n    exclude: [/logs/skip-*.log]\n', '    encoding: text\n'),
      'agent.yaml',
      {},
    );
    expect(cfg.node_name).toBe('node-7');
    expect(cfg.data_dir).toBe('/data');
    expect(cfg.log_level).toBe('debug');
    expect(cfg.shutdown_timeout).toBe(5000);
    expect(cfg.server.listen).toBe('127.0.0.1:9000');
    expect(cfg.kubernetes.mode).toBe('disabled');
    expect(cfg.sources.containers).toMatchObject({ read_from: 'end', format: 'cri', include: ['/logs/*.log'], exclude: ['/logs/skip-*.log'] });
    expect(cfg.outputs.out).toMatchObject({ encoding: 'text' });
  });
});

describe('parseConfig: environment variables', () => {
  it('replaces ${VAR} and ${VAR:-default}, a set variable winning over its default', () => {
    const cfg = parseConfig(
      'node_name: ${NODE_NAME}\ndata_dir: ${DATA_DIR:-/var/lib/kta}\nserver:\n  listen: "127.0.0.1:${PORT:-9464}"\n' + config(),
      'agent.yaml',
      { NODE_NAME: 'node-a', PORT: '9999' },
    );
    expect(cfg.node_name).toBe('node-a');
    expect(cfg.data_dir).toBe('/var/lib/kta');
    expect(cfg.server.listen).toBe('127.0.0.1:9999');
  });

  it('uses the default when the variable is set but empty', () => {
    const cfg = parseConfig('data_dir: ${DATA_DIR:-/fallback}\n' + config(), 'agent.yaml', { DATA_DIR: '' });
    expect(cfg.data_dir).toBe('/fallback');
  });

  it('takes the node name from the host when ${NODE_NAME:-} is empty', () => {
    const cfg = parseConfig('node_name: ${NODE_NAME:-}\n' + config(), 'agent.yaml', {});
    expect(cfg.node_name).toBe(hostname());
  });

  it('gives a substituted value the YAML type it looks like', () => {
    const cfg = parseConfig(config('    max_open_files: ${FILES}\n'), 'agent.yaml', { FILES: '64' });
    expect(containers(cfg).max_open_files).toBe(64);
  });

  it('writes $${ as a literal ${', () => {
    const cfg = parseConfig(config('    include: ["/logs/$${HOME}/*.log"]\n'), 'agent.yaml', { HOME: '/root' });
    expect(containers(cfg).include).toEqual(['/logs/${HOME}/*.log']);
  });

  it('leaves ${...} in comments alone', () => {
    const cfg = parseConfig('# set ${NOT_SET_ANYWHERE} to change the node name\nnode_name: n1 # or ${ALSO_NOT_SET}\n' + config(), 'agent.yaml', {});
    expect(cfg.node_name).toBe('n1');
  });

  it('reports an unset variable without a default, naming it and its line', () => {
    const text = 'node_name: n1\n\ndata_dir: ${KTA_DATA_DIR}\n' + config();
    expect(problems(text)).toEqual(['line 3: environment variable KTA_DATA_DIR is not set (give a default with ${KTA_DATA_DIR:-value})']);
    expect(() => parseConfig(text, '/etc/kta/agent.yaml', {})).toThrow(
      /^\/etc\/kta\/agent\.yaml: invalid config\n {2}line 3: environment variable KTA_DATA_DIR is not set/,
    );
  });

  it('reports a malformed reference', () => {
    expect(problems('data_dir: ${1BAD}\n' + config())).toEqual([
      'line 1: "${1BAD}" is not a valid variable reference (use ${NAME} or ${NAME:-default})',
    ]);
  });
});

describe('parseConfig: sizes and durations', () => {
  it.each([
    ['512KiB', 512 * 1024],
    ['1MiB', 1024 * 1024],
    ['1.5MiB', 1.5 * 1024 * 1024],
    ['2GiB', 2 * 1024 ** 3],
    [4096, 4096],
    ['4096', 4096],
    // Decimal units, as Fluent Bit and Vector users write them (SI / Kubernetes quantities: 1000s)
    ['1MB', 1_000_000],
    ['64kb', 64_000],
    ['1G', 1_000_000_000],
    ['10M', 10_000_000],
    ['1.5GB', 1_500_000_000],
    // Kubernetes' binary suffixes
    ['512Mi', 512 * 1024 * 1024],
    ['64Ki', 64 * 1024],
  ])('size %j is %d bytes', (value, bytes) => {
    const cfg = parseConfig(config(`    max_unacked_bytes: ${JSON.stringify(value)}\n`), 'agent.yaml', {});
    expect((cfg.sources.containers as { max_unacked_bytes?: number }).max_unacked_bytes).toBe(bytes);
  });

  it.each([
    ['"lots"', '"lots"'],
    ['10MBs', '"10MBs"'],
    ['1 TiB', '"1 TiB"'],
    ['-1', '-1'],
    ['1.5', '1.5'],
  ])('rejects size %s', (yaml, shown) => {
    expect(problems(config(`    max_line_bytes: ${yaml}\n`))).toEqual([
      `sources.containers.max_line_bytes: expected a size like 1MiB, got ${shown}`,
    ]);
  });

  it.each([
    ['250ms', 250],
    ['1s', 1000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['1h', 3_600_000],
    [0, 0],
  ])('duration %j is %d ms', (value, ms) => {
    const cfg = parseConfig(config(`    partial_timeout: ${JSON.stringify(value)}\n`), 'agent.yaml', {});
    expect(containers(cfg).partial_timeout).toBe(ms);
  });

  it.each([
    ['sources.containers.poll_interval', config('    poll_interval: 0s\n')],
    ['sources.containers.glob_interval', config('    glob_interval: 0\n')],
    ['sources.containers.checkpoint_interval', config('    checkpoint_interval: 5ms\n')],
    ['outputs.out.retry.initial', config('', '    retry: { initial: 0s }\n')],
  ])('refuses a timer period below 10ms (%s): 0 would spin a core', (path, text) => {
    expect(problems(text)).toEqual([`${path}: expected at least 10ms (a period; 0 would spin)`]);
  });

  it.each([
    ['"5x"', '"5x"'],
    ['10', '10'],
    ['soon', '"soon"'],
    ['1d', '"1d"'],
  ])('rejects duration %s', (yaml, shown) => {
    expect(problems(config(`    poll_interval: ${yaml}\n`))).toEqual([
      `sources.containers.poll_interval: expected a duration like 1s, got ${shown}`,
    ]);
  });

  it('names the top-level key of a bad shutdown_timeout', () => {
    expect(problems('shutdown_timeout: forever\n' + config())).toEqual(['shutdown_timeout: expected a duration like 30s, got "forever"']);
  });
});

describe('parseConfig: mistakes a user makes', () => {
  it('points an unknown key to the one meant', () => {
    expect(problems(config('', '    encodng: text\n'))).toEqual(['outputs.out.encodng: unknown key (did you mean encoding?)']);
    expect(problems('node_nmae: n1\n' + config())).toEqual(['node_nmae: unknown key (did you mean node_name?)']);
    expect(problems(config('    incldue: [/x/*.log]\n'))).toEqual(['sources.containers.incldue: unknown key (did you mean include?)']);
  });

  it('lists the known keys when no key is close', () => {
    expect(problems(config('', '    colour: blue\n'))).toEqual(['outputs.out.colour: unknown key (known keys: type, inputs, buffer, batch, retry, dead_letter, concurrency, encoding)']);
  });

  it('lists the known output types for an unknown one', () => {
    const text = `sources: { containers: { type: container_logs } }\noutputs:\n  out:\n    type: kafka\n    inputs: [containers]\n`;
    const found = problems(text);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^outputs\.out\.type: unknown type "kafka" \(expected one of: (.+)\)$/);
    const listed = /expected one of: (.+)\)$/.exec(found[0]!)![1]!.split(', ');
    expect(listed).toEqual(expect.arrayContaining(['stdout', 'file']));
  });

  it('reports a missing type', () => {
    expect(problems(`sources: { containers: { type: container_logs } }\noutputs:\n  out:\n    inputs: [containers]\n`)[0]).toMatch(
      /^outputs\.out\.type: missing \(expected one of: .*stdout.*\)$/,
    );
  });

  it('reports a missing required key', () => {
    expect(problems(`sources: { containers: { type: container_logs } }\noutputs:\n  out:\n    type: file\n    inputs: [containers]\n`)).toEqual([
      'outputs.out.path: required key is missing (expected string)',
    ]);
  });

  it('reports a value outside an enum with the allowed ones', () => {
    expect(problems('kubernetes: { mode: magic }\n' + config('    read_from: middle\n', '    encoding: xml\n'))).toEqual([
      'kubernetes.mode: expected one of "auto" | "in_cluster" | "kubeconfig" | "disabled", got "magic"',
      'sources.containers.read_from: expected one of "beginning" | "end", got "middle"',
      'outputs.out.encoding: expected one of "json" | "text", got "xml"',
    ]);
  });

  it('reports a value of the wrong type', () => {
    expect(problems(config('    include: /var/log/containers/*.log\n'))).toEqual([
      'sources.containers.include: expected array, got "/var/log/containers/*.log"',
    ]);
  });

  it('reports an output reading a source that does not exist', () => {
    expect(problems(config().replace('inputs: [containers]', 'inputs: [containers, journal]'))).toEqual([
      'outputs.out.inputs[1]: unknown source "journal" (sources: containers)',
    ]);
  });

  it('reports a source no output reads', () => {
    expect(problems(config().replace('outputs:', '  spare:\n    type: container_logs\noutputs:'))).toEqual([
      'sources.spare: no output or transform lists this source in its inputs',
    ]);
  });

  it('reports a config without sources', () => {
    expect(problems('')).toEqual(['sources: at least one source is needed']);
  });

  it('explains a badly formed component name', () => {
    const found = problems(config().replaceAll('containers', 'My.Logs'));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^sources\.My\.Logs: .*names are lowercase letters, digits, _ and -/);
  });

  it('reports a bad server.listen', () => {
    expect(problems('server: { listen: localhost }\n' + config())).toEqual(['server.listen: expected host:port, like 0.0.0.0:9464']);
  });

  it('reports a YAML syntax error with its line number', () => {
    const text = 'node_name: n1\nsources:\n  containers:\n    type: container_logs\n   bad: [\noutputs: {}\n';
    const found = problems(text);
    expect(found.length).toBeGreaterThan(0);
    expect(found[0]).toMatch(/^line 5: YAML: \S/);
    for (const p of found) expect(p).toMatch(/^line \d+: YAML: /);
  });

  it('reports a duplicate key with its line number', () => {
    const found = problems(config('    format: cri\n    format: docker\n'));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^line 5: YAML: .*unique/);
  });

  it('reports every problem of a file, one per line', () => {
    const found = problems(config('    max_line_bytes: lots\n    read_from: middle\n', '    encodng: text\n'));
    expect(found.sort()).toEqual(
      [
        'sources.containers.max_line_bytes: expected a size like 1MiB, got "lots"',
        'sources.containers.read_from: expected one of "beginning" | "end", got "middle"',
        'outputs.out.encodng: unknown key (did you mean encoding?)',
      ].sort(),
    );
    for (const p of found) expect(p).not.toContain('\n');
  });
});

describe('the command line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kta-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const r = spawnSync(NODE, [CLI, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, error: r.error };
  };

  it('validate: exit 0 and "valid" for a good file', () => {
    const f = file('good.yaml', config());
    const r = cli(['validate', '--config', f]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${f}: valid\n`);
  });

  it('validate: -c works like --config', () => {
    const f = file('good-short.yaml', config());
    const r = cli(['validate', '-c', f]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${f}: valid\n`);
  });

  it('validate: exit 2 and one line per problem for a bad file', () => {
    const f = file('bad.yaml', config('    max_line_bytes: lots\n    read_from: middle\n', '    encodng: text\n'));
    const r = cli(['validate', '--config', f]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe(`${f}: invalid config`);
    expect(lines.slice(1).map((l) => l.trim()).sort()).toEqual(
      [
        'sources.containers.max_line_bytes: expected a size like 1MiB, got "lots"',
        'sources.containers.read_from: expected one of "beginning" | "end", got "middle"',
        'outputs.out.encodng: unknown key (did you mean encoding?)',
      ].sort(),
    );
  });

  it('validate: reads ${VAR} from its environment', () => {
    const f = file('env.yaml', 'data_dir: ${KTA_TEST_DATA_DIR}\n' + config());
    expect(cli(['validate', '--config', f], { KTA_TEST_DATA_DIR: '/tmp/data' }).status).toBe(0);
    const unset = cli(['validate', '--config', f], { KTA_TEST_DATA_DIR: undefined });
    expect(unset.status).toBe(2);
    expect(unset.stderr).toContain('line 1: environment variable KTA_TEST_DATA_DIR is not set');
  });

  it('exit 2 without --config', () => {
    const r = cli(['validate']);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('telemetry-agent: missing --config FILE');
  });

  it('exit 2 for an unknown command', () => {
    const r = cli(['frobnicate']);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('telemetry-agent: unknown command "frobnicate"');
    expect(r.stderr).toContain('Usage:');
  });

  it('exit 2 without a command', () => {
    const r = cli([]);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('telemetry-agent: missing command');
  });

  it('exit 2 for an unknown option', () => {
    const r = cli(['validate', '--confg', 'x.yaml']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^telemetry-agent: .*--confg/);
  });

  it('--help: exit 0 and the usage on stdout', () => {
    const r = cli(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage:');
    expect(r.stdout).toContain('telemetry-agent run --config FILE');
    expect(r.stdout).toContain('telemetry-agent validate --config FILE');
    expect(r.stderr).toBe('');
  });

  it('--version: exit 0 and the package version', () => {
    const r = cli(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${VERSION}\n`);
  });

  it('run: exit 2 and a clear message for a missing config file', () => {
    const missing = join(dir, 'does-not-exist.yaml');
    const r = cli(['run', '--config', missing]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(missing);
    expect(r.stderr).toContain('cannot read config file');
    expect(r.stderr).toMatch(/ENOENT|no such file/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('run: exit 2 for an invalid config, before starting anything', () => {
    const f = file('run-bad.yaml', config('    max_line_bytes: lots\n'));
    const r = cli(['run', '--config', f]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`${f}: invalid config\n  sources.containers.max_line_bytes: expected a size like 1MiB, got "lots"\n`);
  });
});
