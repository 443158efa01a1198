import type { AttributeValue, Attributes, LogRecord } from '../../record.ts';
import { parseCriLine } from '../../../parsers/cri.ts';
import { parseDockerJsonLine } from '../../../parsers/docker_json.ts';
import { detectFormat } from '../../../parsers/format_picker.ts';
import { isParseFailure, type ContainerLineResult } from '../../../parsers/container_line.ts';
import { PartialMerger, type JoinedLine } from '../../../parsers/partial_merger.ts';

export type ContainerFormat = 'cri' | 'docker';

export interface DecoderEvents {
  parseError(parser: ContainerFormat, message: string): void;
  truncated(): void;
  emptyLine(): void;
}

/**
 * Turns one container log file's physical lines into records: CRI or docker framing, then P/F
 * joining, then the record shape. One decoder per open file, because partial joins are keyed by
 * file identity and stream.
 */
export class ContainerDecoder {
  private format: ContainerFormat | undefined;
  private parse: ((line: string) => ContainerLineResult) | undefined;
  private readonly merger: PartialMerger;
  readonly resource: Attributes;
  private readonly path: string;
  private readonly streamAttributes: Record<'stdout' | 'stderr', Attributes>;
  private readonly events: DecoderEvents;

  constructor(opts: {
    format: 'auto' | ContainerFormat;
    maxLineBytes: number;
    resource: Attributes;
    path: string;
    events: DecoderEvents;
  }) {
    this.merger = new PartialMerger({ maxBytes: opts.maxLineBytes });
    this.resource = opts.resource;
    this.path = opts.path;
    this.events = opts.events;
    this.streamAttributes = {
      stdout: Object.freeze({ 'log.iostream': 'stdout', 'log.file.path': opts.path }),
      stderr: Object.freeze({ 'log.iostream': 'stderr', 'log.file.path': opts.path }),
    };
    if (opts.format !== 'auto') this.setFormat(opts.format);
  }

  private setFormat(format: ContainerFormat): void {
    this.format = format;
    this.parse = format === 'cri' ? parseCriLine : parseDockerJsonLine;
  }

  /** Earliest byte offset still held in a partial join: checkpoints must not pass it. */
  heldFrom(): number | undefined {
    return this.merger.earliestPendingOffset();
  }

  decode(line: string, lineStart: number, observed: string, out: LogRecord[], truncated = false): void {
    if (line.length === 0) {
      this.events.emptyLine();
      return;
    }
    if (this.parse === undefined) {
      const format = detectFormat(line);
      if (format === undefined) {
        this.failure(line, 'unknown format: neither CRI nor docker json-file', observed, out);
        return;
      }
      this.setFormat(format);
    }
    const parsed = this.parse!(line);
    if (isParseFailure(parsed)) {
      this.events.parseError(this.format!, parsed.error);
      this.failure(line, parsed.error, observed, out);
      return;
    }
    if (truncated) {
      // A physical line cut at max_line_bytes never reaches its F: close the join here.
      parsed.partial = false;
      this.events.truncated();
    }
    const joined = this.merger.push(parsed, lineStart);
    if (joined !== undefined) out.push(this.record(joined, observed, truncated));
  }

  /** Emit pending partial joins: all of them, or those idle longer than `idleMs`. */
  flush(observed: string, out: LogRecord[], idleMs?: number, now = Date.now()): void {
    const joins = idleMs === undefined ? this.merger.flush() : this.merger.flushIdle(now, idleMs);
    for (const j of joins) out.push(this.record(j, observed, false));
  }

  private record(j: JoinedLine, observed: string, truncated: boolean): LogRecord {
    let attributes = this.streamAttributes[j.stream];
    if (j.incomplete || j.truncated || truncated) {
      if (j.truncated && !truncated) this.events.truncated();
      const marked: Record<string, AttributeValue> = { ...attributes };
      if (j.incomplete) marked['kta.log.incomplete'] = true;
      if (j.truncated || truncated) marked['kta.log.truncated'] = true;
      attributes = marked;
    }
    return { timestamp: j.time, observedTimestamp: observed, body: j.content, attributes, resource: this.resource };
  }

  private failure(line: string, error: string, observed: string, out: LogRecord[]): void {
    out.push({
      timestamp: observed,
      observedTimestamp: observed,
      body: line,
      attributes: { 'log.file.path': this.path, 'kta.parse.error': error },
      resource: this.resource,
    });
  }
}
