import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { z } from 'zod';
import type { LogRecord } from '../record.ts';
import { CelFailure, celExpression, celToText, type CelProgram } from './cel.ts';
import { transformCommon } from './common_config.ts';
import { transformError, type Outlet, type Transform, type TransformContext } from './transform.ts';

/** Prefixes of the agent's own metrics and prom-client's defaults: a user metric may not take them. */
const RESERVED_PREFIXES = ['telemetry_agent_', 'process_', 'nodejs_', 'k8s_'];
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** The label value of every label of the one series that takes what is beyond `max_series`. */
export const OVERFLOW_VALUE = 'other';

const metricConfig = z
  .strictObject({
    name: z.string().regex(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/, 'expected a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)'),
    type: z.enum(['counter', 'gauge', 'histogram']),
    help: z.string().min(1).optional(),
    /** CEL bool: which records count. */
    when: celExpression('bool').optional(),
    /** CEL number: counter increment (default 1), gauge value, histogram observation. */
    value: celExpression('number').optional(),
    /** Label name -> CEL value. */
    labels: z.record(z.string().regex(LABEL_NAME, 'expected a Prometheus label name'), celExpression('any')).default({}),
    buckets: z.array(z.number()).min(1).optional(),
    /** Distinct label sets kept; beyond, records count in the series whose labels are all `other`. */
    max_series: z.number().int().min(1).default(1000),
  })
  .superRefine((m, ctx) => {
    const problem = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    const reserved = RESERVED_PREFIXES.find((p) => m.name.startsWith(p));
    if (reserved) problem('name', `${reserved}* names belong to the agent's own metrics`);
    if (m.type === 'counter' && !m.name.endsWith('_total')) problem('name', 'a counter\'s name ends in _total (Prometheus naming; promtool check metrics requires it)');
    if (m.type !== 'counter' && m.name.endsWith('_total')) problem('name', `_total is for counters; a ${m.type} takes another name`);
    if (m.type === 'histogram' && /_(bucket|count|sum)$/.test(m.name)) problem('name', 'a histogram\'s name may not end in _bucket, _count or _sum (its series do)');
    if (m.type !== 'counter' && m.value === undefined) problem('value', `a ${m.type} needs a value`);
    if (m.type !== 'histogram' && m.buckets) problem('buckets', 'only histograms take buckets');
    if (m.buckets?.some((b, i) => i > 0 && b <= m.buckets![i - 1]!)) problem('buckets', 'bucket bounds must increase');
    for (const label of Object.keys(m.labels)) {
      if (label.startsWith('__')) problem('labels', `label names starting with __ are Prometheus's own (${label})`);
      if (m.type === 'histogram' && label === 'le') problem('labels', 'le is the bucket label of a histogram');
    }
  });

export const logToMetricConfig = z.strictObject({
  type: z.literal('log_to_metric'),
  ...transformCommon,
  metrics: z.array(metricConfig).min(1),
  /** Drop the records after counting them (only the metrics remain). */
  drop_after: z.boolean().default(false),
});
export type LogToMetricConfig = z.infer<typeof logToMetricConfig>;
type MetricConfig = LogToMetricConfig['metrics'][number];

/** Problems across transforms: one metric name, one transform (and one definition). */
export function checkMetricNames(transforms: Readonly<Record<string, { type: string }>>): { path: (string | number)[]; message: string }[] {
  const seen = new Map<string, string>();
  const problems: { path: (string | number)[]; message: string }[] = [];
  for (const [name, t] of Object.entries(transforms)) {
    if (t.type !== 'log_to_metric') continue;
    (t as LogToMetricConfig).metrics.forEach((m, i) => {
      const other = seen.get(m.name);
      if (other !== undefined) problems.push({ path: ['transforms', name, 'metrics', i, 'name'], message: `${m.name} is also defined by ${other}` });
      else seen.set(m.name, `transforms.${name}.metrics[${i}]`);
    });
  }
  return problems;
}

type Child = { inc(v: number): void; set(v: number): void; observe(v: number): void };
type PromMetric = Counter<string> | Gauge<string> | Histogram<string>;

/** A metric on the agent's registry, shared by the transform instances that define it alike (a reload keeps its values). */
interface Entry {
  readonly definition: string;
  readonly metric: PromMetric;
  readonly children: Map<string, Child>;
  readonly owners: Set<object>;
}
const entries = new WeakMap<Registry, Map<string, Entry>>();

function claim(registry: Registry, m: MetricConfig, help: string, owner: object): Entry {
  let byName = entries.get(registry);
  if (!byName) entries.set(registry, (byName = new Map()));
  const definition = JSON.stringify([m.type, help, Object.keys(m.labels), m.buckets ?? null]);
  const known = byName.get(m.name);
  if (known && known.definition === definition) {
    known.owners.add(owner);
    return known;
  }
  if (known) registry.removeSingleMetric(m.name);
  const labelNames = Object.keys(m.labels);
  const options = { name: m.name, help, labelNames, registers: [registry] };
  const metric: PromMetric =
    m.type === 'counter' ? new Counter(options) : m.type === 'gauge' ? new Gauge(options) : new Histogram(m.buckets ? { ...options, buckets: m.buckets } : options);
  const entry: Entry = { definition, metric, children: new Map(), owners: new Set([owner]) };
  byName.set(m.name, entry);
  return entry;
}

