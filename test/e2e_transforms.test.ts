import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { criLine, criTime, sampleValue } from './helpers/agent_harness.ts';
import { PrometheusServer } from './helpers/prometheus.ts';
import { requireTool } from './helpers/tools.ts';
import { TransformAgent } from './helpers/transform_agent.ts';
import { NODE, waitFor } from './helpers/child_agent.ts';
import { agentNodeFlags, CLI_PATH } from '../agent/runtime_flags.ts';

/**
 * One end-to-end test per transform type against a real agent process: log files in, NDJSON out,
 * records and metrics compared field by field.
 */
let running: TransformAgent | undefined;
afterEach(async () => {
  await running?.remove();
  running = undefined;
});

function jsonLines(bodies: readonly object[]): string {
  return bodies.map((b, i) => criLine(JSON.stringify(b), { time: criTime(i + 1) })).join('');
}

describe('transform filter, end to end', () => {
  it('drops what the condition names, acknowledges it (the checkpoint moves past the last, dropped lines) and counts it', async () => {
    const bodies = [
      { level: 'info', path: '/api/orders', msg: 'order placed' },
      { level: 'debug', path: '/api/orders', msg: 'cache miss' },
      { level: 'info', path: '/healthz', msg: 'probe' },
      { level: 'error', path: '/api/pay', msg: 'card declined' },
      { level: 'info', msg: 'no path here' },
      { level: 'info', path: '/healthz/ready', msg: 'probe' },
      { level: 'debug', msg: 'last, dropped' },
    ];
    let logPath = '';
    running = await TransformAgent.start({
      source: '    parser: json\n',
      transforms: `  noise:
    type: filter
    inputs: [containers]
    drop: 'severity_number < 9 || (has(body.path) && body.path.startsWith("/healthz"))'
`,
      outputs: { out: ['noise'] },
      before: (tree) => {
        logPath = tree.container({ namespace: 'shop', pod: 'web-1', content: jsonLines(bodies) }).logPath;
      },
    });
    const out = await running.waitRecords('out', 3);
    await new Promise((r) => setTimeout(r, 500));
    expect(running.records('out').length).toBe(3);
    expect(out.map((r) => [r.timestamp, r.severity_text, r.body])).toEqual([
      [criTime(1), 'info', bodies[0]],
      [criTime(4), 'error', bodies[3]],
      [criTime(5), 'info', bodies[4]],
    ]);
    expect(out[0]!.resource).toMatchObject({ 'k8s.namespace.name': 'shop', 'k8s.pod.name': 'web-1', 'k8s.container.name': 'app' });
    expect(out[0]!.attributes).toMatchObject({ 'log.iostream': 'stdout' });
    const metrics = await running.metrics();
    expect(sampleValue(metrics, 'telemetry_agent_dropped_records_total', { component: 'noise', reason: 'filtered' })).toBe(4);
    expect(sampleValue(metrics, 'telemetry_agent_transform_records_total', { transform: 'noise', direction: 'in' })).toBe(7);
    expect(sampleValue(metrics, 'telemetry_agent_transform_records_total', { transform: 'noise', direction: 'out' })).toBe(3);
    expect(await running.stop()).toBe(0);
    expect(running.checkpointOffsets().get(logPath)).toBe(statSync(logPath).size);
  });

  it('an expression failing at run time keeps the record (on_error: keep) and counts it; on_error: drop drops it', async () => {
    const bodies = [{ status: 200 }, { status: 'teapot' }, { nostatus: true }, { status: 503 }];
    running = await TransformAgent.start({
      source: '    parser: json\n',
      transforms: `  keep_bad:
    type: filter
    inputs: [containers]
    drop: 'int(body.status) < 500'
  drop_bad:
    type: filter
    inputs: [containers]
    on_error: drop
    drop: 'int(body.status) < 500'
`,
      outputs: { kept: ['keep_bad'], strict: ['drop_bad'] },
      before: (tree) => tree.container({ content: jsonLines(bodies) }),
    });
    const kept = await running.waitRecords('kept', 3);
    const strict = await running.waitRecords('strict', 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(kept.map((r) => r.body)).toEqual([bodies[1], bodies[2], bodies[3]]);
    expect(strict.map((r) => r.body)).toEqual([bodies[3]]);
    const m = await running.metrics();
    expect(sampleValue(m, 'telemetry_agent_transform_errors_total', { transform: 'keep_bad', expression: 'drop' })).toBe(2);
    expect(sampleValue(m, 'telemetry_agent_transform_errors_total', { transform: 'drop_bad', expression: 'drop' })).toBe(2);
    expect(sampleValue(m, 'telemetry_agent_dropped_records_total', { component: 'drop_bad', reason: 'error' })).toBe(2);
    expect(sampleValue(m, 'telemetry_agent_dropped_records_total', { component: 'drop_bad', reason: 'filtered' })).toBe(1);
    expect(running.agent.stderr).toContain("transform keep_bad: drop failed on a record: ");
  });
});

describe('transform route, end to end', () => {
  it('sends a record to every route it matches, the rest to _unmatched; an unread _unmatched is dropped and counted', async () => {
    running = await TransformAgent.start({
      transforms: `  tenants:
    type: route
    inputs: [containers]
    routes:
      payments: 'resource["k8s.namespace.name"].startsWith("payments")'
      errors: 'body.contains("ERROR")'
  quiet:
    type: route
    inputs: [containers]
    routes:
      none: 'false'
`,
      outputs: { payments: ['tenants.payments'], errors: ['tenants.errors'], rest: ['tenants._unmatched'], never: ['quiet.none'] },
      before: (tree) => {
        tree.container({ namespace: 'payments-eu', pod: 'pay-1', content: criLine('ERROR card declined', { time: criTime(1) }) + criLine('ok', { time: criTime(2) }) });
        tree.container({ namespace: 'shop', pod: 'web-1', content: criLine('ERROR out of stock', { time: criTime(3) }) + criLine('fine', { time: criTime(4) }) });
      },
    });
    const payments = await running.waitRecords('payments', 2);
    const errors = await running.waitRecords('errors', 2);
    const rest = await running.waitRecords('rest', 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(payments.map((r) => [r.resource['k8s.pod.name'], r.body])).toEqual([
      ['pay-1', 'ERROR card declined'],
      ['pay-1', 'ok'],
    ]);
    expect(errors.map((r) => r.body).sort()).toEqual(['ERROR card declined', 'ERROR out of stock']);
    expect(running.records('rest').map((r) => [r.resource['k8s.pod.name'], r.body, r.timestamp])).toEqual([['web-1', 'fine', criTime(4)]]);
    expect(rest.length).toBe(1);
    expect(running.records('never')).toEqual([]);
    const m = await running.metrics();
    expect(sampleValue(m, 'telemetry_agent_dropped_records_total', { component: 'quiet', reason: 'unmatched' })).toBe(4);
    expect(sampleValue(m, 'telemetry_agent_transform_records_total', { transform: 'tenants', direction: 'out' })).toBe(5);
  });
});

describe('transform redact, end to end', () => {
  it('scrubs secrets from text and parsed bodies, custom RE2 patterns included, and a catastrophic pattern does not stall the agent', async () => {
    const evil = 'a'.repeat(60_000) + '!';
    running = await TransformAgent.start({
      transforms: `  scrub:
    type: redact
    inputs: [containers]
    patterns: [email, bearer_token, credit_card]
    custom: { order_token: 'tok_[A-Za-z0-9]{24}', evil: '(a+)+$' }
    replacement: '<{pattern}>'
`,
      outputs: { out: ['scrub'], raw: ['containers'] },
      before: (tree) =>
        tree.container({
          content:
            criLine('login alice@example.com with Bearer 0a1b2c3d4e5f6a7b8c9d0e1f', { time: criTime(1) }) +
            criLine(evil, { time: criTime(2) }) +
            criLine('order tok_ABCDEFGHIJKLMNOPQRSTUVWX paid by 4111 1111 1111 1111', { time: criTime(3) }) +
            criLine('nothing secret, version left-pad@1.3.0', { time: criTime(4) }),
        }),
    });
    const out = await running.waitRecords('out', 4);
    expect(out.map((r) => r.body)).toEqual([
      'login <email> with Bearer <bearer_token>',
      evil,
      'order <order_token> paid by <credit_card>',
      'nothing secret, version left-pad@1.3.0',
    ]);
    // The other branch reads the same records untouched.
    expect((await running.waitRecords('raw', 4)).map((r) => r.body)[0]).toBe('login alice@example.com with Bearer 0a1b2c3d4e5f6a7b8c9d0e1f');
    const m = await running.metrics();
    for (const pattern of ['email', 'bearer_token', 'order_token', 'credit_card']) {
      expect(sampleValue(m, 'telemetry_agent_redactions_total', { transform: 'scrub', pattern }), pattern).toBe(1);
    }
    expect(sampleValue(m, 'telemetry_agent_redactions_total', { transform: 'scrub', pattern: 'evil' })).toBeUndefined();
  });
});

describe('transform sample, end to end', () => {
  it('keeps exactly the share of each key, evenly spread, errors always; the rest counted and acknowledged', async () => {
    const lines = (pod: string, n: number) =>
      Array.from({ length: n }, (_, i) => criLine(JSON.stringify({ level: i % 50 === 49 ? 'error' : 'info', pod, i }), { time: criTime(i + 1) })).join('');
    running = await TransformAgent.start({
      source: '    parser: json\n',
      transforms: `  chatty:
    type: sample
    inputs: [containers]
    rate: 10%
    key: 'resource["k8s.pod.name"]'
    always_keep: 'severity_number >= 17'
`,
      outputs: { out: ['chatty'] },
      before: (tree) => {
        tree.container({ pod: 'a', content: lines('a', 1000) });
        tree.container({ pod: 'b', content: lines('b', 500) });
      },
    });
    // Per pod: 20 (resp. 10) errors kept, and 10% of the other 980 (490) lines.
    await running.waitRecords('out', 20 + 98 + 10 + 49);
    await new Promise((r) => setTimeout(r, 500));
    const out = running.records('out');
    for (const [pod, n, errors] of [['a', 1000, 20], ['b', 500, 10]] as const) {
      const mine = out.filter((r) => r.resource['k8s.pod.name'] === pod);
      const kept = mine.filter((r) => r.severity_text === 'info').map((r) => (r.body as { i: number }).i);
      expect(mine.filter((r) => r.severity_text === 'error').length).toBe(errors);
      expect(kept.length).toBe((n - errors) / 10);
      // Evenly spread: one kept info line in every ten info lines.
      const infoIndex = (i: number) => i - Math.floor(i / 50);
      const buckets = new Set(kept.map((i) => Math.floor(infoIndex(i) / 10)));
      expect(buckets.size).toBe(kept.length);
    }
    const m = await running.metrics();
    expect(sampleValue(m, 'telemetry_agent_dropped_records_total', { component: 'chatty', reason: 'sampled' })).toBe(1500 - out.length);
  });
});

describe('transform modify, end to end', () => {
  it('parses a field, sets from CEL, renames and deletes in attributes, resource and body', async () => {
    running = await TransformAgent.start({
      source: '    parser: json\n',
      transforms: `  tidy:
    type: modify
    inputs: [containers]
    parse:
      - { field: body.payload, format: logfmt }
    set:
      attributes: { team: 'resource["k8s.namespace.name"] + "-team"', status_class: 'string(int(body.status) / 100) + "xx"' }
      resource: { k8s.cluster.name: '"prod-eu"' }
      body: { duration_ms: 'body.duration * 1000.0', request.tag: '"seen"' }
      severity_text: 'int(body.status) >= 500 ? "ERROR" : severity_text'
    rename:
      body: { msg: message }
      attributes: { log.iostream: stream }
    delete:
      body: [password]
      attributes: [log.file.path]
`,
      outputs: { out: ['tidy'] },
      before: (tree) =>
        tree.container({
          namespace: 'shop',
          content:
            criLine(JSON.stringify({ level: 'info', msg: 'done', status: 503, duration: 0.25, password: 'x', payload: 'user=alice cart=3', request: { path: '/a' } }), { time: criTime(1) }) +
            criLine(JSON.stringify({ level: 'info', msg: 'ok', duration: 0.5 }), { time: criTime(2) }),
        }),
    });
    const out = await running.waitRecords('out', 2);
    expect(out[0]).toMatchObject({
      timestamp: criTime(1),
      severity_text: 'ERROR',
      body: { level: 'info', message: 'done', status: 503, duration: 0.25, duration_ms: 250, payload: { user: 'alice', cart: '3' }, request: { path: '/a', tag: 'seen' } },
      attributes: { team: 'shop-team', status_class: '5xx', stream: 'stdout' },
    });
    expect(out[0]!.body).not.toHaveProperty('password');
    expect(out[0]!.attributes).not.toHaveProperty('log.file.path');
    expect(out[0]!.attributes).not.toHaveProperty('log.iostream');
    expect(out[0]!.resource).toMatchObject({ 'k8s.cluster.name': 'prod-eu', 'k8s.namespace.name': 'shop' });
    // The second line has no status: that setter fails (counted), the rest applies, the record is kept.
    expect(out[1]).toMatchObject({ severity_text: 'info', body: { message: 'ok', duration_ms: 500 }, attributes: { team: 'shop-team', stream: 'stdout' } });
    expect(out[1]!.attributes).not.toHaveProperty('status_class');
    const m = await running.metrics();
    expect(sampleValue(m, 'telemetry_agent_transform_errors_total', { transform: 'tidy', expression: 'set.attributes.status_class' })).toBe(1);
    expect(sampleValue(m, 'telemetry_agent_transform_errors_total', { transform: 'tidy', expression: 'set.severity_text' })).toBe(1);
  });
});

describe('transform log_to_metric, end to end', () => {
  it('counters, gauges and histograms on /metrics pass promtool and a real Prometheus scrape returns them', async (ctx) => {
    const promtool = requireTool(ctx, 'promtool');
    const prometheusBin = requireTool(ctx, 'prometheus');
    const requests = [
      { ns: 'shop', status: 200, ms: 12, queue: 3 },
      { ns: 'shop', status: 200, ms: 40, queue: 5 },
      { ns: 'shop', status: 503, ms: 900, queue: 9 },
      { ns: 'pay', status: 200, ms: 7, queue: 1 },
    ];
    running = await TransformAgent.start({
      source: '    parser: json\n',
      transforms: `  http_metrics:
    type: log_to_metric
    inputs: [containers]
    metrics:
      - name: app_http_requests_total
        type: counter
        when: 'has(body.status)'
        labels: { namespace: 'resource["k8s.namespace.name"]', code: 'string(int(body.status))' }
      - name: app_queue_depth
        type: gauge
        help: Queue depth last logged
        when: 'has(body.queue)'
        value: 'body.queue'
        labels: { namespace: 'resource["k8s.namespace.name"]' }
      - name: app_request_duration_seconds
        type: histogram
        when: 'has(body.ms)'
        value: 'body.ms / 1000.0'
        buckets: [0.01, 0.1, 1]
`,
      outputs: { out: ['http_metrics'] },
      before: (tree) => {
        for (const ns of ['shop', 'pay']) {
          const mine = requests.filter((r) => r.ns === ns);
          tree.container({ namespace: ns, pod: `${ns}-1`, content: mine.map((r, i) => criLine(JSON.stringify({ status: r.status, ms: r.ms, queue: r.queue }), { time: criTime(i + 1) })).join('') });
        }
      },
    });
    // Records pass on unchanged.
    const out = await running.waitRecords('out', 4);
    expect(out.map((r) => r.body).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))).toEqual(
      requests.map((r) => ({ status: r.status, ms: r.ms, queue: r.queue })).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    );
    const text = await running.metrics();
    expect(sampleValue(text, 'app_http_requests_total', { namespace: 'shop', code: '200' })).toBe(2);
    expect(sampleValue(text, 'app_http_requests_total', { namespace: 'shop', code: '503' })).toBe(1);
    expect(sampleValue(text, 'app_http_requests_total', { namespace: 'pay', code: '200' })).toBe(1);
    expect(sampleValue(text, 'app_queue_depth', { namespace: 'shop' })).toBe(9);
    expect(sampleValue(text, 'app_queue_depth', { namespace: 'pay' })).toBe(1);
    expect(sampleValue(text, 'app_request_duration_seconds_bucket', { le: '0.01' })).toBe(1);
    expect(sampleValue(text, 'app_request_duration_seconds_bucket', { le: '0.1' })).toBe(3);
    expect(sampleValue(text, 'app_request_duration_seconds_bucket', { le: '+Inf' })).toBe(4);
    expect(sampleValue(text, 'app_request_duration_seconds_sum')).toBeCloseTo(0.959, 6);
    expect(text).toContain('# HELP app_queue_depth Queue depth last logged');
    const check = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
    expect(check.status, `promtool check metrics:\n${check.stdout}${check.stderr}`).toBe(0);

    const prom = new PrometheusServer();
    try {
      await prom.start(prometheusBin, `127.0.0.1:${running.port}`);
      const counted = await prom.until('app_http_requests_total', (r) => r.length === 3);
      const byLabels = Object.fromEntries(counted.map((s) => [`${s.metric.namespace}/${s.metric.code}`, s.value[1]]));
      expect(byLabels).toEqual({ 'shop/200': '2', 'shop/503': '1', 'pay/200': '1' });
      expect((await prom.query('app_queue_depth{namespace="shop"}'))[0]!.value[1]).toBe('9');
      expect((await prom.query('app_request_duration_seconds_count'))[0]!.value[1]).toBe('4');
      expect((await prom.query('app_request_duration_seconds_bucket{le="0.1"}'))[0]!.value[1]).toBe('3');
    } finally {
      await prom.stop();
    }
  });
});

