import { spawn } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { LogRecord } from '../agent/record.ts';
import type { StatusSnapshot } from '../agent/status/components.ts';
import { StatusRoutes } from '../agent/status/routes.ts';
import { TAP_MAX_LISTENERS, TapError, TapHub, type TapListener } from '../agent/tap.ts';
import { agentNodeFlags, CLI_PATH } from '../agent/runtime_flags.ts';
import { AgentHarness, criLine, criTime } from './helpers/agent_harness.ts';
import { recs, id } from './helpers/buffer_fixtures.ts';
import { NODE, waitFor } from './helpers/child_agent.ts';

/** issue 13: `telemetry-agent tap` — sampled, bounded, read-only, local or token-protected. */

function collector(): TapListener & { lines: string[]; ended: boolean; full: boolean } {
  const c = {
    lines: [] as string[],
    ended: false,
    full: false,
    write(line: string) {
      c.lines.push(line);
      return !c.full;
    },
    end() {
      c.ended = true;
    },
  };
  return c;
}

describe('tap hub', () => {
  it('costs one false boolean while nobody listens, and hands nothing out', () => {
    const hub = new TapHub();
    const p = hub.point('containers', 'source');
    expect(p.active).toBe(false);
    const c = collector();
    const h = hub.subscribe(p, c);
    expect(p.active).toBe(true);
    h.close();
    expect(p.active).toBe(false);
    p.publish(recs(0, 10));
    expect(c.lines).toEqual([]);
  });

  it('samples a batch evenly within each second\'s budget, stops at the limit, and never changes the records', () => {
    const hub = new TapHub();
    const p = hub.point('containers', 'source');
    const c = collector();
    hub.subscribe(p, c, { perSecond: 4, limit: 10 });
    const batch = recs(0, 1000);
    const before = JSON.stringify(batch);
    p.publish(batch, 5_000);
    // Four records of the thousand, spread over it (not the first four).
    expect(c.lines.map((l) => id(JSON.parse(l) as LogRecord))).toEqual([0, 250, 500, 750]);
    p.publish(recs(1000, 100), 5_900); // same second: budget spent
    expect(c.lines).toHaveLength(4);
    p.publish(recs(2000, 2), 6_000); // next second: both
    p.publish(recs(3000, 100), 7_000); // 4 more would pass the limit of 10: 4 allowed, the 10th ends it
    expect(c.lines).toHaveLength(10);
    expect(c.ended).toBe(true);
    expect(p.active).toBe(false);
    // Lines are copies in design.md's NDJSON shape; the pipeline's records are untouched.
    expect(JSON.stringify(batch)).toBe(before);
    const line = JSON.parse(c.lines[0]!) as Record<string, unknown>;
    expect(Object.keys(line)).toEqual(expect.arrayContaining(['timestamp', 'observed_timestamp', 'body', 'attributes', 'resource']));
  });

  it('drops (and counts) lines for a listener that is backed up, until it drains; at most 16 listeners', () => {
    const hub = new TapHub();
    const p = hub.point('loki', 'output');
    const c = collector();
    const h = hub.subscribe(p, c, { perSecond: 1000 });
    c.full = true;
    p.publish(recs(0, 5), 1_000); // the first write reports back-pressure
    expect(c.lines).toHaveLength(1);
    expect(h.dropped).toBe(4);
    c.full = false;
    h.resume();
    p.publish(recs(5, 3), 1_000);
    expect(c.lines).toHaveLength(4);
    for (let i = 1; i < TAP_MAX_LISTENERS; i++) hub.subscribe(p, collector());
    expect(() => hub.subscribe(p, collector())).toThrow(TapError);
  });

  it('resolves names, and asks which one when a source and an output share a name', () => {
    const hub = new TapHub();
    const known = [
      { name: 'journal', kind: 'source' as const },
      { name: 'journal', kind: 'output' as const },
      { name: 'loki', kind: 'output' as const },
    ];
    expect(hub.resolve('loki', known).kind).toBe('output');
    expect(() => hub.resolve('journal', known)).toThrow(/say source:journal or output:journal/);
    expect(hub.resolve('output:journal', known).kind).toBe('output');
    expect(() => hub.resolve('lokki', known)).toThrow(/no component "lokki" \(components: journal, journal, loki\)/);
  });
});

