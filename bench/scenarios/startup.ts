/**
 * Start-up on a large node (issue 11 item 7): how long until /healthz answers (liveness) and until
 * /readyz does (the first scan done, every source reading), on two trees in kubelet's layout:
 *   one-folder  15,000 files in one container folder (`<ns>_<pod>_<uid>/app/<n>.log`), globbed directly
 *   pods        5,000 pods, one container each, through /var/log/containers symlinks
 * each started twice: a first start (no checkpoint), then a restart over the first run's checkpoint
 * (where a folder listing per tracked file once took 306 s for the first tree).
 *
 * Env: BENCH_ONE_FOLDER_FILES (15000), BENCH_PODS (5000), BENCH_STARTUP_TIMEOUT_S (300),
 * BENCH_BASELINE_REPO (a checkout of another commit: its agent is measured too, same trees),
 * BENCH_KEEP=1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { agentNodeFlags } from '../../agent/runtime_flags.ts';
import { freePort, intEnv, procStats, type Scenario, type ScenarioContext, type ScenarioOutcome, type Target } from '../measure.ts';

interface Tree {
  name: string;
  root: string;
  include: string;
  files: number;
}

const LINE = '2026-11-21T10:00:00.000000001Z stdout F level=info msg="started" component=bench\n';

function oneFolderTree(root: string, n: number): Tree {
  const dir = join(root, 'var/log/pods/shop_big_0f1e2d3c-4b5a-4697-8877-000000000001/app');
  fs.mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) fs.writeFileSync(join(dir, `${i}.log`), LINE);
  return { name: `one-folder (${n} files)`, root, include: join(root, 'var/log/pods/*/*/*.log'), files: n };
}

function podsTree(root: string, n: number): Tree {
  const pods = join(root, 'var/log/pods');
  const links = join(root, 'var/log/containers');
  fs.mkdirSync(links, { recursive: true });
  for (let i = 0; i < n; i++) {
    const uid = `0f1e2d3c-4b5a-4697-8877-${i.toString(16).padStart(12, '0')}`;
    const dir = join(pods, `ns${i % 50}_pod-${i}_${uid}`, 'app');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(join(dir, '0.log'), LINE);
    const id = createHash('sha256').update(String(i)).digest('hex');
    fs.symlinkSync(join(dir, '0.log'), join(links, `pod-${i}_ns${i % 50}_app-${id}.log`));
  }
  return { name: `pods (${n} pods)`, root, include: join(links, '*.log'), files: n };
}

interface StartTimes {
  healthz: number | undefined;
  readyz: number | undefined;
  cpu: number;
  rssMiB: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** Starts the agent of `repoRoot` over `tree` and times /healthz and /readyz from spawn; stops it with SIGTERM. */
async function timeStart(repoRoot: string, tree: Tree, work: string, timeoutMs: number): Promise<StartTimes> {
  const port = await freePort();
  const config = {
    node_name: 'bench-node',
    data_dir: join(work, 'data'),
    log_level: 'info',
    server: { listen: `127.0.0.1:${port}` },
    kubernetes: { mode: 'disabled' },
    sources: { containers: { type: 'container_logs', include: [tree.include] } },
    outputs: { sink: { type: 'file', inputs: ['containers'], path: join(work, 'out.ndjson') } },
  };
  fs.mkdirSync(work, { recursive: true });
  const configPath = join(work, 'agent.yaml');
  fs.writeFileSync(configPath, stringify(config));
  const log = fs.openSync(join(work, 'agent.log'), 'a');
  const began = performance.now();
  const child: ChildProcess = spawn(process.execPath, [...agentNodeFlags(join(repoRoot, 'agent/cli.ts')), join(repoRoot, 'agent/cli.ts'), 'run', '--config', configPath], {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', log],
  });
  const times: StartTimes = { healthz: undefined, readyz: undefined, cpu: 0, rssMiB: 0 };
  try {
    while (performance.now() - began < timeoutMs && child.exitCode === null) {
      if (times.healthz === undefined && (await answers(`http://127.0.0.1:${port}/healthz`))) times.healthz = (performance.now() - began) / 1000;
      if (times.healthz !== undefined && (await answers(`http://127.0.0.1:${port}/readyz`))) {
        times.readyz = (performance.now() - began) / 1000;
        break;
      }
      await sleep(20);
    }
    // Let it read what the files hold and checkpoint it, so the restart resumes.
    if (times.readyz !== undefined) await sleep(Math.min(20_000, 1000 + tree.files / 2));
    const st = procStats(child.pid!);
    times.cpu = st.cpuSeconds;
    times.rssMiB = st.peakRssBytes / 1048576;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    fs.closeSync(log);
  }
  return times;
}

