/**
 * The per-read cost of the copytruncate check (issue 14): every read takes the 128 bytes before its
 * offset in the same read(2), compares them and keeps the last 128 bytes it read. Measured in this
 * process on a generated CRI file in the page cache (bench/micro/tail_check.ts): a plain read of
 * read_chunk bytes against the checked read, and both against a whole TailedFile.read with decoding.
 *
 * Env: BENCH_TAIL_MIB (64), BENCH_TAIL_CHUNK (65536), BENCH_REPEAT (5 passes, the best is shown).
 */
import { describeTailCheck, measureTailCheck } from '../micro/tail_check.ts';
import { intEnv, type Scenario, type ScenarioContext, type ScenarioOutcome } from '../measure.ts';

export const tailCheck: Scenario = {
  name: 'tail-check',
  description: 'per-read cost of telling a rewritten file from a grown one (128 bytes before the offset, same read)',

  async run(ctx: ScenarioContext): Promise<ScenarioOutcome> {
    const rounds = Math.max(1, intEnv(ctx.env, 'BENCH_REPEAT', 5));
    const c = measureTailCheck(intEnv(ctx.env, 'BENCH_TAIL_MIB', 64), intEnv(ctx.env, 'BENCH_TAIL_CHUNK', 65536), rounds);
    const share = Math.max(c.checkedNs - c.plainNs, c.computeNs) / c.readDecodeNs;
    return {
      measurements: [],
      table: '',
      notes: describeTailCheck(c, rounds),
      targets: [{ description: 'the check costs under 1% of a read with decoding', pass: share < 0.01, detail: `${(share * 100).toFixed(3)} %` }],
      errors: [],
    };
  },
};
