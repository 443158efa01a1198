import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, ReloadRejected, StartupError } from '../../agent/agent.ts';
import { ConfigError, parseConfig } from '../../agent/config/load.ts';
import type { AgentConfig } from '../../agent/config/schema.ts';
import { checkTarget } from '../../agent/config/target_check.ts';
import { createLogger } from '../../agent/log.ts';
import { criLines, NodeTree, readRecords, requireNode24 } from '../helpers/agent_harness.ts';
import { waitFor } from '../helpers/child_agent.ts';
import { reachableThrows, type ThrowSite } from '../helpers/reachable_throws.ts';

/**
 * Issue 11 item 1: every `throw` reachable from building outputs, their buffers and dead letters,
 * transforms and sources (Agent.runner, Agent.transformNode, Agent.source: the TypeScript
 * checker's call graph over the project's files, test/helpers/reachable_throws.ts) is listed
 * below, with what happens to it:
 * - `validate`: plain `validate` reports the config that would make it throw, naming the key;
 * - `check`: the node decides (a file, a folder, a kubeconfig): `validate --check` reports it, and
 *   so do `run` (exit 2) and a reload (rejected) for what building needs;
 * - `caught`: the same value slipped past the checks into a running agent (a parsed config altered
 *   behind the schema's back, or the node changed since): the reload is rejected naming the part,
 *   and the running config keeps delivering; at start it is a StartupError (exit 2);
 * - `internal`: thrown and caught inside the same part, as control flow (named where);
 * - `runtime`: reached only by work a built part does later (named who catches it);
 * - `invariant`: a check of the program itself at module load, no config reaches it.
 * A new `throw` on those paths fails this test until it is listed here; a listed one that is gone
 * fails it too.
 */

interface Entry {
  /** Matches ThrowSite.file and a piece of ThrowSite.text (or every site of the file when text is `*`). */
  file: string;
  text: string;
  kind: 'validate' | 'check' | 'caught' | 'internal' | 'runtime' | 'invariant';
  why: string;
  /** validate / check: configs (YAML under `outputs:` / `sources:` etc., see `config`) and the line each must produce. */
  examples?: { yaml: string; problem: RegExp; env?: NodeJS.ProcessEnv }[];
  /** caught: what to change in a running agent's parsed config (behind the checks), and the rejection. */
  alter?: (c: AgentConfig, tree: NodeTree) => void;
  rejected?: RegExp;
}

const httpOut = (extra: string) => `  api: { type: http, inputs: [containers], endpoint: "http://127.0.0.1:9", ${extra} }\n`;

