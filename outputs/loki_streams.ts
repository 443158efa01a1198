import type { AttributeValue, Attributes, LogRecord } from '../agent/record.ts';
import { LEVELS } from '../parsers/severity.ts';
import type { RecordFailure } from './output.ts';

/**
 * Records → Loki streams: which resource attributes become a stream's labels, the label string
 * Loki expects, and the entries of each stream in time order. Everything here is about keeping the
 * label set small and bounded: Loki indexes streams, not lines, and every distinct label set is a
 * stream of its own (https://grafana.com/docs/loki/latest/get-started/labels/bp-labels/).
 */

/** A label's value: one resource attribute, or several of which the first present one wins. */
export type LabelSources = Readonly<Record<string, string | readonly string[]>>;

export const DEFAULT_LABELS: LabelSources = {
  namespace: 'k8s.namespace.name',
  // A CronJob's Job carries both names; the CronJob's is stable, the Job's changes every run.
  workload: ['k8s.deployment.name', 'k8s.statefulset.name', 'k8s.daemonset.name', 'k8s.cronjob.name', 'k8s.job.name'],
  container: 'k8s.container.name',
  node: 'k8s.node.name',
};

/**
 * Loki's default `max_label_names_per_series`: a stream with more label names is refused with
 * 400 ("entry for stream ... has N label names; limit 15").
 */
const MAX_LABEL_NAMES = 15;
/** Loki's default `max_label_value_length`, in characters. */
const MAX_LABEL_VALUE_LENGTH = 2048;

/** Prometheus' (and so Loki's) label name syntax; `__`-prefixed names are reserved for internal use. */
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function labelNameProblem(name: string): string | undefined {
  if (!LABEL_NAME.test(name)) return `${JSON.stringify(name)} is not a Loki label name (letters, digits and _, not starting with a digit)`;
  if (name.startsWith('__')) return `${JSON.stringify(name)}: label names starting with __ are reserved for Loki's internal use`;
  return undefined;
}

/**
 * Attributes whose values are unbounded over time: as a label each makes a new stream per pod,
 * container start or file, which is exactly the cardinality Loki's index cannot take. They stay in
 * the line (or structured metadata), where they are searchable without costing index entries.
 */
function unboundedAttributeReason(attr: string): string | undefined {
  if (attr.endsWith('.uid')) return 'a new value for every object (uids are unique by design)';
  switch (attr) {
    case 'container.id':
      return 'a new value every time a container starts';
    case 'log.file.path':
    case 'log.file.path_resolved':
      return 'a new value per pod and container restart (the path holds the pod uid)';
    case 'k8s.container.restart_count':
      return 'a counter: every restart would start a new stream';
    default:
      return undefined;
  }
}

/** A problem of the `labels` / `static_labels` config, with its key path below the output. */
export interface LabelConfigProblem {
  path: (string | number)[];
  message: string;
}

/** Label names Loki takes, no unbounded attribute, no name twice, at most MAX_LABEL_NAMES. */
export function labelConfigProblems(labels: LabelSources, staticLabels: Readonly<Record<string, string>>, levelLabel?: string | null): LabelConfigProblem[] {
  const out: LabelConfigProblem[] = [];
  if (levelLabel) {
    const bad = labelNameProblem(levelLabel);
    if (bad) out.push({ path: ['level_label'], message: bad });
    if (levelLabel in labels || levelLabel in staticLabels) out.push({ path: ['level_label'], message: `${levelLabel} is also under labels or static_labels; a stream has one value per label name` });
  }
  for (const [name, source] of Object.entries(labels)) {
    const bad = labelNameProblem(name);
    if (bad) out.push({ path: ['labels', name], message: bad });
    const attrs = typeof source === 'string' ? [source] : source;
    attrs.forEach((attr, i) => {
      const why = unboundedAttributeReason(attr);
      if (why === undefined) return;
      out.push({
        path: typeof source === 'string' ? ['labels', name] : ['labels', name, i],
        message: `${attr} cannot be a label: ${why}, so every value is a new Loki stream; it stays in the line (line_format json) or structured metadata (line_format body)`,
      });
    });
  }
  for (const [name, value] of Object.entries(staticLabels)) {
    const bad = labelNameProblem(name);
    if (bad) out.push({ path: ['static_labels', name], message: bad });
    if (name in labels) out.push({ path: ['static_labels', name], message: `${name} is also under labels; a stream has one value per label name` });
    if (value.length > MAX_LABEL_VALUE_LENGTH) out.push({ path: ['static_labels', name], message: `longer than Loki's ${MAX_LABEL_VALUE_LENGTH} characters per label value` });
  }
  const count = new Set([...Object.keys(labels), ...Object.keys(staticLabels), ...(levelLabel ? [levelLabel] : [])]).size;
  if (count > MAX_LABEL_NAMES) {
    out.push({
      path: ['labels'],
      message: `${count} labels with static_labels; Loki refuses streams with more than ${MAX_LABEL_NAMES} label names (max_label_names_per_series)`,
    });
  }
  return out;
}