describe('transform dedupe, end to end', () => {
  it('collapses identical consecutive records of a stream into one with a repeat count; the last leaves after the window', async () => {
    const lines = [
      ['stdout', 'connection refused'],
      ['stdout', 'connection refused'],
      ['stderr', 'disk almost full'],
      ['stdout', 'connection refused'],
      ['stdout', 'retrying'],
      ['stderr', 'disk almost full'],
      ['stdout', 'retrying'],
      ['stdout', 'connected'],
    ] as const;
    let logPath = '';
    running = await TransformAgent.start({
      transforms: `  quiet:
    type: dedupe
    inputs: [containers]
    window: 2s
`,
      outputs: { out: ['quiet'] },
      before: (tree) => {
        logPath = tree.container({ content: lines.map(([stream, body], i) => criLine(body, { stream, time: criTime(i + 1) })).join('') }).logPath;
        tree.container({ pod: 'other', content: criLine('connection refused', { time: criTime(1) }) });
      },
    });
    const started = Date.now();
    const out = await running.waitRecords('out', 5);
    const mine = out.filter((r) => r.resource['k8s.pod.name'] !== 'other');
    const simplify = (r: (typeof out)[number]) => [r.attributes['log.iostream'], r.body, r.timestamp, r.attributes['kta.repeat.count'], r.attributes['kta.repeat.last_timestamp']];
    expect(mine.map(simplify)).toEqual([
      ['stdout', 'connection refused', criTime(1), 3, criTime(4)],
      ['stdout', 'retrying', criTime(5), 2, criTime(7)],
      ['stderr', 'disk almost full', criTime(3), 2, criTime(6)],
      ['stdout', 'connected', criTime(8), undefined, undefined],
    ]);
    // Another container's identical line is another stream.
    expect(out.filter((r) => r.resource['k8s.pod.name'] === 'other').map((r) => [r.body, r.attributes['kta.repeat.count']])).toEqual([['connection refused', undefined]]);
    // The runs still open at the end of the file left when their window passed, not before.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
    const m = await running.metrics();
    expect(sampleValue(m, 'telemetry_agent_dropped_records_total', { component: 'quiet', reason: 'deduplicated' })).toBe(4);
    expect(await running.stop()).toBe(0);
    expect(running.checkpointOffsets().get(logPath)).toBe(statSync(logPath).size);
  });
});

