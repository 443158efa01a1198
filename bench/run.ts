/**
 * `npm run bench` — runs benchmark scenarios one after another and prints their tables.
 *
 *   node bench/run.ts [scenario ...]      (default: all; `--list` lists them)
 *
 * Exit 0 when every run completed with correct output, even if a target is missed (a benchmark
 * measures); exit 1 when a run failed or produced a wrong output; 2 for bad arguments.
 * Generated inputs are cached in `.bench-data/` (git-ignored). Knobs are environment variables,
 * documented in each scenario file (e.g. BENCH_MIB=64 for a quick run).
 */
import * as fs from 'node:fs';
import { join, resolve } from 'node:path';
import { formatTargets, type Scenario, type ScenarioContext } from './measure.ts';
import { criThroughput } from './scenarios/cri_throughput.ts';
import { enrichParse } from './scenarios/enrich_parse.ts';
import { eventCounting } from './scenarios/event_counting.ts';
import { kubeApiLoad } from './scenarios/kube_api_load.ts';
import { metadataBudget } from './scenarios/metadata_budget.ts';
import { multilineCost } from './scenarios/multiline.ts';
import { outputDown } from './scenarios/output_down.ts';
import { outputsBench } from './scenarios/outputs.ts';
import { podStartupTracking } from './scenarios/pod_startup_tracking.ts';
import { slowloris } from './scenarios/slowloris.ts';
import { startup } from './scenarios/startup.ts';
import { tailCheck } from './scenarios/tail_check.ts';
import { transformsBench } from './scenarios/transforms.ts';

/** Add new benchmarks here. */
const SCENARIOS: Scenario[] = [criThroughput, multilineCost, enrichParse, kubeApiLoad, eventCounting, podStartupTracking, outputsBench, outputDown, transformsBench, startup, tailCheck, slowloris, metadataBudget];

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes('--list') || args.includes('-h') || args.includes('--help')) {
    console.log('usage: node bench/run.ts [scenario ...]\n\nscenarios:');
    for (const s of SCENARIOS) console.log(`  ${s.name.padEnd(18)} ${s.description}`);
    return 0;
  }
  const unknown = args.filter((a) => !SCENARIOS.some((s) => s.name === a));
  if (unknown.length > 0) {
    console.error(`unknown scenario ${unknown.join(', ')} (have: ${SCENARIOS.map((s) => s.name).join(', ')})`);
    return 2;
  }
  const selected = args.length > 0 ? SCENARIOS.filter((s) => args.includes(s.name)) : SCENARIOS;

  const repoRoot = resolve(import.meta.dirname, '..');
  const dataDir = join(repoRoot, '.bench-data');
  fs.mkdirSync(dataDir, { recursive: true });
  const ctx: ScenarioContext = { repoRoot, dataDir, env: process.env, log: (m) => console.log(m) };
  console.log(`node ${process.version}, ${process.platform}/${process.arch}`);

  let failed = false;
  for (const scenario of selected) {
    console.log(`\n=== ${scenario.name}: ${scenario.description}`);
    try {
      const outcome = await scenario.run(ctx);
      console.log('');
      if (outcome.measurements.length > 0) console.log(outcome.table);
      for (const n of outcome.notes) console.log(`  ${n}`);
      console.log('\ntargets:');
      console.log(formatTargets(outcome.targets));
      if (outcome.errors.length > 0) {
        failed = true;
        console.log('\nerrors:');
        for (const e of outcome.errors) console.log(`  ${e.replaceAll('\n', '\n  ')}`);
      }
    } catch (err) {
      failed = true;
      console.log(`${scenario.name} failed: ${(err as Error).stack ?? String(err)}`);
    }
  }
  return failed ? 1 : 0;
}

process.exitCode = await main();
