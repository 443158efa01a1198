import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentHarness, criLines, NodeTree, SOURCE, type ConfigValue } from '../helpers/agent_harness.ts';

/**
 * Issue 11 item 2: files are read only where kubelet puts them. One test per row of the issue's
 * table that is about files, plus issue 13's "file errors count files, not rescans".
 */
const hex = (s: string) => createHash('sha256').update(s).digest('hex');
const SECRET = 'root:$6$c2VjcmV0$shadowhash:19000:0:99999:7:::';

describe('issue 11: files are read only where kubelet puts them', () => {
  const harnesses: AgentHarness[] = [];
  const trees: NodeTree[] = [];
  afterEach(async () => {
    for (const h of harnesses.splice(0)) await h.stop();
    for (const t of trees.splice(0)) t.remove();
  });
  const harness = (source: Record<string, ConfigValue> = {}) => {
    const h = new AgentHarness({ source });
    harnesses.push(h);
    return h;
  };
  const errors = (h: AgentHarness, reason: string) => h.metric('telemetry_agent_file_errors_total', { source: SOURCE, reason });
  const leaked = (h: AgentHarness) => h.records().filter((r) => JSON.stringify(r).includes('shadowhash') || JSON.stringify(r).includes('eyJhbGci'));

  it('a symlink under the log folder pointing outside kubelet\'s layout (-> /etc/shadow, -> a token file), or a pods/.../0.log that is itself a symlink: nothing read, each refused once, logged and counted', async () => {
    const h = harness();
    const t = h.tree;
    const shadow = join(t.root, 'etc', 'shadow');
    const token = join(t.root, 'var', 'run', 'secrets', 'kubernetes.io', 'serviceaccount', 'token');
    for (const [path, text] of [[shadow, `${SECRET}\n`.repeat(27)], [token, 'eyJhbGciOiJSUzI1NiJ9.payload.signature\n']] as const) {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
    }
    const good = t.container({ content: criLines(['good-1', 'good-2']) });
    // A link in /var/log/containers straight at the secrets, named like kubelet's.
    symlinkSync(shadow, join(t.containersDir, `shadow_kube-system_app-${hex('a')}.log`));
    symlinkSync(token, join(t.containersDir, `token_kube-system_app-${hex('b')}.log`));
    // kubelet's link, but the pods file itself is a link to the secret.
    const podLink = t.container({ pod: 'linked', createFile: false });
    symlinkSync(shadow, podLink.logPath);
    // A link to a token through a folder named like a pod: the target is still not a container log.
    const fakePod = join(t.root, 'tmp', 'evil_evil_0f1e2d3c-4b5a-4697-8877-000000000099', 'app');
    mkdirSync(fakePod, { recursive: true });
    symlinkSync(token, join(fakePod, '0.log'));
    symlinkSync(join(fakePod, '0.log'), join(t.containersDir, `evil_evil_app-${hex('c')}.log`));

    await h.start();
    await h.waitForBody('good-2');
    await h.waitForMetric('telemetry_agent_file_errors_total', { source: SOURCE, reason: 'outside_layout' }, 4);
    // Many rescans later (glob_interval 100ms): still one count and one log line per path.
    await new Promise((r) => setTimeout(r, 1000));
    appendFileSync(good.logPath, criLines(['good-3']));
    await h.waitForBody('good-3');
    expect(await errors(h, 'outside_layout')).toBe(4);
    expect(leaked(h)).toEqual([]);
    expect(h.records().map((r) => r.body)).toEqual(['good-1', 'good-2', 'good-3']);
    const refusals = h.logs.filter((l) => l.includes("which is not in kubelet's layout"));
    expect(refusals).toHaveLength(4);
    expect(refusals.join('')).toContain(`resolves to ${shadow}`);
    expect(refusals.join('')).toContain(`resolves to ${token}`);
  });

  it('a link whose name claims another pod than its target (a pod\'s log shipped under a victim\'s namespace and pod name): refused as name_mismatch, the real one read under its own name', async () => {
    const h = harness();
    const t = h.tree;
    const real = t.container({ namespace: 'team-a', pod: 'web', content: criLines(['from-web']) });
    symlinkSync(real.logPath, join(t.containersDir, `payments_prod_app-${hex('d')}.log`));
    // Right pod, wrong container.
    symlinkSync(real.logPath, join(t.containersDir, `web_team-a_sidecar-${hex('e')}.log`));
    await h.start();
    await h.waitForBody('from-web');
    await h.waitForMetric('telemetry_agent_file_errors_total', { source: SOURCE, reason: 'name_mismatch' }, 2);
    await new Promise((r) => setTimeout(r, 500));
    expect(await errors(h, 'name_mismatch')).toBe(2);
    const records = h.records();
    expect(records).toHaveLength(1);
    expect(records[0]!.resource['k8s.namespace.name']).toBe('team-a');
    expect(records[0]!.resource['k8s.pod.name']).toBe('web');
    expect(h.logs.join('')).toMatch(/its name claims another container than .* \(namespace "prod" vs "team-a"\)/);
    expect(h.logs.join('')).toMatch(/\(container "sidecar" vs "app"\)/);
  });

  it('docker\'s layout behind the link is read when the ids agree, refused when they do not', async () => {
    const h = harness();
    const t = h.tree;
    const id = hex('docker-1');
    const dockerDir = join(t.root, 'var', 'lib', 'docker', 'containers', id);
    mkdirSync(dockerDir, { recursive: true });
    const file = join(dockerDir, `${id}-json.log`);
    writeFileSync(file, '{"log":"from docker\\n","stream":"stdout","time":"2026-11-21T10:00:00.000000001Z"}\n');
    symlinkSync(file, join(t.containersDir, `web_default_app-${id}.log`));
    symlinkSync(file, join(t.containersDir, `other_default_app-${hex('docker-2')}.log`));
    await h.start();
    await h.waitForBody('from docker');
    await h.waitForMetric('telemetry_agent_file_errors_total', { source: SOURCE, reason: 'name_mismatch' }, 1);
    expect(h.records()).toHaveLength(1);
    expect(h.records()[0]!.resource['container.id']).toBe(id);
  });

  it('allowed_roots narrows it further: kubelet\'s layout elsewhere is refused as outside_allowed_roots; test trees need no config', async () => {
    const t = new NodeTree();
    trees.push(t);
    const h = new AgentHarness({ source: { allowed_roots: [t.podsDir] }, tree: t });
    harnesses.push(h);
    t.container({ content: criLines(['inside']) });
    const elsewhere = join(t.root, 'home', 'user', 'default_fake_0f1e2d3c-4b5a-4697-8877-0000000000aa', 'app', '0.log');
    mkdirSync(dirname(elsewhere), { recursive: true });
    writeFileSync(elsewhere, criLines(['outside']));
    symlinkSync(elsewhere, join(t.containersDir, `fake_default_app-${hex('f')}.log`));
    await h.start();
    await h.waitForBody('inside');
    await h.waitForMetric('telemetry_agent_file_errors_total', { source: SOURCE, reason: 'outside_allowed_roots' }, 1);
    expect(h.records().map((r) => r.body)).toEqual(['inside']);
  });

  it('a rotated copy that is a symlink is not read; a checkpoint entry naming a path outside the layout is dropped', async () => {
    const h = harness();
    const t = h.tree;
    const shadow = join(t.root, 'etc', 'shadow');
    mkdirSync(dirname(shadow), { recursive: true });
    writeFileSync(shadow, `${SECRET}\n`);
    const c = t.container({ content: criLines(['live-1']) });
    await h.start();
    await h.waitForBody('live-1');
    // kubelet's rotation, with a planted link among the rotated copies.
    symlinkSync(shadow, `${c.logPath}.20261121-000000`);
    renameSync(c.logPath, `${c.logPath}.20261121-100000`);
    writeFileSync(c.logPath, criLines(['after-rotation']));
    await h.waitForBody('after-rotation');
    expect(leaked(h)).toEqual([]);
    await h.stop();

    const { CheckpointStore } = await import('../../agent/sources/container_logs/checkpoint_store.ts');
    const h2 = harness();
    const shadow2 = join(h2.tree.root, 'etc', 'shadow');
    mkdirSync(dirname(shadow2), { recursive: true });
    writeFileSync(shadow2, `${SECRET}\n`);
    const st = (await import('node:fs')).statSync(shadow2);
    new CheckpointStore(h2.tree.dataDir, SOURCE).save([{ dev: st.dev, ino: st.ino, fingerprint: { length: 0, crc: 0 }, offset: 0, path: shadow2 }], false);
    h2.tree.container({ content: criLines(['fresh']) });
    await h2.start();
    await h2.waitForBody('fresh');
    await new Promise((r) => setTimeout(r, 300));
    expect(leaked(h2)).toEqual([]);
    expect(await h2.metric('telemetry_agent_checkpoint_invalid_total', { source: SOURCE, reason: 'bad_entry' })).toBe(1);
  });

  it('telemetry_agent_file_errors_total counts files, not rescans: one dangling symlink stays at 1 through many scans, logged once, and its target is read once it appears', async () => {
    const h = harness();
    const t = h.tree;
    t.container({ content: criLines(['ok']) });
    const dangling = t.container({ pod: 'late', createFile: false });
    await h.start();
    await h.waitForBody('ok');
    await h.waitForMetric('telemetry_agent_file_errors_total', { source: SOURCE, reason: 'missing_target' }, 1);
    await new Promise((r) => setTimeout(r, 1500)); // 15 scans
    expect(await errors(h, 'missing_target')).toBe(1);
    expect(h.logs.filter((l) => l.includes('does not exist')).length).toBe(1);
    writeFileSync(dangling.logPath, criLines(['late-1']));
    await h.waitForBody('late-1');
    expect(await errors(h, 'missing_target')).toBe(1);
  });
});