describe('transform throttle, end to end', () => {
  it('when_exceeded: drop keeps each key within its budget and counts the rest', async () => {
    running = await TransformAgent.start({
      transforms: `  per_pod:
    type: throttle
    inputs: [containers]
    key: 'resource["k8s.pod.name"]'
    rate: 1/s
    burst: 5
    when_exceeded: drop
`,
      outputs: { out: ['per_pod'] },
      before: (tree) => {
        tree.container({ pod: 'loud', content: Array.from({ length: 50 }, (_, i) => criLine(`loud ${i}`, { time: criTime(i + 1) })).join('') });
        tree.container({ pod: 'quiet', content: [0, 1, 2].map((i) => criLine(`quiet ${i}`, { time: criTime(i + 1) })).join('') });
      },
    });
    await running.waitRecords('out', 8);
    await new Promise((r) => setTimeout(r, 300));
    const out = running.records('out');
    // Reading takes well under a second: the loud pod spends its burst of 5, the rest is over budget.
    expect(out.filter((r) => r.resource['k8s.pod.name'] === 'loud').map((r) => r.body)).toEqual(['loud 0', 'loud 1', 'loud 2', 'loud 3', 'loud 4']);
    expect(out.filter((r) => r.resource['k8s.pod.name'] === 'quiet').map((r) => r.body)).toEqual(['quiet 0', 'quiet 1', 'quiet 2']);
    const m = await running.metrics();
    expect(sampleValue(m, 'telemetry_agent_dropped_records_total', { component: 'per_pod', reason: 'throttled' })).toBe(45);
    expect(sampleValue(m, 'telemetry_agent_throttle_exceeded_records_total', { transform: 'per_pod', when_exceeded: 'drop' })).toBe(45);
    expect(sampleValue(m, 'telemetry_agent_throttle_keys', { transform: 'per_pod' })).toBe(2);
  });

  it('when_exceeded: pause reads a pod writing 50 MiB/s at its 1 MiB/s budget, losing nothing, while 20 quiet pods keep p99 latency under 1 s', async () => {
    let loudPath = '';
    const quietPaths: string[] = [];
    running = await TransformAgent.start({
      transforms: `  per_pod:
    type: throttle
    inputs: [containers]
    key: 'resource["k8s.pod.name"]'
    rate: 1MiB/s
    burst: 1MiB
    when_exceeded: pause
`,
      outputs: { out: ['per_pod'] },
      before: (tree) => {
        loudPath = tree.container({ pod: 'loud' }).logPath;
        for (let i = 0; i < 20; i++) quietPaths.push(tree.container({ pod: `quiet-${i}` }).logPath);
      },
    });
    // Quiet pods: one line each every 100 ms, carrying the time it was written.
    let quietSeq = 0;
    const quietTimer = setInterval(() => {
      const now = Date.now();
      for (const p of quietPaths) appendFileSync(p, criLine(`quiet written=${now} seq=${quietSeq}`, { time: new Date(now).toISOString().replace('Z', '000000Z') }));
      quietSeq++;
    }, 100);
    // The loud pod: 12 MiB of 300-byte lines in about a quarter of a second (50 MiB/s), in 256 KiB writes.
    const pad = 'x'.repeat(240);
    const LOUD = 12 * 1024 * 1024;
    let loudLines = 0;
    let written = 0;
    const loudStart = Date.now();
    while (written < LOUD) {
      let chunk = '';
      while (chunk.length < 256 * 1024) chunk += criLine(`loud seq=${String(loudLines++).padStart(8, '0')} ${pad}`, { time: criTime(1) });
      appendFileSync(loudPath, chunk);
      written += chunk.length;
      // No faster than 50 MiB/s.
      const due = loudStart + (written / (50 * 1024 * 1024)) * 1000;
      await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
    }
    const writeSeconds = (Date.now() - loudStart) / 1000;

    // Watch the output: when each quiet line arrives, and when the loud pod's last line does.
    const seen = new Map<string, number>();
    let offset = 0;
    let loudArrived = 0;
    let lastLoudAt = 0;
    const scan = () => {
      const path = running!.outputPath('out');
      if (!existsSync(path)) return;
      const fd = openSync(path, 'r');
      const buf = Buffer.alloc(4 * 1024 * 1024);
      let text = '';
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, offset);
        if (n === 0) break;
        text += buf.toString('utf8', 0, n);
        offset += n;
      }
      closeSync(fd);
      const cut = text.lastIndexOf('\n');
      offset -= text.length - (cut + 1);
      const now = Date.now();
      for (const line of text.slice(0, cut + 1).split('\n')) {
        if (!line) continue;
        const r = JSON.parse(line) as { body: string; resource: Record<string, string> };
        if (r.body.startsWith('quiet')) seen.set(`${r.resource['k8s.pod.name']} ${r.body}`, now);
        else {
          loudArrived++;
          lastLoudAt = now;
        }
      }
    };
    try {
      await waitFor('every loud line', () => {
        scan();
        return loudArrived >= loudLines;
      }, 60_000, 50);
    } finally {
      clearInterval(quietTimer);
    }
    await waitFor('the last quiet lines', () => {
      scan();
      return seen.size >= quietSeq * 20;
    }, 10_000, 50);

    // Nothing lost, nothing twice, in order.
    expect(loudArrived).toBe(loudLines);
    const loud = running.records('out').filter((r) => r.resource['k8s.pod.name'] === 'loud').map((r) => (r.body as string).slice(0, 17));
    expect(loud).toEqual(Array.from({ length: loudLines }, (_, i) => `loud seq=${String(i).padStart(8, '0')}`));
    // Later: written in a fraction of a second, read at about 1 MiB/s after the 1 MiB burst.
    expect(writeSeconds).toBeLessThan(3);
    expect((lastLoudAt - loudStart) / 1000).toBeGreaterThan(8);
    // The quiet pods kept their pace meanwhile.
    const latencies = [...seen].map(([key, at]) => at - Number(/written=(\d+)/.exec(key)![1])).sort((a, b) => a - b);
    const p99 = latencies[Math.floor(latencies.length * 0.99)]!;
    console.log(`throttle pause: ${loudLines} loud lines (${LOUD / 1048576} MiB) written in ${writeSeconds.toFixed(2)} s, all arrived after ${((lastLoudAt - loudStart) / 1000).toFixed(1)} s; ${latencies.length} quiet lines, p50 ${latencies[Math.floor(latencies.length / 2)]} ms, p99 ${p99} ms`);
    expect(latencies.length).toBe(quietSeq * 20);
    expect(p99).toBeLessThan(1000);
    const m = await running.metrics();
    expect(sampleValue(m, 'telemetry_agent_dropped_records_total', { component: 'per_pod' })).toBeUndefined();
    expect(sampleValue(m, 'telemetry_agent_throttle_exceeded_records_total', { transform: 'per_pod', when_exceeded: 'pause' })).toBeGreaterThan(loudLines / 2);
  }, 90_000);
});

