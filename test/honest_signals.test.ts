import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { DiskBuffer } from '../agent/buffers/disk_buffer.ts';
import { MemoryBuffer } from '../agent/buffers/memory_buffer.ts';
import { createLogger, formatText } from '../agent/log.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import { OutputRunner } from '../agent/output_runner.ts';
import { BatchAck, type LogRecord } from '../agent/record.ts';
import { RetryableError, type Output, type SendResult } from '../outputs/output.ts';
import { AgentHarness, agentConfigYaml, NodeTree, sampleValue } from './helpers/agent_harness.ts';
import { memoryLog, recs } from './helpers/buffer_fixtures.ts';
import { ChildAgent, freePort, suiteScratch, waitFor } from './helpers/child_agent.ts';

/** issue 13, "Honest signals": what an operator reads must mean what it says. */

const { root } = suiteScratch('kta-signals-', 'KTA_KEEP_SIGNAL_TESTS');
let dirs = 0;

describe('buffer age', () => {
  it("a disk buffer's oldest record age is its oldest unacknowledged record's, not its segment's", async () => {
    const metrics = new SelfMetrics('test');
    const { log } = memoryLog();
    // One large segment holds both pushes: the segment is as old as the first push.
    const b = DiskBuffer.open({ output: 'out', dataDir: join(root, `d${dirs++}`), maxSize: 64 << 20, segmentBytes: 8 << 20, whenFull: 'block', fsync: 'never', metrics, log });
    metrics.trackBufferAge('out', 'disk', () => b.stats().oldestMs);
    await b.push(recs(0, 10), 0, () => {});
    await new Promise((r) => setTimeout(r, 400));
    const beforeSecond = Date.now();
    await b.push(recs(10, 10), 0, () => {});
    const age = async () => sampleValue(await metrics.registry.metrics(), 'telemetry_agent_buffer_oldest_record_age_seconds', { output: 'out' })!;
    expect(await age()).toBeGreaterThanOrEqual(0.4);

    const first = (await b.read(10, 1 << 20))!;
    expect(first.records).toHaveLength(10);
    b.ack(first);
    // The first push is delivered; what waits is the second push, younger than the segment.
    expect(b.stats().records).toBe(10);
    expect(b.stats().oldestMs).toBeGreaterThanOrEqual(beforeSecond);
    expect(await age()).toBeLessThan(0.4);

    const second = (await b.read(10, 1 << 20))!;
    b.ack(second);
    expect(b.stats().oldestMs).toBeUndefined();
    expect(await age()).toBe(0);
    await b.close();
  });
});

describe('drops with when_full: drop_newest', () => {
  afterEach(() => vi.useRealTimers());

  it('are logged at once, then once per 10 s with counts while they go on, and at once again after a quiet interval', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const metrics = new SelfMetrics('test');
    const { log, lines } = memoryLog();
    const b = new MemoryBuffer({ output: 'loki', maxBytes: 1000, maxEvents: 10, whenFull: 'drop_newest', metrics, log });
    await b.push(recs(0, 10), 100, () => {}); // full now, nothing reads it
    const drops = () => lines.filter((l) => l.includes('dropped'));

    for (let i = 0; i < 5; i++) expect(await b.push(recs(10 + i * 7, 7), 70, () => {})).toEqual({ accepted: 0, dropped: 7 });
    expect(drops()).toHaveLength(1);
    expect(drops()[0]).toContain('output loki: memory buffer full: dropped 7 records (when_full: drop_newest)');

    vi.advanceTimersByTime(10_000);
    expect(drops()).toHaveLength(2);
    expect(drops()[1]).toContain('dropped 28 more records in the last 10 s (35 since the agent started)');

    vi.advanceTimersByTime(10_000); // a quiet interval: no line
    expect(drops()).toHaveLength(2);
    await b.push(recs(50, 3), 30, () => {});
    expect(drops()).toHaveLength(3);
    expect(drops()[2]).toContain('dropped 3 records');
    // The counter says the same.
    const text = await metrics.registry.metrics();
    expect(sampleValue(text, 'telemetry_agent_dropped_records_total', { component: 'loki', reason: 'buffer_full' })).toBe(38);
    await b.close();
  });
});