const CATALOGUE: Entry[] = [
  {
    file: 'agent/agent.ts',
    text: 'err',
    kind: 'caught',
    why: 'Agent.runner closes the output it made when its buffer cannot be opened, then passes the error on: start and reload name the output',
    alter: (c, tree) => {
      writeFileSync(join(tree.dataDir, 'buffers'), 'a file where the buffers folder goes');
      c.outputs.spool = { ...c.outputs.out!, path: join(tree.root, 'spool.ndjson'), buffer: { ...c.outputs.out!.buffer, type: 'disk' } } as AgentConfig['outputs'][string];
    },
    rejected: /cannot build: outputs\.spool: .*(ENOTDIR|not a directory|EEXIST)/,
  },
  {
    file: 'agent/atomic_file.ts',
    text: 'err',
    kind: 'runtime',
    why: 'writeFileAtomic runs when checkpoints and buffer read positions are saved, never while a part is built; its callers count the failure (telemetry_agent_checkpoint_errors_total) and try again',
  },
  {
    file: 'agent/enrichment/config.ts',
    text: 'err',
    kind: 'validate',
    why: 'the parser regex refinement: a RegexConfigError becomes a problem line, anything else is the loader\'s last resort (one line, exit 2)',
    examples: [
      { yaml: 'source:    parser: { regex: "(" }', problem: /^sources\.containers\.parser\.regex: / },
      { yaml: 'source:    parser: { regex: "plain" }', problem: /^sources\.containers\.parser\.regex: the regex has no named groups/ },
    ],
  },
  {
    file: 'agent/kube/connection.ts',
    text: '*',
    kind: 'check',
    why: 'resolving the Kubernetes connection kubernetes.mode asks for (files, contexts, server URL, kubeconfig keys): validate --check reports it (kubernetes.*); at run time the sources that use the API stay not ready and say why (test/hardening/config.test.ts, the kubeconfig row), the pod cache goes on without metadata',
    examples: [
      { yaml: 'kube: { mode: kubeconfig, kubeconfig: /nonexistent/kubeconfig }', problem: /^kubernetes\.kubeconfig: kubernetes mode kubeconfig: no kubeconfig/ },
      { yaml: 'kube: { mode: kubeconfig, kubeconfig: KUBECONFIG_FILE, context: nope }', problem: /^kubernetes\.kubeconfig: kubeconfig .*: context "nope" not found/ },
      { yaml: 'kube: { mode: in_cluster }', problem: /^kubernetes\.mode: in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set/, env: { KUBERNETES_SERVICE_HOST: '' } },
    ],
  },
  {
    file: 'agent/kube/list_watch.ts',
    text: 'new LineTooLong',
    kind: 'internal',
    why: 'a watch event over the line limit: ListWatch catches it where it reads the stream and restarts the watch (decode_error)',
  },
  {
    file: 'agent/transforms/cel.ts',
    text: 'err',
    kind: 'validate',
    why: 'compileCel turns CheckFailed into a problem; anything else it rethrows reaches the loader\'s last resort. Expressions are compiled when the config is loaded',
    examples: [
      { yaml: 'transform:  f: { type: filter, inputs: [containers], drop: "body.x +" }', problem: /^transforms\.f\.drop: CEL syntax error/ },
      { yaml: 'transform:  f: { type: filter, inputs: [containers], drop: "1 + \'a\'" }', problem: /^transforms\.f\.drop: CEL: / },
    ],
  },
  { file: 'agent/transforms/cel_check.ts', text: 'new CheckFailed', kind: 'internal', why: 'the type checker\'s way out, caught by compileCel and reported as a problem (see cel.ts above)' },
  { file: 'agent/transforms/cel_fast.ts', text: '*', kind: 'internal', why: 'FALLBACK/UNSUPPORTED: the fast CEL path gives up on an expression or a value and compileFast/evaluation falls back to the interpreter' },
  {
    file: 'outputs/http_client.ts',
    text: 'this.fsError(e)',
    kind: 'check',
    why: 'a secret file (bearer_token_file, password_file, token_file) read while the client is built: validate --check, start and reload check it first',
    examples: [{ yaml: httpOut('auth: { bearer_token_file: /nonexistent/token }'), problem: /^outputs\.api\.auth\.bearer_token_file: cannot read \/nonexistent\/token: no such file/ }],
  },
  {
    file: 'outputs/http_client.ts',
    text: 'is empty',
    kind: 'check',
    why: 'an empty secret file: validate --check, start and reload say so first',
    examples: [{ yaml: httpOut('auth: { username: u, password_file: EMPTY_FILE }'), problem: /^outputs\.api\.auth\.password_file: cannot read .*: the file is empty/ }],
  },
  {
    file: 'outputs/http_client.ts',
    text: 'plainFsError(e)',
    kind: 'check',
    why: 'a TLS file (ca_file, cert_file, key_file) read while the client is built',
    examples: [{ yaml: httpOut('tls: { ca_file: /nonexistent/ca.pem }'), problem: /^outputs\.api\.tls\.ca_file: cannot read \/nonexistent\/ca\.pem: no such file/ }],
  },
  {
    file: 'outputs/http_client.ts',
    text: 'put credentials in auth',
    kind: 'caught',
    why: 'validate refuses credentials in an endpoint URL (test/hardening/config.test.ts); slipped past it, the reload is rejected',
    examples: [{ yaml: `  api: { type: http, inputs: [containers], endpoint: "http://u:pw@127.0.0.1:9" }\n`, problem: /^outputs\.api\.endpoint: the URL carries credentials/ }],
    alter: (c) => {
      c.outputs.api = { ...(parseConfig(baseYaml(undefined, httpOut('')), 'x', {}).outputs.api as object), endpoint: 'http://u:pw@127.0.0.1:9' } as AgentConfig['outputs'][string];
    },
    rejected: /cannot build: outputs\.api: put credentials in auth, not in the endpoint URL/,
  },
  {
    file: 'outputs/http_client.ts',
    text: 'headers.Authorization and auth are both set',
    kind: 'caught',
    why: 'validate refuses it (checkClientKeys in each HTTP output\'s schema); slipped past it, the reload is rejected',
    examples: [{ yaml: httpOut('auth: { bearer_token: a }, headers: { Authorization: "Bearer b" }'), problem: /^outputs\.api\.headers\.Authorization: headers\.Authorization and auth are both set/ }],
    alter: (c) => {
      const api = parseConfig(baseYaml(undefined, httpOut('auth: { bearer_token: a }')), 'x', {}).outputs.api as Record<string, unknown>;
      c.outputs.api = { ...api, headers: { Authorization: 'Bearer b' } } as unknown as AgentConfig['outputs'][string];
    },
    rejected: /cannot build: outputs\.api: headers\.Authorization and auth are both set; pick one/,
  },
  {
    file: 'outputs/http_client.ts',
    text: 'prefix + (e as Error).message',
    kind: 'caught',
    why: 'the client\'s constructor names its output on whatever its pool or TLS set-up threw (the cases above and below)',
    alter: (c) => {
      const api = parseConfig(baseYaml(undefined, httpOut('auth: { bearer_token: a }')), 'x', {}).outputs.api as Record<string, unknown>;
      c.outputs.api = { ...api, headers: { authorization: 'Bearer b' } } as unknown as AgentConfig['outputs'][string];
    },
    rejected: /cannot build: outputs\.api: headers\.Authorization and auth are both set/,
  },
  {
    file: 'outputs/otlp.ts',
    text: 'problems.map((p) => p.message)',
    kind: 'caught',
    why: 'settings that do not resolve (no endpoint anywhere, a bad OTEL_EXPORTER_OTLP_* value): validate reports them per key; slipped past it, the reload is rejected',
    examples: [{ yaml: '  api: { type: otlp, inputs: [containers] }\n', problem: /^outputs\.api\.endpoint: no endpoint: set endpoint/ }],
    alter: (c) => {
      const api = parseConfig(baseYaml(undefined, '  api: { type: otlp, inputs: [containers], endpoint: "http://127.0.0.1:9" }\n'), 'x', {}).outputs.api as Record<string, unknown>;
      c.outputs.api = { ...api, endpoint: undefined } as AgentConfig['outputs'][string];
    },
    rejected: /cannot build: outputs\.api: no endpoint: set endpoint/,
  },
  { file: 'outputs/otlp_logs_encoder.ts', text: 'vendored proto changed', kind: 'invariant', why: 'checks the vendored OpenTelemetry .proto field numbers when the module loads' },
  {
    file: 'outputs/splunk_hec.ts',
    text: '(e as Error).message',
    kind: 'check',
    why: 'the HEC token file read while the output is built: validate --check, start and reload check it first',
    examples: [{ yaml: '  api: { type: splunk_hec, inputs: [containers], endpoint: "https://127.0.0.1:9", token_file: /nonexistent/hec }\n', problem: /^outputs\.api\.token_file: cannot read \/nonexistent\/hec: no such file/ }],
  },
  {
    file: 'outputs/syslog/rfc5424.ts',
    text: 'syslog facility',
    kind: 'validate',
    why: 'the schema takes only the facility names and 0-23',
    examples: [{ yaml: '  api: { type: syslog, inputs: [containers], endpoint: "tcp://127.0.0.1:9", facility: local9 }\n', problem: /^outputs\.api\.facility: / }],
  },
  {
    file: 'outputs/syslog/rfc5424.ts',
    text: 'syslog sd_id',
    kind: 'validate',
    why: 'the syslog schema runs validateSdId',
    examples: [{ yaml: '  api: { type: syslog, inputs: [containers], endpoint: "tcp://127.0.0.1:9", sd_id: "k8s" }\n', problem: /^outputs\.api\.sd_id: syslog sd_id: expected name@/ }],
  },
  {
    file: 'outputs/syslog/rfc5424.ts',
    text: 'syslog template',
    kind: 'caught',
    why: 'the syslog schema compiles every template; slipped past it, the reload is rejected',
    examples: [{ yaml: '  api: { type: syslog, inputs: [containers], endpoint: "tcp://127.0.0.1:9", app_name: "{k8s.pod.name" }\n', problem: /^outputs\.api\.app_name: syslog template "\{k8s\.pod\.name": "\{" without "\}"/ }],
    alter: (c) => {
      const api = parseConfig(baseYaml(undefined, '  api: { type: syslog, inputs: [containers], endpoint: "tcp://127.0.0.1:9" }\n'), 'x', {}).outputs.api as Record<string, unknown>;
      c.outputs.api = { ...api, msg_id: 'a}b' } as AgentConfig['outputs'][string];
    },
    rejected: /cannot build: outputs\.api: syslog template "a\}b": "\}" without "\{"/,
  },
  {
    file: 'parsers/multiline.ts',
    text: '*',
    kind: 'caught',
    why: 'the multiline schema bounds max_lines, max_bytes and the mode; the source builds one decoder when it is built, so a value slipped past it rejects the reload instead of failing at the first file',
    examples: [
      { yaml: 'source:    multiline: { mode: auto, max_lines: 0 }', problem: /^sources\.containers\.multiline\.max_lines: / },
      { yaml: 'source:    multiline: { mode: auto, max_bytes: 0 }', problem: /^sources\.containers\.multiline\.max_bytes: expected a size above 0/ },
      { yaml: 'source:    multiline: { mode: start_pattern }', problem: /^sources\.containers\.multiline: give mode: auto, mode: indented, or a start_pattern/ },
    ],
    alter: (c) => {
      const src = c.sources.containers as Record<string, unknown>;
      c.sources.containers = { ...src, multiline: { mode: 'auto', timeout: 1000, max_lines: 0, max_bytes: 1024 } } as AgentConfig['sources'][string];
    },
    rejected: /cannot build: sources\.containers: maxLines must be an integer of at least 1, got 0/,
  },
  {
    file: 'parsers/partial_merger.ts',
    text: 'maxBytes must be at least 1',
    kind: 'caught',
    why: 'max_line_bytes must be above 0 (the schema); slipped past it, the source is not built and the reload is rejected',
    examples: [{ yaml: 'source:    max_line_bytes: 0', problem: /^sources\.containers\.max_line_bytes: expected a size above 0/ }],
    alter: (c) => {
      c.sources.containers = { ...(c.sources.containers as object), max_line_bytes: 0 } as AgentConfig['sources'][string];
    },
    rejected: /cannot build: sources\.containers: maxBytes must be at least 1, got 0/,
  },
  {
    file: 'parsers/regex_body.ts',
    text: '*',
    kind: 'caught',
    why: 'regexes (parser, multiline start_pattern) are checked by the schema; one slipped past it is compiled when the source or its parse stage is built, and the reload is rejected',
    examples: [{ yaml: 'source:    multiline: { start_pattern: "(" }', problem: /^sources\.containers\.multiline\.start_pattern: / }],
    alter: (c) => {
      c.sources.containers = { ...(c.sources.containers as object), parser: { regex: 'no named group' } } as AgentConfig['sources'][string];
    },
    rejected: /cannot build: sources\.containers: .*no named groups/,
  },
];

