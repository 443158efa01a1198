/**
 * Each transform's own CPU per record, in process and on the same records: the corpus's lines
 * decoded once the way the agent does (CRI framing, JSON body, severity from `level`, one frozen
 * resource and attributes object per file), then handed to each transform in batches of 300, the
 * best of three passes. Separates what a transform costs from the noise of a whole agent run on a
 * shared machine; the agent runs of the `transforms` scenario show the same work end to end.
 */
import { readFileSync } from 'node:fs';
import { parseCriLine } from '../../parsers/cri.ts';
import { parseJsonBody } from '../../parsers/json_body.ts';
import { severityFromFields } from '../../parsers/severity.ts';
import { resourceFromPaths } from '../../agent/sources/container_logs/path_metadata.ts';
import { createLogger, RateLimitedLog } from '../../agent/log.ts';
import { SelfMetrics } from '../../agent/metrics.ts';
import type { LogRecord } from '../../agent/record.ts';
import { parseConfig } from '../../agent/config/load.ts';
import { createTransform } from '../../agent/transforms/registry.ts';
import type { BatchContext } from '../../agent/transforms/transform.ts';

export function decodeCorpus(paths: readonly string[], maxRecords: number): LogRecord[] {
  const records: LogRecord[] = [];
  const perFile = Math.ceil(maxRecords / paths.length);
  for (const path of paths) {
    const resource = Object.freeze(resourceFromPaths(path, path, 'bench-node'));
    const attributes = Object.freeze({ 'log.iostream': 'stdout', 'log.file.path': path });
    const lines = readFileSync(path, 'latin1').split('\n', perFile);
    for (const line of lines) {
      const r = parseCriLine(line);
      if (!('content' in r)) continue;
      const body = parseJsonBody(r.content)?.body ?? r.content;
      const severity = typeof body === 'object' ? severityFromFields(body) : undefined;
      records.push({ timestamp: r.time, observedTimestamp: r.time, body, attributes, resource, severityText: severity?.text, severityNumber: severity?.number });
    }
  }
  return records;
}

/** µs of CPU per record for each transform config (by name), over `records`. */
export function transformCosts(records: LogRecord[], transforms: Record<string, Record<string, unknown> | undefined>): Map<string, number> {
  const costs = new Map<string, number>();
  const batches: LogRecord[][] = [];
  for (let i = 0; i < records.length; i += 300) batches.push(records.slice(i, i + 300));
  for (const [name, t] of Object.entries(transforms)) {
    if (!t) continue;
    const yaml = JSON.stringify({ sources: { c: { type: 'container_logs' } }, transforms: { t: { ...t, inputs: ['c'] } }, outputs: { o: { type: 'stdout', inputs: t.type === 'route' ? ['t.shop', 't.errors', 't._unmatched'] : ['t'] } } });
    const config = parseConfig(yaml, 'bench.yaml', {}).transforms.t!;
    let best = Infinity;
    for (let pass = 0; pass < 3; pass++) {
      const metrics = new SelfMetrics('bench');
      const log = createLogger('error');
      const transform = createTransform(config, { name: 't', metrics, log, warnings: new RateLimitedLog(log), emit: () => {} });
      let passed = 0;
      const started = process.cpuUsage();
      for (const batch of batches) {
        const ctx: BatchContext = { bytes: 300 * 200, hold: () => () => {}, pause: () => {} };
        transform.process(batch, ctx, (out) => (passed += out.length));
      }
      const used = process.cpuUsage(started);
      transform.flush?.();
      transform.close?.();
      if (passed === 0 && t.type !== 'log_to_metric') throw new Error(`${name} passed nothing on`);
      best = Math.min(best, (used.user + used.system) / records.length);
    }
    costs.set(name, best);
  }
  return costs;
}