const fmt = (s: number | undefined, limit: number) => (s === undefined ? `> ${limit} s` : `${s.toFixed(2)} s`);

export const startup: Scenario = {
  name: 'startup',
  description: 'time to /healthz and /readyz on a large node (15,000 files in one folder; 5,000 pods), first start and restart',

  async run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
    const env = ctx.env;
    const oneFolder = intEnv(env, 'BENCH_ONE_FOLDER_FILES', 15_000);
    const pods = intEnv(env, 'BENCH_PODS', 5000);
    const timeoutS = intEnv(env, 'BENCH_STARTUP_TIMEOUT_S', 300);
    const scratch = fs.mkdtempSync(join(tmpdir(), 'kta-bench-startup-'));
    const agents: [string, string][] = [['agent', ctx.repoRoot]];
    if (env.BENCH_BASELINE_REPO) agents.unshift(['agent-before', env.BENCH_BASELINE_REPO]);
    const rows: string[] = [];
    const errors: string[] = [];
    const targets: Target[] = [];
    try {
      const trees = [oneFolderTree(join(scratch, 'one'), oneFolder), podsTree(join(scratch, 'pods'), pods)];
      for (const tree of trees) {
        for (const [name, repo] of agents) {
          const work = join(scratch, `${name}-${tree.root.split('/').pop()}`);
          for (const phase of ['first start', 'restart'] as const) {
            ctx.log(`running ${name} on ${tree.name}, ${phase}...`);
            const t = await timeStart(repo, tree, work, timeoutS * 1000);
            rows.push(
              `${tree.name.padEnd(26)} ${name.padEnd(13)} ${phase.padEnd(12)} healthz ${fmt(t.healthz, timeoutS).padStart(9)}  readyz ${fmt(t.readyz, timeoutS).padStart(9)}  CPU ${t.cpu.toFixed(1)} s  peak RSS ${t.rssMiB.toFixed(0)} MiB`,
            );
            ctx.log(`  ${rows.at(-1)}`);
            if (name === 'agent') {
              if (t.readyz === undefined) errors.push(`${tree.name} ${phase}: /readyz did not answer within ${timeoutS} s`);
              // A liveness probe's usual budget (initialDelaySeconds + failureThreshold x periodSeconds).
              targets.push({ description: `${tree.name}, ${phase}: /readyz within 30 s`, pass: t.readyz !== undefined && t.readyz < 30, detail: fmt(t.readyz, timeoutS) });
            }
          }
        }
      }
    } finally {
      if (env.BENCH_KEEP !== '1') fs.rmSync(scratch, { recursive: true, force: true });
    }
    return {
      measurements: [],
      table: '',
      notes: [
        'tree                       agent         phase        time from spawn to 200',
        ...rows,
        'healthz: the server answers (liveness); readyz: the first scan is done and every source reads.',
        'CPU and peak RSS: the agent process up to when it was stopped (after reading the files once).',
        env.BENCH_KEEP === '1' ? `kept ${scratch}` : '',
      ].filter(Boolean),
      targets,
      errors,
    };
  },
};
