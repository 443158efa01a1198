import fc from 'fast-check';
import { afterAll } from 'vitest';

/**
 * The run counts of a property-based suite: FUZZ_RUNS scales every property's run count (default 1),
 * FUZZ_SEED replays a failure, and after the file one line says how many inputs ran in how long (the
 * figure the closing notes and CI logs quote).
 */
export class FuzzRuns {
  private readonly scale = Number(process.env.FUZZ_RUNS ?? 1);
  private readonly seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
  private total = 0;
  private readonly started = performance.now();

  /** `summary`: e.g. `fuzz: {n} generated inputs`, `{n}` replaced by the count. */
  constructor(summary: string) {
    afterAll(() => {
      console.log(`${summary.replace('{n}', String(this.total))} in ${((performance.now() - this.started) / 1000).toFixed(1)} s (FUZZ_RUNS=${this.scale})`);
    });
  }

  /** fast-check parameters for a property of `runs` runs at scale 1, counted in the summary. */
  params(runs: number): { numRuns: number; seed?: number } {
    const numRuns = Math.max(1, Math.round(runs * this.scale));
    this.total += numRuns;
    return { numRuns, ...(this.seed === undefined ? {} : { seed: this.seed }) };
  }

  /** Asserts a synchronous property over `runs` (scaled) generated values. */
  check<T>(runs: number, arb: fc.Arbitrary<T>, predicate: (v: T) => void): void {
    fc.assert(fc.property(arb, predicate), this.params(runs));
  }
}