describe('tap over HTTP and the CLI', () => {
  let h: AgentHarness;
  let file: string;
  let n = 0;
  const write = (count: number) => {
    let text = '';
    for (let i = 0; i < count; i++, n++) text += criLine(`{"level":"info","msg":"request ${n}"}`, { time: criTime(n + 1) });
    appendFileSync(file, text);
  };
  beforeAll(async () => {
    h = new AgentHarness({ source: { parser: 'json' } });
    file = h.tree.container({ namespace: 'shop', pod: 'web-1' }).logPath;
    await h.start();
  });
  afterAll(() => h?.stop());

  const cli = (...args: string[]) => {
    const child = spawn(NODE, [...agentNodeFlags(), CLI_PATH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const done = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    return { child, done, out: () => stdout, err: () => stderr };
  };
  const listeners = async () => ((await (await fetch(`${h.baseUrl}/components`)).json()) as StatusSnapshot).components.reduce((s, c) => s + c.listeners, 0);

  it('`tap containers --limit 5 --json` prints five parsed, enriched records as NDJSON and exits 0; the output still gets every record', async () => {
    const tap = cli('tap', 'containers', '--agent', h.baseUrl, '--limit', '5', '--json', '--rate', '1000');
    await waitFor('the tap to subscribe', async () => (await listeners()) === 1, 10_000);
    write(50);
    expect(await tap.done, tap.err()).toBe(0);
    const lines = tap.out().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { body: { msg: string }; resource: Record<string, string> });
    expect(lines).toHaveLength(5);
    for (const r of lines) {
      expect(r.body.msg).toMatch(/^request \d+$/); // after the json parser
      expect(r.resource['k8s.pod.name']).toBe('web-1');
    }
    expect(tap.err()).toContain('tapping source:containers');
    await h.waitForLines(50);
    expect(h.records().map((r) => (r.body as { msg: string }).msg)).toEqual(Array.from({ length: 50 }, (_, i) => `request ${i}`));
    expect(await listeners()).toBe(0);
  });

  it('`tap out` shows what the output is handed, as readable text, sampled to --rate', async () => {
    const tap = cli('tap', 'out', '--agent', h.baseUrl, '--rate', '2');
    await waitFor('the tap to subscribe', async () => (await listeners()) === 1, 10_000);
    const started = Date.now();
    for (let i = 0; i < 5; i++) {
      write(200);
      await new Promise((r) => setTimeout(r, 300));
    }
    await h.waitForLines(1050);
    tap.child.kill('SIGINT');
    expect(await tap.done).toBe(0);
    const seconds = (Date.now() - started) / 1000;
    const lines = tap.out().split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    // At most 2 a second (plus the second it started in): 1000 records went through.
    expect(lines.length).toBeLessThanOrEqual(2 * (Math.ceil(seconds) + 1));
    for (const l of lines) expect(l).toMatch(/^2026-11-21T10:00:00\.\d{9}Z shop\/web-1\/app stdout info \{"level":"info","msg":"request \d+"\}$/);
  });

  it('an unknown component is a usage error (exit 2) naming the components', async () => {
    const tap = cli('tap', 'lokki', '--agent', h.baseUrl);
    expect(await tap.done).toBe(2);
    expect(tap.err()).toContain('no component "lokki" (components: containers, out)');
  });

  it('another host needs the token of server.tap.token_file; loopback does not', async () => {
    const tokenFile = join(h.tree.root, 'tap-token');
    writeFileSync(tokenFile, 's3cret-tap-token\n');
    const agent = h.agent!;
    const routes = (tokenFile: string | undefined) =>
      new StatusRoutes(
        agent.pipelineView(),
        agent.metrics,
        agent.taps,
        agent.spanLog,
        () => ({ statusPage: false, tap: { enabled: true, tokenFile } }),
      );
    // A server that presents every request as coming from 10.1.2.3.
    const remote = (r: StatusRoutes): Promise<{ server: Server; url: string }> =>
      new Promise((resolve) => {
        const server = createServer((req, res) => {
          Object.defineProperty(req.socket, 'remoteAddress', { value: '10.1.2.3' });
          const url = new URL(req.url!, 'http://x');
          if (!r.handle(req, res, url.pathname, url.searchParams)) res.writeHead(404).end();
        });
        server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }));
      });
    const open = await remote(routes(undefined));
    const guarded = await remote(routes(tokenFile));
    try {
      const noFile = await fetch(`${open.url}/tap/containers?limit=1`);
      expect(noFile.status).toBe(403);
      expect(await noFile.text()).toContain('loopback only');
      expect((await fetch(`${guarded.url}/tap/containers?limit=1`)).status).toBe(401);
      expect((await fetch(`${guarded.url}/tap/containers?limit=1`, { headers: { authorization: 'Bearer wrong-token-of-same-len' } })).status).toBe(401);
      const ok = await fetch(`${guarded.url}/tap/containers?limit=1&rate=100`, { headers: { authorization: 'Bearer s3cret-tap-token' } });
      expect(ok.status).toBe(200);
      write(5);
      expect((await ok.text()).split('\n').filter(Boolean)).toHaveLength(1);
    } finally {
      open.server.close();
      guarded.server.close();
    }
    // Off entirely
    const off = new StatusRoutes(agent.pipelineView(), agent.metrics, agent.taps, agent.spanLog, () => ({ statusPage: false, tap: { enabled: false, tokenFile: undefined } }));
    const offServer = await remote(off);
    try {
      expect((await fetch(`${offServer.url}/tap/containers`)).status).toBe(404);
    } finally {
      offServer.server.close();
    }
  });
});
