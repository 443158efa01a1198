/**
 * Benchmark inputs, generated once and reused: `.bench-data/<key>/` holds the tree and a
 * `corpus.json` written last, so an interrupted generation is redone rather than reused.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { generateCriCorpus, type CriCorpus } from '../agent/demo/node_simulator.ts';

/** Bump when generateCriCorpus's output changes, so old cached corpora are not reused. */
const GENERATOR_VERSION = 1;

export interface CriCorpusParams {
  mib: number;
  files: number;
  seed: number;
  longLineEvery: number;
}

export interface CachedCorpus extends CriCorpus {
  dir: string;
  reused: boolean;
  generateSeconds: number;
}

export function ensureCriCorpus(dataDir: string, p: CriCorpusParams): CachedCorpus {
  const key = `cri-v${GENERATOR_VERSION}-${p.mib}mib-${p.files}f-seed${p.seed}-long${p.longLineEvery}`;
  const dir = join(dataDir, key);
  const manifestPath = join(dir, 'corpus.json');
  if (fs.existsSync(manifestPath)) {
    const corpus = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as CriCorpus;
    const intact =
      corpus.paths.length === p.files &&
      corpus.paths.reduce((sum, path) => sum + (fs.existsSync(path) ? fs.statSync(path).size : NaN), 0) === corpus.bytes &&
      fs.readdirSync(corpus.containersDir).every((l) => fs.existsSync(join(corpus.containersDir, l)));
    if (intact) return { ...corpus, dir, reused: true, generateSeconds: 0 };
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const start = performance.now();
  const corpus = generateCriCorpus({ dir, files: p.files, totalBytes: p.mib * 1024 * 1024, seed: p.seed, longLineEvery: p.longLineEvery });
  fs.writeFileSync(manifestPath, JSON.stringify(corpus));
  return { ...corpus, dir, reused: false, generateSeconds: (performance.now() - start) / 1000 };
}