/** A receiver that refuses the first `failures` requests. */
class FlakyOutput implements Output {
  readonly name = 'loki';
  requests = 0;
  accepted = 0;
  private failures: number;
  constructor(failures: number) {
    this.failures = failures;
  }
  async send(records: readonly LogRecord[]): Promise<SendResult> {
    this.requests++;
    if (this.failures-- > 0) throw new RetryableError('connect ECONNREFUSED 10.0.0.7:3100');
    this.accepted += records.length;
    return { bytes: records.length * 10 };
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

describe('output health', () => {
  it('an output that fails then recovers logs the recovery once, with what it cost, and moves its last-success gauge', async () => {
    const metrics = new SelfMetrics('test');
    const lines: string[] = [];
    const log = createLogger('info', (l) => void lines.push(l));
    const out = new FlakyOutput(4);
    const buffer = new MemoryBuffer({ output: 'loki', maxBytes: 1 << 20, maxEvents: 10_000, whenFull: 'block', metrics });
    const created = Date.now() / 1000;
    metrics.declareOutput('loki', 'memory');
    const runner = new OutputRunner(out, { buffer, batch: { maxBytes: 1 << 20, maxEvents: 100, timeoutMs: 0 }, retry: { initialMs: 20, maxMs: 40 }, concurrency: 1, deadLetter: undefined, metrics, log });
    const lastSuccess = async () => sampleValue(await metrics.registry.metrics(), 'telemetry_agent_output_last_success_timestamp_seconds', { output: 'loki' })!;
    // Present from the output's creation (an alert compares it with time()).
    expect(await lastSuccess()).toBeGreaterThanOrEqual(Math.floor(created));
    expect(runner.health()).toEqual({ lastSuccessMs: undefined, failingSince: undefined, lastError: undefined });

    runner.start();
    await runner.push(recs(0, 5), 50, new BatchAck(1, () => {}));
    await waitFor('a failed attempt', () => out.requests >= 2, 10_000, 5);
    const failing = runner.health();
    expect(failing.failingSince).toBeGreaterThan(0);
    expect(failing.lastError).toContain('ECONNREFUSED');

    await waitFor('delivery', () => out.accepted === 5, 10_000, 5);
    const recovered = lines.filter((l) => l.includes('recovered'));
    expect(recovered).toHaveLength(1);
    expect(recovered[0]).toMatch(/output loki: recovered: the receiver accepts again after \d+\.\d s and 4 failed attempts \(last: connect ECONNREFUSED 10\.0\.0\.7:3100\)/);
    expect(runner.health().failingSince).toBeUndefined();
    expect(runner.health().lastSuccessMs).toBeGreaterThanOrEqual(failing.failingSince!);
    expect(await lastSuccess()).toBeCloseTo(runner.health().lastSuccessMs! / 1000, 2);

    // A healthy output logs nothing more.
    await runner.push(recs(5, 5), 50, new BatchAck(1, () => {}));
    await waitFor('second delivery', () => out.accepted === 10, 10_000, 5);
    expect(lines.filter((l) => l.includes('recovered'))).toHaveLength(1);
    await runner.close();
  });
});

describe('label sets alerts watch', () => {
  it('exist at 0 from the start, so increase() sees the first failure, drop, retry or checkpoint error', async () => {
    const h = new AgentHarness();
    await h.start();
    try {
      const text = await (await fetch(`${h.baseUrl}/metrics`)).text();
      const zero: [string, Record<string, string>][] = [
        ['telemetry_agent_output_records_total', { output: 'out', status: 'failed' }],
        ['telemetry_agent_output_records_total', { output: 'out', status: 'dropped' }],
        ['telemetry_agent_output_records_total', { output: 'out', status: 'sent' }],
        ['telemetry_agent_output_retries_total', { output: 'out' }],
        ['telemetry_agent_output_dead_letter_records_total', { output: 'out' }],
        ['telemetry_agent_dropped_records_total', { component: 'out', reason: 'buffer_full' }],
        ['telemetry_agent_dropped_records_total', { component: 'out', reason: 'undeliverable' }],
        ['telemetry_agent_checkpoint_errors_total', { source: 'containers' }],
        ['telemetry_agent_source_records_total', { source: 'containers' }],
        ['telemetry_agent_config_reloads_total', { result: 'failure' }],
      ];
      for (const [name, labels] of zero) expect(sampleValue(text, name, labels), `${name}${JSON.stringify(labels)}`).toBe(0);
      expect(sampleValue(text, 'telemetry_agent_output_last_success_timestamp_seconds', { output: 'out' })).toBeGreaterThan(1.7e9);
    } finally {
      await h.stop();
    }
  });
});

describe('/readyz', () => {
  it('names the component that is not ready and why; ?verbose lists every check when ready', async () => {
    const tree = new NodeTree('kta-readyz-');
    const journal = join(tree.root, 'journal');
    mkdirSync(journal);
    const port = await freePort();
    const config = join(tree.root, 'agent.yaml');
    writeFileSync(
      config,
      agentConfigYaml(tree, { listen: `127.0.0.1:${port}` }).replace(
        'outputs:\n',
        `  journal:\n    type: journald\n    directory: ${JSON.stringify(journal)}\n    journalctl: /nonexistent/bin/journalctl\noutputs:\n`,
      ).replace('inputs: [containers]', 'inputs: [containers, journal]'),
    );
    const agent = new ChildAgent(config);
    agent.start();
    try {
      let res: Response | undefined;
      let body = '';
      await waitFor('/readyz names the journal', async () => {
        res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        body = res ? await res.text() : '';
        // Until journalctl's spawn has failed, the reason does not say why yet.
        return body.includes('[-]source journal') && body.includes('journalctl not found');
      }, 20_000);
      expect(res!.status).toBe(503);
      expect(body).toContain('[+]agent ok');
      expect(body).toContain('[+]source containers ok');
      expect(body).toMatch(new RegExp(`\\[-\\]source journal not ready: journalctl is not running for ${journal}: .*journalctl not found`));
      expect(body.trimEnd().split('\n').at(-1)).toBe('not ready');
    } finally {
      await agent.kill('SIGTERM');
      tree.remove();
    }

    const h = new AgentHarness();
    await h.start();
    try {
      expect(await (await fetch(`${h.baseUrl}/readyz`)).text()).toBe('ready\n');
      expect(await (await fetch(`${h.baseUrl}/readyz?verbose`)).text()).toBe('[+]agent ok\n[+]source containers ok\nready\n');
    } finally {
      await h.stop();
    }
  });
});

describe("the agent's own log", () => {
  it('log_format: json writes one JSON object per event; a multi-line error stays one record in either format', () => {
    const lines: string[] = [];
    const log = createLogger('info', (l) => void lines.push(l), 'json');
    const err = new Error('cannot write checkpoint');
    log.error(`source containers: ${err.stack}`);
    log.info('started');
    const out = lines.join('').split('\n').filter(Boolean);
    expect(out).toHaveLength(2);
    const first = JSON.parse(out[0]!) as { time: string; level: string; msg: string };
    expect(first.level).toBe('error');
    expect(first.msg).toBe(`source containers: ${err.stack}`);
    expect(first.msg.split('\n').length).toBeGreaterThan(2);
    expect(Date.parse(first.time)).toBeGreaterThan(0);
    expect(JSON.parse(out[1]!)).toMatchObject({ level: 'info', msg: 'started' });

    const text = formatText(new Date(0), 'error', 'failed:\n  at a (x.ts:1)\r\n  at b (y.ts:2)');
    expect(text).toBe('1970-01-01T00:00:00.000Z ERROR failed:\\n  at a (x.ts:1)\\n  at b (y.ts:2)\n');
  });

  it('a running agent with log_format: json writes only JSON lines to stderr', async () => {
    const tree = new NodeTree('kta-jsonlog-');
    const port = await freePort();
    const config = join(tree.root, 'agent.yaml');
    writeFileSync(config, `log_format: json\n${agentConfigYaml(tree, { listen: `127.0.0.1:${port}` })}`);
    const agent = new ChildAgent(config);
    agent.start();
    try {
      await agent.ready(port);
      expect(await agent.kill('SIGTERM')).toBe(0);
      const lines = agent.stderr.split('\n').filter(Boolean);
      expect(lines.length).toBeGreaterThanOrEqual(3); // started, SIGTERM, stopped
      for (const l of lines) expect(() => JSON.parse(l), l).not.toThrow();
      expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg).join('\n')).toContain('SIGTERM: stopping');
    } finally {
      tree.remove();
    }
  });
});