let tree: NodeTree;
let kubeconfigFile: string;
let emptyFile: string;

/** A valid node config; `example` adds to it: `source:` lines under the source, `kube:` the kubernetes section, `transform:` a transforms block, else outputs. */
function baseYaml(t: NodeTree | undefined, example = ''): string {
  const root = t?.root ?? '/tmp/never-used';
  let source = '';
  let kube = '{ mode: disabled }';
  let transforms = '';
  let outputs = '';
  let events = '';
  if (example.startsWith('source:')) source = `${example.slice('source:'.length)}\n`;
  else if (example.startsWith('kube:')) {
    kube = example.slice('kube:'.length).trim().replace('KUBECONFIG_FILE', kubeconfigFile);
    events = '  cluster: { type: kubernetes_events }\n';
  } else if (example.startsWith('transform:')) transforms = `transforms:\n${example.slice('transform:'.length)}\n`;
  else outputs = example.replace('EMPTY_FILE', emptyFile);
  return `node_name: n
data_dir: ${join(root, 'data')}
shutdown_timeout: 2s
server: { listen: "127.0.0.1:0" }
kubernetes: ${kube}
sources:
  containers:
    type: container_logs
    include: [${join(root, 'var/log/containers')}/*.log]
    glob_interval: 100ms
    poll_interval: 100ms
    kubernetes_metadata: { enabled: false }
${source}${events}${transforms}outputs:
  out: { type: file, inputs: [containers], path: ${join(root, 'out', 'records.ndjson')} }
${outputs}`;
}