function release(registry: Registry, owner: object): void {
  const byName = entries.get(registry);
  for (const [name, entry] of byName ?? []) {
    if (!entry.owners.delete(owner) || entry.owners.size > 0) continue;
    registry.removeSingleMetric(name);
    byName!.delete(name);
  }
}

interface Bound {
  readonly config: MetricConfig;
  readonly entry: Entry;
  readonly labels: readonly [string, CelProgram][];
  readonly overflow: { inc(): void };
  readonly overflowKey: string;
  readonly prefix: string;
}

/**
 * `log_to_metric`: counters, gauges and histograms on the agent's /metrics from records. Each
 * metric holds at most `max_series` label sets: records that would make another one count in the
 * series whose labels are all `other` (counted in telemetry_agent_log_metric_overflow_total), so a
 * label on a request path cannot blow up Prometheus. Records pass on unchanged (`drop_after`: not).
 */
export class LogToMetric implements Transform {
  private readonly ctx: TransformContext;
  private readonly metrics: Bound[];
  private readonly dropAfter: boolean;
  private readonly dropOnError: boolean;

  constructor(config: LogToMetricConfig, ctx: TransformContext) {
    this.ctx = ctx;
    this.dropAfter = config.drop_after;
    this.dropOnError = config.on_error === 'drop';
    this.metrics = config.metrics.map((m, i) => ({
      config: m,
      entry: claim(ctx.metrics.registry, m, m.help ?? `${m.type} from log records (transform ${ctx.name})`, this),
      labels: Object.entries(m.labels),
      overflow: ctx.metrics.logMetricOverflow.labels({ transform: ctx.name, metric: m.name }),
      overflowKey: Object.keys(m.labels)
        .map(() => OVERFLOW_VALUE + '\u0000')
        .join(''),
      prefix: `metrics[${i}]`,
    }));
  }

  process(records: LogRecord[], _batch: unknown, out: Outlet): void {
    let kept: LogRecord[] | undefined;
    let failed = 0;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      let ok = true;
      for (const m of this.metrics) ok = this.observe(m, r) && ok;
      if (!ok && this.dropOnError) {
        kept ??= records.slice(0, i);
        failed++;
      } else kept?.push(r);
    }
    if (failed > 0) this.ctx.metrics.droppedRecords.inc({ component: this.ctx.name, reason: 'error' }, failed);
    const passed = kept ?? records;
    if (this.dropAfter) {
      if (passed.length > 0) this.ctx.metrics.droppedRecords.inc({ component: this.ctx.name, reason: 'metric_only' }, passed.length);
      return;
    }
    out(passed);
  }

  /** False when an expression failed on the record (counted). */
  private observe(m: Bound, r: LogRecord): boolean {
    const { config } = m;
    if (config.when) {
      const w = config.when.evaluate(r);
      if (w instanceof CelFailure) return this.failed(`${m.prefix}.when`, w.message);
      if (w !== true) return true;
    }
    let value = 1;
    if (config.value) {
      const v = config.value.evaluate(r);
      if (v instanceof CelFailure) return this.failed(`${m.prefix}.value`, v.message);
      value = typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : Number((v as { value: bigint }).value);
      if (config.type === 'counter' && !(value >= 0)) return this.failed(`${m.prefix}.value`, `a counter cannot go down (value ${value})`);
    }
    let key = '';
    const values: string[] = [];
    for (const [name, program] of m.labels) {
      const v = program.evaluate(r);
      if (v instanceof CelFailure) return this.failed(`${m.prefix}.labels.${name}`, v.message);
      const text = celToText(v);
      values.push(text);
      key += text + '\u0000';
    }
    const child = this.child(m, key, values);
    if (config.type === 'counter') child.inc(value);
    else if (config.type === 'gauge') child.set(value);
    else child.observe(value);
    return true;
  }

  private child(m: Bound, key: string, values: string[]): Child {
    const { entry } = m;
    const known = entry.children.get(key);
    if (known) return known;
    if (entry.children.size >= m.config.max_series && key !== m.overflowKey) {
      m.overflow.inc();
      return this.child(m, m.overflowKey, m.labels.map(() => OVERFLOW_VALUE));
    }
    const labels: Record<string, string> = {};
    m.labels.forEach(([name], i) => (labels[name] = values[i]!));
    const child = (entry.metric as Counter<string>).labels(labels) as unknown as Child;
    entry.children.set(key, child);
    return child;
  }

  private failed(expression: string, message: string): false {
    transformError(this.ctx, expression, message);
    return false;
  }

  close(): void {
    release(this.ctx.metrics.registry, this);
  }
}
