/** Reading the Prometheus text format: for `telemetry-agent test`'s metric expectations (and the tests). */

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const m of text.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  }
  return labels;
}

/**
 * The value of metric `name` in Prometheus text: the sum over the samples whose labels include
 * `labels` (the one sample's value when `labels` names all of them); undefined when none matches.
 */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = parseLabels(m[2] ?? '');
    if (!Object.entries(labels).every(([k, v]) => got[k] === v)) continue;
    sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

/** `name{a="b",c="d"}` as a metric name and labels; undefined when it is not a selector. */
export function parseSelector(selector: string): { name: string; labels: Record<string, string> } | undefined {
  const m = /^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$/.exec(selector);
  if (!m) return undefined;
  return { name: m[1]!, labels: parseLabels(m[2] ?? '') };
}