describe('issue 11: start-up is linear and observable', () => {
  it('restart with 15,000 files in one folder: one folder listing per folder per scan (not one per file)', async () => {
    const { FolderListings } = await import('../../agent/sources/container_logs/folder_listing.ts');
    const t = new NodeTree();
    try {
      const dir = join(t.podsDir, 'shop_big_0f1e2d3c-4b5a-4697-8877-000000000001', 'app');
      mkdirSync(dir, { recursive: true });
      for (let i = 0; i < 15_000; i++) writeFileSync(join(dir, `${i}.log`), '');
      writeFileSync(join(dir, '7.log.20261121-100000'), '');
      writeFileSync(join(dir, '7.log.20261121-090000'), '');
      writeFileSync(join(dir, '7.log.20261121-080000.gz'), '');
      symlinkSync('/etc/hostname', join(dir, '8.log.20261121-100000'));
      const listings = new FolderListings();
      let found = 0;
      for (let i = 0; i < 15_000; i++) found += listings.rotatedSiblings(dir, `${i}.log`).length;
      expect(listings.listings).toBe(1);
      expect(found).toBe(2);
      expect(listings.rotatedSiblings(dir, '7.log').map((s) => s.path.slice(dir.length + 1))).toEqual(['7.log.20261121-090000', '7.log.20261121-100000']);
    } finally {
      t.remove();
    }
  });

  it('/healthz answers during the first scan of a large node; /readyz says "first scan: N of M files" until it is done, then 200', async () => {
    const t = new NodeTree();
    const h = new AgentHarness({ tree: t });
    try {
      const dir = join(t.podsDir, 'shop_big_0f1e2d3c-4b5a-4697-8877-000000000001', 'app');
      mkdirSync(dir, { recursive: true });
      for (let i = 0; i < 8000; i++) {
        writeFileSync(join(dir, `${i}.log`), criLines([`file-${i}`]));
        // kubelet's link name for each (one pod and container, restart n): the claims agree.
        symlinkSync(join(dir, `${i}.log`), join(t.containersDir, `big_shop_app-${hex(String(i))}.log`));
      }
      let failed: unknown;
      const starting = h.start().catch((err: unknown) => (failed = err));
      const seen: string[] = [];
      let healthyDuringScan = false;
      while (!h.agent?.address && !failed) await new Promise((r) => setTimeout(r, 1));
      for (;;) {
        if (failed) throw failed;
        const res = await fetch(`${h.baseUrl}/readyz?verbose`);
        const text = await res.text();
        if (res.status === 200) break;
        if (/first scan: \d+ of 8000 files/.test(text)) {
          seen.push(/first scan: \d+ of 8000 files/.exec(text)![0]);
          healthyDuringScan ||= (await fetch(`${h.baseUrl}/healthz`)).status === 200;
        }
      }
      await starting;
      expect(seen.length, 'a /readyz answer while the first scan ran').toBeGreaterThan(0);
      expect(healthyDuringScan).toBe(true);
      await h.waitForLines(8000, 60_000);
    } finally {
      await h.stop();
      t.remove();
    }
  }, 120_000);
});
