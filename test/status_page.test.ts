import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { agentNodeFlags, CLI_PATH } from '../agent/runtime_flags.ts';
import { AgentHarness } from './helpers/agent_harness.ts';
import { NODE, waitFor } from './helpers/child_agent.ts';
import { requireTool } from './helpers/tools.ts';

/**
 * issue 13, "A page to look at": the status page of a running demo in headless Chromium (Debian's),
 * what it shows asserted, screenshots kept in test-artifacts/status-page/ (gitignored) to look at.
 */

const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/status-page/', import.meta.url));

async function browser(chromiumPath: string): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'kta-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1440, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

describe('status page', () => {
  it('against a running demo: the pipeline graph with live rates, buffer and lag, a failing output during the outage, the spans as a waterfall, a live tap', async (ctx) => {
    const chromiumPath = requireTool(ctx, 'chromium');
    mkdirSync(ARTIFACTS, { recursive: true });
    const demo = spawn(NODE, [...agentNodeFlags(), CLI_PATH, 'demo', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    demo.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    demo.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => demo.once('close', (code) => r(code)));
    const b = await browser(chromiumPath);
    try {
      const base = await waitFor('the demo to start', () => /look\s+(http:\/\/127\.0\.0\.1:\d+)\/status/.exec(stdout)?.[1], 30_000);
      const page = await b.context.newPage();
      await page.goto(`${base}/status`);
      await expect.poll(() => page.locator('#state').textContent(), { timeout: 15_000 }).toBe('ready');

      // The graph: every component, sources on the left, outputs on the right, edges between them.
      const node = (id: string) => page.locator(`g.node[data-component="${id}"]`);
      for (const id of ['source:containers', 'source:cluster', 'transform:scrub', 'output:receiver', 'output:archive']) await expect.poll(() => node(id).count()).toBe(1);
      const x = async (id: string) => (await node(id).boundingBox())!.x;
      expect(await x('source:containers')).toBeLessThan(await x('transform:scrub'));
      expect(await x('transform:scrub')).toBeLessThan(await x('output:receiver'));
      expect(await page.locator('path.edge').count()).toBe(5);
      // Live rates once two snapshots are in; the disk buffer's fill and the source's tail lag.
      await expect.poll(async () => Number(/^([\d.]+)k?\/s/.exec((await node('source:containers').locator('text.rate').textContent()) ?? '')?.[1] ?? 0), { timeout: 15_000 }).toBeGreaterThan(0);
      expect(await node('output:receiver').textContent()).toMatch(/disk buffer [\d.]+% · [\d,]+ rec · oldest/);
      expect(await node('source:containers').textContent()).toMatch(/\d+ files · tail lag \d/);
      expect(await page.locator('path.edge.live').count()).toBeGreaterThan(0);
      await shot(page, '1-pipeline');

      // The outage: the receiver output shows it is failing, and why.
      await waitFor('the receiver outage', () => stdout.includes('receiver  the embedded log receiver goes away'), 60_000, 100);
      await expect.poll(async () => (await node('output:receiver').getAttribute('class')) ?? '', { timeout: 15_000 }).toContain('bad');
      expect(await node('output:receiver').textContent()).toMatch(/failing for \d/);
      expect(await page.locator('#notready').textContent()).toMatch(/output receiver has been failing for [\d.]+ m?s: request to http:\/\/127\.0\.0\.1:\d+\/v1\/logs failed: connection refused .*records wait in its disk buffer/);
      await shot(page, '2-output-failing');
      await waitFor('the receiver to catch up', () => stdout.includes('receiver  caught up'), 60_000, 100);
      await expect.poll(async () => (await node('output:receiver').getAttribute('class')) ?? '', { timeout: 15_000 }).not.toContain('bad');

      // The spans: a waterfall per trace, each step of the story.
      await waitFor('the node failure', () => stdout.includes('span      node.not_ready'), 60_000, 100);
      await expect.poll(() => page.locator('#waterfall tr[data-span="node.not_ready"]').count(), { timeout: 15_000 }).toBe(1);
      for (const name of ['deployment.rollout', 'replicaset.scale', 'pod.startup', 'container.image_pull', 'pvc.provision', 'pod.eviction']) {
        expect(await page.locator(`#waterfall tr[data-span="${name}"]`).count(), name).toBeGreaterThan(0);
      }
      const traces = await page.locator('#waterfall tr.trace').allTextContents();
      expect(traces.some((t) => t.startsWith('node.not_ready · demo-node-2'))).toBe(true);
      expect(traces.filter((t) => t.startsWith('deployment.rollout · shop/checkout')).map((t) => t.split(' · ')[2]).sort()).toEqual(['revision 2, complete', 'revision 3, superseded', 'revision 4, complete']);
      // The source's drops are the excluded pod's, on purpose: not a warning.
      expect(await node('source:containers').getAttribute('class')).toBe('node');
      // Bars sit inside their trace's row, errors in red.
      expect(await page.locator('#waterfall .bar span.error').count()).toBeGreaterThan(0);
      await page.locator('#spans').scrollIntoViewIfNeeded();
      await shot(page, '3-spans');

      // The live tap: records as they leave the containers source, parsed and enriched.
      await page.selectOption('#tapcomp', 'source:containers');
      await page.fill('#taprate', '20');
      await page.click('#tapbtn');
      await expect.poll(async () => ((await page.locator('#tapout').textContent()) ?? '').split('\n').filter(Boolean).length, { timeout: 15_000 }).toBeGreaterThan(10);
      const tapped = ((await page.locator('#tapout').textContent()) ?? '').split('\n').filter(Boolean);
      expect(tapped.some((l) => /^\d\d:\d\d:\d\d\.\d{3} (default|shop|kube-system|monitoring|batch)\/[a-z0-9-]+\/[a-z-]+ /.test(l))).toBe(true);
      expect(tapped.some((l) => l.includes('"msg"'))).toBe(true); // a parsed JSON body
      expect(tapped.filter((l) => l.includes('loadgen'))).toEqual([]); // the excluded pod never leaves the source
      expect(await page.locator('#tapinfo').textContent()).toMatch(/^\d+ records from source:containers$/);
      await page.locator('#tap').scrollIntoViewIfNeeded();
      await shot(page, '4-tap');
      await page.click('#tapbtn'); // stop
      await expect.poll(() => page.locator('#tapbtn').textContent()).toBe('Start');
      // A transform's tap: what the redact transform passes on.
      await page.selectOption('#tapcomp', 'transform:scrub');
      await page.click('#tapbtn');
      await expect.poll(() => page.locator('#tapinfo').textContent(), { timeout: 15_000 }).toMatch(/^([2-9]|\d\d+) records from transform:scrub$/);
      await page.click('#tapbtn');
    } finally {
      await b.close();
      demo.kill('SIGINT');
      expect(await exited, stderr.slice(-2000)).toBe(0);
    }
  }, 180_000);

  it('is off by default, and /components still answers for top', async () => {
    const h = new AgentHarness();
    await h.start();
    try {
      const res = await fetch(`${h.baseUrl}/status`);
      expect(res.status).toBe(404);
      expect(await res.text()).toContain('server.status_page: true');
      expect((await fetch(`${h.baseUrl}/status/spans`)).status).toBe(404);
      const snap = (await (await fetch(`${h.baseUrl}/components`)).json()) as { components: { kind: string; name: string }[] };
      expect(snap.components.map((c) => `${c.kind}:${c.name}`)).toEqual(['source:containers', 'output:out']);
    } finally {
      await h.stop();
    }
  });
});
