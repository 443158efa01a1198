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

/** C0 controls but TAB, DEL and C1 controls (U+009B is CSI on some terminals). */
// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\x1b': '\\e', '\0': '\\0' };

/**
 * Text made safe for a terminal and for one-record-per-line readers: control characters (ANSI
 * escapes, CR, NUL, line breaks) become visible escapes (`\e[31m`, `\r`, `\0`, `\n`, `\x07`,
 * `\u009b`), so a log line cannot recolour, rewrite or clear the screen of whoever reads the
 * agent's output, nor pass for another record. Tabs stay.
 */
export function escapeControls(text: string): string {
  CONTROL.lastIndex = 0;
  if (!CONTROL.test(text)) return text;
  return text.replace(CONTROL, (c) => {
    const code = c.charCodeAt(0);
    return NAMED[c] ?? (code < 0x80 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
  });
}

/** One human-readable line: time, where it came from, the stream and the body, control characters escaped. */
export function encodeText(r: LogRecord): string {
  const res = r.resource;
  const where =
    res['k8s.pod.name'] !== undefined
      ? `${res['k8s.namespace.name'] ?? '?'}/${res['k8s.pod.name']}/${res['k8s.container.name'] ?? '?'}`
      : String(res['service.name'] ?? res['k8s.node.name'] ?? '-');
  const stream = r.attributes['log.iostream'];
  const level = r.severityText ? ` ${r.severityText}` : '';
  const body = typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
  return escapeControls(`${r.timestamp} ${where}${stream ? ' ' + String(stream) : ''}${level} ${body}`) + '\n';
}