/** What one resource contributes to a push: its stream's labels, and what is left for the line. */
export interface ResourceSplit {
  /** Loki's labels string, `{container="app", namespace="default"}`: names sorted, values quoted. */
  readonly selector: string;
  /** The same labels as JSON object text, for the JSON push body's `stream`. */
  readonly json: string;
  /** The resource without the attributes that became labels; the resource itself when none did. */
  readonly rest: Attributes;
}

interface LabelSpec {
  readonly name: string;
  readonly attrs: readonly string[];
  readonly fixed: string | undefined;
}

/**
 * Loki 3 names a stream with no service label `service_name="unknown_service"` itself; a stream with
 * no label at all it refuses ("error at least one label pair is required per stream"). A record
 * none of whose label attributes are set (a cluster event's record, say) gets that name here.
 */
const FALLBACK_LABEL = { name: 'service_name', value: 'unknown_service' } as const;

/**
 * Labels per resource object. Resources are shared by identity between all records of a file and
 * stream (agent/record.ts), so the split is computed once per resource and looked up by identity.
 */
export class StreamLabeler {
  private readonly specs: readonly LabelSpec[];
  private readonly cache = new WeakMap<Attributes, ResourceSplit>();
  /** `level_label`: the record's level (parsers/severity.ts `severityLevel`) as one more label. */
  readonly levelLabel: string | undefined;
  /** Per resource, its split for each level index (0: no level, 1-6: LEVELS). */
  private readonly levelled = new WeakMap<Attributes, (ResourceSplit | undefined)[]>();

