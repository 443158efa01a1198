import type { Attributes, LogRecord } from '../agent/record.ts';

/**
 * Encodes records as design.md's NDJSON line. Attribute and resource objects are shared by all
 * records of a file and stream, so their JSON is cached by identity: per record only the
 * timestamps and the body are serialised.
 */
export class NdjsonEncoder {
  private readonly fragments = new WeakMap<Attributes, string>();

  private fragment(attrs: Attributes): string {
    let json = this.fragments.get(attrs);
    if (json === undefined) {
      json = JSON.stringify(attrs);
      this.fragments.set(attrs, json);
    }
    return json;
  }

  encode(r: LogRecord): string {
    let line = '{"timestamp":"' + r.timestamp + '","observed_timestamp":"' + r.observedTimestamp + '"';
    if (r.severityText !== undefined) line += ',"severity_text":' + JSON.stringify(r.severityText);
    if (r.severityNumber !== undefined) line += ',"severity_number":' + r.severityNumber;
    return (
      line +
      ',"body":' +
      JSON.stringify(r.body) +
      ',"attributes":' +
      this.fragment(r.attributes) +
      ',"resource":' +
      this.fragment(r.resource) +
      '}\n'
    );
  }

  /**
   * Encodes straight into a reusable buffer, growing it when needed; returns the buffer and the
   * byte count. One flat batch string would be a large heap object the GC frees late.
   */
  encodeInto(records: readonly LogRecord[], buf: Buffer<ArrayBuffer>): { buf: Buffer<ArrayBuffer>; length: number } {
    let off = 0;
    for (let i = 0; i < records.length; i++) {
      const line = this.encode(records[i]!);
      // A UTF-16 unit never takes more than 3 UTF-8 bytes.
      if (off + line.length * 3 > buf.length) {
        const bigger = Buffer.allocUnsafeSlow(Math.max(buf.length * 2, off + line.length * 3));
        buf.copy(bigger, 0, 0, off);
        buf = bigger;
      }
      off += buf.write(line, off);
    }
    return { buf, length: off };
  }

  encodeAll(records: readonly LogRecord[]): string {
    let out = '';
    for (let i = 0; i < records.length; i++) out += this.encode(records[i]!);
    return out;
  }
}

/** One human-readable line: time, where it came from, the stream and the body. */
export function encodeText(r: LogRecord): string {
  const res = r.resource;
  const where =
    res['k8s.pod.name'] !== undefined
      ? `${res['k8s.namespace.name'] ?? '?'}/${res['k8s.pod.name']}/${res['k8s.container.name'] ?? '?'}`
      : String(res['service.name'] ?? res['k8s.node.name'] ?? '-');
  const stream = r.attributes['log.iostream'];
  const level = r.severityText ? ` ${r.severityText}` : '';
  const body = typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
  return `${r.timestamp} ${where}${stream ? ' ' + String(stream) : ''}${level} ${body}\n`;
}