describe('a graph of four transforms feeding three outputs through routes, through a kill -9', () => {
  it('every record reaches the outputs its route names, redacted, filtered and deduplicated, none lost across the crash', async () => {
    const pods = [
      { namespace: 'payments', pod: 'pay-1' },
      { namespace: 'payments', pod: 'pay-2' },
      { namespace: 'shop', pod: 'web-1' },
      { namespace: 'shop', pod: 'web-2' },
      { namespace: 'ops', pod: 'job-1' },
    ];
    const paths: string[] = [];
    running = await TransformAgent.start({
      source: '    parser: json\n',
      transforms: `  noise:
    type: filter
    inputs: [containers]
    drop: 'severity_number < 9'
  scrub:
    type: redact
    inputs: [noise]
    patterns: [email]
  tenants:
    type: route
    inputs: [scrub]
    routes:
      payments: 'resource["k8s.namespace.name"] == "payments"'
      errors: 'severity_number >= 17'
  quiet:
    type: dedupe
    inputs: [tenants._unmatched]
    window: 500ms
`,
      outputs: { payments: ['tenants.payments'], errors: ['tenants.errors'], rest: ['quiet'] },
      before: (tree) => {
        for (const p of pods) paths.push(tree.container(p).logPath);
      },
    });
    const expected = { payments: new Set<string>(), errors: new Set<string>(), rest: new Set<string>() };
    let seq = 0;
    let heartbeats = 0;
    const write = () => {
      pods.forEach((p, i) => {
        const n = seq++;
        const level = n % 7 === 0 ? 'debug' : n % 5 === 0 ? 'error' : 'info';
        const id = `id-${n}`;
        appendFileSync(paths[i]!, criLine(JSON.stringify({ level, id, msg: `user${n}@example.com did something` }), { time: criTime(n + 1) }));
        if (level === 'debug') return;
        if (p.namespace === 'payments') expected.payments.add(id);
        if (level === 'error') expected.errors.add(id);
        if (p.namespace !== 'payments' && level !== 'error') expected.rest.add(id);
      });
      // Identical lines in a row: collapsed by dedupe on the unmatched branch.
      if (seq % 50 === 0) {
        for (let k = 0; k < 3; k++) appendFileSync(paths[4]!, criLine(JSON.stringify({ level: 'info', msg: 'heartbeat' }), { time: criTime(seq) }));
        heartbeats += 3;
      }
    };
    const started = Date.now();
    let killed = false;
    while (Date.now() - started < 5000) {
      for (let k = 0; k < 10; k++) write();
      if (!killed && Date.now() - started > 2000) {
        expect(await running.agent.kill('SIGKILL'), running.agent.stderr.slice(-3000)).toBe('SIGKILL');
        killed = true;
        running.agent.start();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await running.agent.ready(running.port);
    const ids = (output: string) => new Set(running!.records(output).map((r) => (r.body as { id?: string }).id).filter((x): x is string => x !== undefined));
    await waitFor('every record in its outputs', () => {
      const got = { payments: ids('payments'), errors: ids('errors'), rest: ids('rest') };
      return (['payments', 'errors', 'rest'] as const).every((o) => [...expected[o]].every((id) => got[o].has(id)));
    }, 30_000, 200);
    expect(await running.stop()).toBe(0);
    for (const output of ['payments', 'errors', 'rest'] as const) {
      const got = ids(output);
      // Nothing more than what belongs there: debug lines filtered, routes honoured.
      expect([...got].filter((id) => !expected[output].has(id)), output).toEqual([]);
      expect(got.size, output).toBe(expected[output].size);
      for (const r of running.records(output)) expect(JSON.stringify(r.body)).not.toMatch(/@example\.com/);
    }
    // Heartbeats: collapsed in runs, none lost (a crash may repeat a run, never drop it).
    const counted = running
      .records('rest')
      .filter((r) => (r.body as { msg: string }).msg === 'heartbeat')
      .reduce((n, r) => n + Number(r.attributes['kta.repeat.count'] ?? 1), 0);
    expect(counted).toBeGreaterThanOrEqual(heartbeats);
    expect(running.records('rest').some((r) => r.attributes['kta.repeat.count'] === 3)).toBe(true);
    console.log(`graph through kill -9: ${seq} lines written, payments ${expected.payments.size}, errors ${expected.errors.size}, rest ${expected.rest.size}, heartbeats ${heartbeats} counted ${counted}`);
  }, 90_000);
});

describe('transforms and hot reload', () => {
  it('a removed transform hands on what it holds, a changed one is swapped without loss, an expression that does not compile is a rejected reload', async () => {
    let logPath = '';
    running = await TransformAgent.start({
      transforms: `  quiet:
    type: dedupe
    inputs: [containers]
    window: 60s
`,
      outputs: { out: ['quiet'] },
      before: (tree) => {
        logPath = tree.container({ content: ['a', 'a', 'a', 'b'].map((b, i) => criLine(b, { time: criTime(i + 1) })).join('') }).logPath;
      },
    });
    const bodies = () => running!.records('out').map((r) => [r.body, r.attributes['kta.repeat.count']]);
    await waitFor('the first run', () => running!.records('out').length === 1, 10_000);
    expect(bodies()).toEqual([['a', 3]]);
    const reloads = async (result: string) => sampleValue(await running!.metrics(), 'telemetry_agent_config_reloads_total', { result }) ?? 0;

    // 1. The dedupe goes away while it holds `b` (its window is a minute): `b` goes on at once, once.
    running.writeConfig(`  keep_all:\n    type: filter\n    inputs: [containers]\n    drop: 'body == "noise"'\n`);
    const config2 = readFileSync(running.configPath, 'utf8').replace('inputs: ["quiet"]', 'inputs: ["keep_all"]');
    writeFileSync(running.configPath, config2);
    running.agent.proc!.kill('SIGHUP');
    await waitFor('b handed on by the removed dedupe', () => running!.records('out').length === 2, 10_000);
    expect(bodies()).toEqual([['a', 3], ['b', undefined]]);
    expect(running.agent.stderr).toContain('transform quiet removed');
    appendFileSync(logPath, criLine('noise', { time: criTime(5) }) + criLine('c', { time: criTime(6) }));
    await waitFor('c', () => running!.records('out').length === 3, 10_000);

    // 2. An expression that does not compile: rejected, the running config stays.
    const good = readFileSync(running.configPath, 'utf8');
    writeFileSync(running.configPath, good.replace(`drop: 'body == "noise"'`, `drop: 'body ==* "noise"'`));
    running.agent.proc!.kill('SIGHUP');
    await waitFor('the rejected reload', async () => (await reloads('failure')) >= 1, 10_000);
    expect(running.agent.stderr).toMatch(/transforms\.keep_all\.drop: CEL syntax error: line 1, column \d+/);
    appendFileSync(logPath, criLine('noise', { time: criTime(7) }) + criLine('d', { time: criTime(8) }));
    await waitFor('d, with noise still filtered', () => running!.records('out').length === 4, 10_000);

    // 3. A changed expression: the filter is swapped; nothing read around the swap is lost.
    writeFileSync(running.configPath, good.replace(`drop: 'body == "noise"'`, `drop: 'body == "d"'`));
    running.agent.proc!.kill('SIGHUP');
    await waitFor('the applied reload', async () => (await reloads('success')) >= 2, 10_000);
    expect(running.agent.stderr).toContain('transform keep_all changed');
    appendFileSync(logPath, criLine('noise', { time: criTime(9) }) + criLine('d', { time: criTime(10) }) + criLine('e', { time: criTime(11) }));
    await waitFor('noise and e', () => running!.records('out').length === 6, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(bodies().map(([b]) => b)).toEqual(['a', 'b', 'c', 'd', 'noise', 'e']);
    expect(await running.stop()).toBe(0);
    expect(running.checkpointOffsets().get(logPath)).toBe(statSync(logPath).size);
  }, 60_000);
});

describe('tap a transform', () => {
  it('`tap scrub --json` shows what the transform passes on (redacted), and /components lists it with its inputs', async () => {
    running = await TransformAgent.start({
      transforms: `  scrub:\n    type: redact\n    inputs: [containers]\n    patterns: [email]\n`,
      outputs: { out: ['scrub'] },
    });
    const components = (await (await fetch(`http://127.0.0.1:${running.port}/components`)).json()) as { components: { name: string; kind: string; inputs: string[] }[] };
    expect(components.components.find((c) => c.name === 'scrub')).toMatchObject({ kind: 'transform', inputs: ['containers'] });
    const child = spawn(NODE, [...agentNodeFlags(), CLI_PATH, 'tap', 'scrub', '--agent', `http://127.0.0.1:${running.port}`, '--limit', '3', '--json', '--rate', '1000'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const done = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    const listening = async () =>
      ((await (await fetch(`http://127.0.0.1:${running!.port}/components`)).json()) as { components: { name: string; listeners: number }[] }).components.find((c) => c.name === 'scrub')!.listeners;
    await waitFor('the tap to subscribe', async () => (await listening()) === 1, 10_000);
    running.tree.container({ content: [1, 2, 3, 4].map((i) => criLine(`mail user${i}@example.com`, { time: criTime(i) })).join('') });
    expect(await done).toBe(0);
    const lines = stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { body: string }).body);
    expect(lines).toHaveLength(3);
    for (const b of lines) expect(b).toBe('mail [REDACTED]');
  });
});