  constructor(labels: LabelSources, staticLabels: Readonly<Record<string, string>>, levelLabel?: string | null) {
    this.levelLabel = levelLabel ?? undefined;
    const specs: LabelSpec[] = [];
    for (const [name, source] of Object.entries(labels)) {
      specs.push({ name, attrs: typeof source === 'string' ? [source] : source, fixed: undefined });
    }
    for (const [name, value] of Object.entries(staticLabels)) specs.push({ name, attrs: [], fixed: value });
    // Loki sorts labels itself; sending them sorted keeps one selector text per label set.
    this.specs = specs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  split(resource: Attributes): ResourceSplit {
    let split = this.cache.get(resource);
    if (split === undefined) {
      split = this.compute(resource, this.specs);
      this.cache.set(resource, split);
    }
    return split;
  }

  /** The split of a resource for records of one level (`levelIndex`); `split` when there is no level label. */
  splitAt(resource: Attributes, level: number): ResourceSplit {
    if (this.levelLabel === undefined || level === 0) return this.split(resource);
    let byLevel = this.levelled.get(resource);
    if (byLevel === undefined) {
      byLevel = [];
      this.levelled.set(resource, byLevel);
    }
    let split = byLevel[level];
    if (split === undefined) {
      const specs = [...this.specs, { name: this.levelLabel, attrs: [], fixed: LEVELS[level - 1] }].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      split = this.compute(resource, specs);
      byLevel[level] = split;
    }
    return split;
  }

  private compute(resource: Attributes, specs: readonly LabelSpec[]): ResourceSplit {
    const names: string[] = [];
    const values: string[] = [];
    let used: Set<string> | undefined;
    for (const spec of specs) {
      let value = spec.fixed;
      for (let i = 0; value === undefined && i < spec.attrs.length; i++) {
        const attr = spec.attrs[i]!;
        const v = resource[attr];
        if (v === undefined) continue;
        const text = labelValue(v);
        if (text === '') continue;
        value = text;
        (used ??= new Set()).add(attr);
      }
      if (value === undefined) continue;
      names.push(spec.name);
      values.push(value);
    }
    if (names.length === 0) {
      names.push(FALLBACK_LABEL.name);
      values.push(FALLBACK_LABEL.value);
    }
    let selector = '{';
    const obj: Record<string, string> = {};
    for (let i = 0; i < names.length; i++) {
      if (i > 0) selector += ', ';
      selector += names[i] + '=' + quoteLabelValue(values[i]!);
      obj[names[i]!] = values[i]!;
    }
    selector += '}';
    let rest = resource;
    if (used) {
      const copy: Record<string, AttributeValue> = {};
      for (const key in resource) if (!used.has(key)) copy[key] = resource[key]!;
      rest = Object.freeze(copy);
    }
    return { selector, json: JSON.stringify(obj), rest };
  }
}

function labelValue(v: AttributeValue): string {
  const text = typeof v === 'string' ? v : Array.isArray(v) ? v.join(',') : String(v);
  // Lone surrogates cannot be written as UTF-8; Loki refuses labels that are not valid UTF-8.
  return text.isWellFormed() ? text : text.toWellFormed();
}

/**
 * A label value as Loki's label parser reads it: a Go double-quoted string. JSON string syntax is a
 * subset of Go's for well-formed text (`\"`, `\\`, `\n`, `\uXXXX` for other control characters;
 * everything else as is), and a raw newline, which Go refuses inside quotes, is always escaped.
 */
export function quoteLabelValue(value: string): string {
  return JSON.stringify(value);
}

export interface Timestamp {
  seconds: number;
  nanos: number;
}

const RFC3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/i;
const NANO_SCALE = [1e9, 1e8, 1e7, 1e6, 1e5, 1e4, 1e3, 100, 10, 1];

/** `YYYY-MM-DDTHH:MM:SS.` punctuation in place (Date.parse alone would also take other date formats). */
function isDateTimeShape(t: string): boolean {
  return (
    t.charCodeAt(4) === 45 && t.charCodeAt(7) === 45 && t.charCodeAt(10) === 84 && t.charCodeAt(13) === 58 && t.charCodeAt(16) === 58 && t.charCodeAt(19) === 46
  );
}

/**
 * Seconds and nanoseconds of an RFC 3339 time, every fraction digit kept (up to nanoseconds).
 * Consecutive records mostly share their second, so the date part is parsed once per second.
 */
export class TimestampParser {
  /** The time `read` last read. */
  seconds = 0;
  nanos = 0;
  private lastPrefix = '';
  private lastSeconds = 0;

  parse(text: string): Timestamp | undefined {
    return this.read(text) ? { seconds: this.seconds, nanos: this.nanos } : undefined;
  }

  /** `parse` without an object per call: true, with the time in `seconds` and `nanos`, or false. */
  read(text: string): boolean {
    // The agent's own shape, `2026-11-21T10:00:00.123456789Z`, without a regex.
    if (text.length === 30 && text.charCodeAt(29) === 90 /* Z */ && isDateTimeShape(text)) {
      let nanos = 0;
      for (let i = 20; i < 29; i++) {
        const d = text.charCodeAt(i) - 48;
        if (d < 0 || d > 9) return this.readGeneral(text);
        nanos = nanos * 10 + d;
      }
      // startsWith compares in place; a slice per record would be an object per record.
      let seconds: number | undefined = this.lastSeconds;
      if (this.lastPrefix === '' || !text.startsWith(this.lastPrefix)) seconds = this.secondsOf(text.slice(0, 19), 'Z');
      if (seconds === undefined) return false;
      this.seconds = seconds;
      this.nanos = nanos;
      return true;
    }
    return this.readGeneral(text);
  }