function matches(e: Entry, s: ThrowSite): boolean {
  return e.file === s.file && (e.text === '*' || s.text.includes(e.text));
}

describe('every throw reachable from building outputs, transforms and sources', { timeout: 300_000 }, () => {
  let sites: ThrowSite[] = [];
  beforeAll(() => {
    requireNode24();
    tree = new NodeTree('kta-hardening-throws-');
    kubeconfigFile = join(tree.root, 'kubeconfig');
    writeFileSync(
      kubeconfigFile,
      'apiVersion: v1\nkind: Config\nclusters: [{ name: c, cluster: { server: "https://127.0.0.1:9", insecure-skip-tls-verify: true } }]\nusers: [{ name: u, user: { token: t } }]\ncontexts: [{ name: fake, context: { cluster: c, user: u } }]\ncurrent-context: fake\n',
    );
    emptyFile = join(tree.root, 'empty');
    writeFileSync(emptyFile, '');
    sites = reachableThrows(resolve(import.meta.dirname, '../..'), [
      { file: 'agent/agent.ts', name: 'Agent.runner' },
      { file: 'agent/agent.ts', name: 'Agent.transformNode' },
      { file: 'agent/agent.ts', name: 'Agent.source' },
    ]);
  }, 120_000);
  afterAll(() => tree?.remove());

  it('are all listed, each with what happens to it (and nothing listed is gone)', () => {
    expect(sites.length).toBeGreaterThan(20);
    const unlisted = sites.filter((s) => !CATALOGUE.some((e) => matches(e, s))).map((s) => `${s.file}:${s.line} [${s.where}] throw ${s.text}`);
    expect(unlisted, 'throws nobody has decided about: add them to CATALOGUE').toEqual([]);
    const stale = CATALOGUE.filter((e) => !sites.some((s) => matches(e, s))).map((e) => `${e.file}: ${e.text}`);
    expect(stale, 'listed throws no longer reachable: remove them').toEqual([]);
    const counts: Record<string, number> = {};
    for (const s of sites) {
      const kind = CATALOGUE.find((e) => matches(e, s))!.kind;
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
    console.log(`reachable throws: ${sites.length} (${Object.entries(counts).map(([k, n]) => `${k} ${n}`).join(', ')})`);
  });

  it('validate and validate --check report the configs that would make them throw, naming the key', async () => {
    for (const e of CATALOGUE) {
      for (const ex of e.examples ?? []) {
        const yaml = baseYaml(tree, ex.yaml);
        const saved = { ...process.env };
        Object.assign(process.env, ex.env ?? {});
        try {
          let problems: string[];
          try {
            const config = parseConfig(yaml, 'example.yaml', process.env);
            problems = (await checkTarget(config, { scope: 'target', timeoutMs: 2000 })).problems;
          } catch (err) {
            expect(err, `${e.file}: ${e.text}`).toBeInstanceOf(ConfigError);
            problems = (err as ConfigError).problems;
          }
          expect(problems.some((p) => ex.problem.test(p)), `${e.file} "${e.text}": ${ex.problem} among ${JSON.stringify(problems)}`).toBe(true);
        } finally {
          for (const k of Object.keys(ex.env ?? {})) {
            if (saved[k] === undefined) delete process.env[k];
            else process.env[k] = saved[k];
          }
        }
      }
    }
  });

  it('slipped past the checks into a running agent, they reject the reload and the running config keeps delivering; at start they are a StartupError', async () => {
    for (const e of CATALOGUE.filter((x) => x.kind === 'caught')) {
      const t = new NodeTree('kta-hardening-throws-agent-');
      try {
        const base = parseConfig(baseYaml(t), 'base.yaml', {});
        const agent = new Agent(base, createLogger('error', () => {}));
        await agent.start();
        try {
          const next = structuredClone(base);
          e.alter!(next, t);
          const rejection = await agent.reload(next).then(
            () => undefined,
            (err: unknown) => err,
          );
          expect(rejection, `${e.file} "${e.text}"`).toBeInstanceOf(ReloadRejected);
          expect((rejection as Error).message, `${e.file} "${e.text}"`).toMatch(e.rejected!);
          // The config that runs is the one before: its output still delivers.
          t.container({ content: criLines([`after ${e.text}`]) });
          await waitFor(`a record through the running config after "${e.text}"`, () => readRecords(t.outputPath).some((r) => r.body === `after ${e.text}`), 20_000);
        } finally {
          await agent.stop();
        }
        // The same config at start: nothing starts, each problem is a line (run exits 2).
        rmSync(t.dataDir, { recursive: true, force: true });
        mkdirSync(t.dataDir, { recursive: true });
        const next = structuredClone(base);
        e.alter!(next, t);
        const starting = new Agent(next, createLogger('error', () => {}));
        const failure = await starting.start().then(
          () => undefined,
          (err: unknown) => err,
        );
        if (failure === undefined) await starting.stop();
        expect(failure, `${e.file} "${e.text}" at start`).toBeInstanceOf(StartupError);
        expect((failure as StartupError).problems.join('\n')).toMatch(new RegExp(e.rejected!.source.replace(/^cannot build: /, '')));
      } finally {
        t.remove();
      }
    }
  });
});
