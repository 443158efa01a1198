import { severityFromSyslog } from '../../../parsers/severity.ts';
import type { AttributeValue, Attributes, LogRecord } from '../../record.ts';
import type { ExportEntry, FieldValue } from './export_reader.ts';

/** Prefix of the attribute that carries each journal field: `journald._SYSTEMD_UNIT`. */
export const FIELD_PREFIX = 'journald.';


const MICROS = /^\d{1,19}$/;

/**
 * A journal timestamp (µs since the epoch, decimal) as RFC 3339 UTC with nine fraction digits;
 * undefined when it is not a µs count within years 1970-9999. The µs digits are copied as text.
 */
export function formatUnixMicros(text: string): string | undefined {
  if (!MICROS.test(text)) return undefined;
  const ms = text.length > 3 ? Number(text.slice(0, -3)) : 0;
  const iso = new Date(ms).toISOString();
  if (iso.length !== 24) return undefined;
  return iso.slice(0, 23) + text.slice(-3).padStart(3, '0') + '000Z';
}

const first = (v: FieldValue | undefined): string | undefined => (typeof v === 'string' ? v : v?.[0]);

/** `kubelet.service` -> `kubelet`; other unit types keep their suffix (`session-3.scope`). */
function serviceOfUnit(unit: string): string {
  return unit.endsWith('.service') ? unit.slice(0, -'.service'.length) : unit;
}

const MAX_CACHED = 10_000;

/**
 * Journal entry -> record. Resource objects are shared by every entry with the same host and
 * service (outputs cache their encoding by object identity); attributes are per entry.
 */
export class JournalRecordMapper {
  private readonly nodeName: string;
  private readonly exclude: ReadonlySet<string>;
  private readonly resources = new Map<string, Attributes>();
  private readonly attributeNames = new Map<string, string>();

  constructor(opts: { nodeName: string; excludeFields: readonly string[] }) {
    this.nodeName = opts.nodeName;
    this.exclude = new Set(opts.excludeFields);
  }

  map(entry: ExportEntry, observed: string): LogRecord {
    const f = entry.fields;
    const timestamp =
      formatUnixMicros(first(f.get('_SOURCE_REALTIME_TIMESTAMP')) ?? '') ?? formatUnixMicros(first(f.get('__REALTIME_TIMESTAMP')) ?? '') ?? observed;
    const message = f.get('MESSAGE');
    const body = message === undefined ? '' : typeof message === 'string' ? message : message.join('\n');

    const attributes: Record<string, AttributeValue> = {};
    for (const [name, value] of f) {
      if (name === 'MESSAGE' || name.startsWith('__') || this.exclude.has(name)) continue;
      attributes[this.attributeName(name)] = value;
    }
    if (entry.truncated) attributes['kta.log.truncated'] = true;

    const record: LogRecord = { timestamp, observedTimestamp: observed, body, attributes, resource: this.resource(f) };
    const priority = f.get('PRIORITY');
    if (typeof priority === 'string' && priority.length === 1) {
      // PRIORITY is one digit 0-7: syslog levels, mapped as in log-formats.md §4.3.
      const severity = severityFromSyslog(priority.charCodeAt(0) - 48);
      if (severity) {
        record.severityText = severity.text;
        record.severityNumber = severity.number;
      }
    }
    return record;
  }

  private attributeName(field: string): string {
    let name = this.attributeNames.get(field);
    if (name === undefined) {
      if (this.attributeNames.size >= MAX_CACHED) this.attributeNames.clear();
      name = FIELD_PREFIX + field;
      this.attributeNames.set(field, name);
    }
    return name;
  }

  private resource(f: Map<string, FieldValue>): Attributes {
    const host = first(f.get('_HOSTNAME'));
    const identifier = first(f.get('SYSLOG_IDENTIFIER'));
    const unit = first(f.get('_SYSTEMD_UNIT'));
    const service = identifier ?? (unit === undefined ? undefined : serviceOfUnit(unit));
    const key = `${host ?? ''}\u0000${service ?? ''}\u0000${host === undefined ? 0 : 1}${service === undefined ? 0 : 1}`;
    let resource = this.resources.get(key);
    if (resource === undefined) {
      const r: Record<string, AttributeValue> = { 'k8s.node.name': this.nodeName };
      if (host !== undefined) r['host.name'] = host;
      if (service !== undefined) r['service.name'] = service;
      resource = Object.freeze(r);
      if (this.resources.size >= MAX_CACHED) this.resources.clear();
      this.resources.set(key, resource);
    }
    return resource;
  }
}
