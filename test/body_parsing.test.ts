import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Agent } from '../agent/agent.ts';
import { ConfigError, parseConfig } from '../agent/config/load.ts';
import { createLogger } from '../agent/log.ts';
import { AgentHarness, agentConfigYaml, criLines, NodeTree, readRecords, scrapeMetric, SOURCE, type ConfigValue } from './helpers/agent_harness.ts';
import { waitFor } from './helpers/child_agent.ts';
import { JOURNAL_REMOTE, JournalFixture, journalToolsAvailable } from './helpers/journal_fixture.ts';

/** Body parsing per source (`parser`: container_logs, and journald's MESSAGE), in the running agent, without any Kubernetes API. */

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function run(source: Record<string, ConfigValue>, bodies: string[]) {
  const h = new AgentHarness({ source });
  cleanups.push(() => h.stop());
  h.tree.container({ content: criLines(bodies) });
  await h.start();
  return { h, records: await h.waitForLines(bodies.length) };
}

function configProblems(source: Record<string, ConfigValue>): string[] {
  const tree = new NodeTree();
  cleanups.push(() => tree.remove());
  try {
    parseConfig(agentConfigYaml(tree, { source }), 'test.yaml', {});
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('parser: json', () => {
  it('turns object bodies into fields with severity; keeps arrays, scalars and text as the original string, counted', async () => {
    const bodies = [
      '{"level":"error","msg":"db down","ts":1763719204.512}',
      '[1,2,3]',
      '42',
      '"quoted"',
      'null',
      'plain text line',
      '{"msg":"cut sho',
      '{"severity":"WARNING","nested":{"a":[1,{"b":null}]}}',
    ];
    const { h, records } = await run({ parser: 'json' }, bodies);
    // only the first and the last are objects; every other body stays the line as written
    const parsed = new Map<number, unknown>([
      [0, { level: 'error', msg: 'db down', ts: 1763719204.512 }],
      [7, { severity: 'WARNING', nested: { a: [1, { b: null }] } }],
    ]);
    expect(records.map((r) => r.body)).toEqual(bodies.map((b, i) => (parsed.has(i) ? parsed.get(i) : b)));
    expect(records.map((r) => r.severity_text)).toEqual(['error', undefined, undefined, undefined, undefined, undefined, undefined, 'WARNING']);
    // the runtime's time stays unless timestamp_from_body is on
    expect(records[0]!.timestamp).toBe('2026-11-21T10:00:00.000000001Z');
    expect(await h.metric('telemetry_agent_parse_errors_total', { source: SOURCE, parser: 'json' })).toBe(6);
  });

  it('takes the record time from the body with timestamp_from_body', async () => {
    const { records } = await run({ parser: 'json', timestamp_from_body: true }, ['{"ts":"2026-11-20T08:00:00.5Z","msg":"a"}', '{"time":1763719204512,"msg":"b"}', '{"msg":"c"}']);
    expect(records.map((r) => r.timestamp)).toEqual(['2026-11-20T08:00:00.500000000Z', '2025-11-21T10:00:04.512000000Z', '2026-11-21T10:00:00.000000003Z']);
  });
});

describe('parser: logfmt and regex', () => {
  it('parses logfmt bodies, and counts the lines that are not logfmt', async () => {
    const { h, records } = await run({ parser: 'logfmt' }, ['level=warn msg="disk almost full" pct=91', 'Starting server port=8080']);
    expect(records.map((r) => r.body)).toEqual([{ level: 'warn', msg: 'disk almost full', pct: '91' }, 'Starting server port=8080']);
    expect(records[0]!.severity_text).toBe('warn');
    expect(await h.metric('telemetry_agent_parse_errors_total', { source: SOURCE, parser: 'logfmt' })).toBe(1);
  });

  it('parses with a regex of named groups', async () => {
    const regex = '^(?<ip>\\S+) \\S+ \\S+ \\[(?<time>[^\\]]+)\\] "(?<request>[^"]*)" (?<status>\\d{3})';
    const { h, records } = await run({ parser: { regex } }, ['10.0.0.1 - - [21/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200', 'not an access log']);
    expect(records.map((r) => r.body)).toEqual([{ ip: '10.0.0.1', time: '21/Nov/2026:10:00:00 +0000', request: 'GET / HTTP/1.1', status: '200' }, 'not an access log']);
    expect(await h.metric('telemetry_agent_parse_errors_total', { source: SOURCE, parser: 'regex' })).toBe(1);
  });

  it('rejects a regex that does not compile, or has no named group, naming the key path', () => {
    expect(configProblems({ parser: { regex: '^(?<a>x' } })).toEqual([expect.stringMatching(/^sources\.containers\.parser\.regex: invalid regex: /)]);
    expect(configProblems({ parser: { regex: '^\\d+$' } })).toEqual([expect.stringMatching(/^sources\.containers\.parser\.regex: the regex has no named groups/)]);
    expect(configProblems({ parser: 'yaml' })).toEqual([expect.stringMatching(/^sources\.containers\.parser: /)]);
    expect(configProblems({ parser: { regex: '^(?<a>x)' } })).toEqual([]);
  });
});

describe('parser on journald', () => {
  const tools = journalToolsAvailable();
  it('parses JSON messages and keeps the journal PRIORITY as the severity', async (ctx) => {
    if (!tools) {
      if (process.env.CI) throw new Error(`journalctl and ${JOURNAL_REMOTE} are needed for this test`);
      ctx.skip(`journalctl or ${JOURNAL_REMOTE} missing (apt-get install systemd-journal-remote)`);
    }
    const tree = new NodeTree('kta-journal-parse-');
    cleanups.push(() => tree.remove());
    const journal = new JournalFixture(join(tree.root, 'journal'));
    journal.write([
      { message: '{"level":"debug","msg":"cache warm","ts":"2026-11-20T08:00:00Z"}', identifier: 'app', priority: 3 },
      { message: 'not json', identifier: 'app', priority: 6 },
    ]);
    const yaml = [
      'node_name: test-node',
      `data_dir: ${JSON.stringify(tree.dataDir)}`,
      'server: { listen: "127.0.0.1:0" }',
      'kubernetes: { mode: disabled }',
      'sources:',
      '  journal:',
      '    type: journald',
      `    directories: [${JSON.stringify(journal.dir)}]`,
      '    parser: json',
      '    timestamp_from_body: true',
      'outputs:',
      `  out: { type: file, inputs: [journal], path: ${JSON.stringify(tree.outputPath)} }`,
      '',
    ].join('\n');
    const agent = new Agent(parseConfig(yaml, 'journal.yaml', {}), createLogger('error', () => {}));
    cleanups.push(async () => void (await agent.stop()));
    await agent.start();
    const records = await waitFor('2 journal records', () => {
      const r = readRecords(tree.outputPath);
      return r.length >= 2 ? r : undefined;
    }, 20_000);
    expect(records.map((r) => r.body)).toEqual([{ level: 'debug', msg: 'cache warm', ts: '2026-11-20T08:00:00Z' }, 'not json']);
    // the journal's own PRIORITY (3 = err) wins over the body's level
    expect(records.map((r) => r.severity_text)).toEqual(['ERROR', 'INFO']);
    expect(records[0]!.timestamp).toBe('2026-11-20T08:00:00.000000000Z');
    expect(await scrapeMetric(`http://127.0.0.1:${agent.address!.port}`, 'telemetry_agent_parse_errors_total', { source: 'journal', parser: 'json' })).toBe(1);
  });
});