  private readGeneral(text: string): boolean {
    const m = RFC3339.exec(text);
    if (!m) return false;
    const zone = m[3]!.toUpperCase();
    const seconds = zone === 'Z' && m[1] === this.lastPrefix ? this.lastSeconds : this.secondsOf(m[1]!, zone);
    if (seconds === undefined) return false;
    const digits = (m[2] ?? '').slice(0, 9);
    this.seconds = seconds;
    this.nanos = digits === '' ? 0 : Number(digits) * NANO_SCALE[digits.length]!;
    return true;
  }

  private secondsOf(prefix: string, zone: string): number | undefined {
    const ms = Date.parse(prefix + zone);
    // Loki keeps no entry from before 1970 (its timestamps are unsigned nanoseconds in JSON).
    if (!Number.isFinite(ms) || ms < 0) return undefined;
    const seconds = ms / 1000;
    if (zone === 'Z') {
      this.lastPrefix = prefix;
      this.lastSeconds = seconds;
    }
    return seconds;
  }
}

/** One record of a stream: where it is in the batch, and its time. */
export interface StreamEntry {
  readonly index: number;
  readonly seconds: number;
  readonly nanos: number;
  /** The record's resource minus its labels (records of one stream can differ in the rest). */
  readonly rest: Attributes;
}

export interface StreamGroup {
  readonly split: ResourceSplit;
  readonly entries: StreamEntry[];
}

const byTime = (a: StreamEntry, b: StreamEntry) => a.seconds - b.seconds || a.nanos - b.nanos;

/**
 * The batch as Loki streams: records grouped by label set, each stream's entries in time order
 * (stable, so records of the same nanosecond keep their order). Loki before 2.4, and any Loki with
 * `unordered_writes: false`, refuses an entry older than its stream's newest ("entry out of order"),
 * and records of several pods interleave in a batch. A record whose time cannot be read is refused
 * here, alone, rather than sent with an invented time.
 */
export function groupStreams(
  records: readonly LogRecord[],
  labeler: StreamLabeler,
  times: TimestampParser,
  failed: RecordFailure[],
): StreamGroup[] {
  const bySelector = new Map<string, StreamGroup>();
  const groups: StreamGroup[] = [];
  // Most neighbours share a resource (one file's records): skip even the map lookup for them.
  let lastResource: Attributes | undefined;
  let lastLevel = 0;
  let lastGroup: StreamGroup | undefined;
  let lastRest: Attributes = {};
  const levelled = labeler.levelLabel !== undefined;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    if (!times.read(r.timestamp)) {
      failed.push({ index: i, retryable: false, reason: `timestamp ${JSON.stringify(r.timestamp)} is not an RFC 3339 time after 1970` });
      continue;
    }
    const level = levelled ? levelIndex(r.severityNumber) : 0;
    let group: StreamGroup;
    if (r.resource === lastResource && level === lastLevel) group = lastGroup!;
    else {
      const split = labeler.splitAt(r.resource, level);
      lastRest = split.rest;
      let found = bySelector.get(split.selector);
      if (found === undefined) {
        found = { split, entries: [] };
        bySelector.set(split.selector, found);
        groups.push(found);
      }
      group = found;
      lastResource = r.resource;
      lastLevel = level;
      lastGroup = group;
    }
    group.entries.push({ index: i, seconds: times.seconds, nanos: times.nanos, rest: lastRest });
  }
  for (const g of groups) if (!isSorted(g.entries)) g.entries.sort(byTime);
  return groups;
}

/** 0 for no severity number, else 1-6 for LEVELS (the same bands as severityLevel). */
function levelIndex(n: number | undefined): number {
  return n === undefined || n < 1 || n > 24 ? 0 : ((n - 1) >> 2) + 1;
}

function isSorted(entries: readonly StreamEntry[]): boolean {
  for (let i = 1; i < entries.length; i++) if (byTime(entries[i - 1]!, entries[i]!) > 0) return false;
  return true;
}
