import type { AttributeValue, Attributes, LogRecord } from '../../record.ts';
import { parseCriLine } from '../../../parsers/cri.ts';
import { parseDockerJsonLine } from '../../../parsers/docker_json.ts';
import { detectFormat } from '../../../parsers/format_picker.ts';
import { isParseFailure, type ContainerLineResult } from '../../../parsers/container_line.ts';
import { PartialMerger, type JoinedLine, type PendingStarts } from '../../../parsers/partial_merger.ts';
import { MultilineGrouper, type MultilineOptions, type MultilineRecord } from '../../../parsers/multiline.ts';
import { utf8FromBinary } from './line_splitter.ts';

export type ContainerFormat = 'cri' | 'docker';

/**
 * docker's copier splits messages at 16 KiB, but JSON escaping can make a line several times
 * longer: physical docker lines are only cut far above that, so a record is capped by
 * max_line_bytes after decoding (keeping its stream and time) instead of as broken JSON.
 */
export const DOCKER_PHYSICAL_LINE_CAP = 256 * 1024;

export interface DecoderEvents {
  parseError(parser: ContainerFormat | 'auto', message: string): void;
  truncated(): void;
  emptyLine(): void;
}

/**
 * Turns one container log file's physical lines into records: CRI or docker framing, then P/F
 * joining, then multiline grouping when the source asks for it, then the record shape. One decoder
 * per open file, because partial joins and groups are keyed by file identity and stream: a group
 * never spans two files (a rotation or a container restart ends it).
 */
export class ContainerDecoder {
  private format: ContainerFormat | undefined;
  private parse: ((line: string) => ContainerLineResult) | undefined;
  private readonly merger: PartialMerger;
  private readonly grouper: MultilineGrouper | undefined;
  /** The grouper's records, reused between lines. */
  private readonly grouped: MultilineRecord[] = [];
  readonly resource: Attributes;
  private readonly path: string;
  private readonly streamAttributes: Record<'stdout' | 'stderr', Attributes>;
  private readonly events: DecoderEvents;
  private readonly maxLineBytes: number;
  private skipUntil = 0;
  private skipPending: PendingStarts = {};
  /** Some line since nothing was pending came as bytes: joined content must be read as UTF-8. */
  private binaryPending = false;

  constructor(opts: {
    format: 'auto' | ContainerFormat;
    maxLineBytes: number;
    resource: Attributes;
    path: string;
    events: DecoderEvents;
    /** Group stack traces after P/F joining (off when absent). */
    multiline?: MultilineOptions;
  }) {
    this.merger = new PartialMerger({ maxBytes: opts.maxLineBytes });
    if (opts.multiline !== undefined) this.grouper = new MultilineGrouper(opts.multiline);
    this.maxLineBytes = opts.maxLineBytes;
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

  /** Earliest byte offset still held in a partial join or a multiline group: checkpoints must not pass it. */
  heldFrom(): number | undefined {
    const joins = this.merger.earliestPendingOffset();
    const groups = this.grouper?.earliestHeldOffset();
    if (groups === undefined) return joins;
    return joins === undefined || groups < joins ? groups : joins;
  }

  /**
   * Where each stream's held lines start (a join in progress, or a group's first line, whichever
   * is earlier): a restart re-reads that stream from there and the other streams' lines it already
   * sent are skipped. Every line of a stream after its held start is held too, so nothing that
   * stream delivered lies beyond it.
   */
  pendingStarts(): PendingStarts {
    const joins = this.merger.pendingStarts();
    if (this.grouper === undefined || this.grouper.heldCount() === 0) return joins;
    const groups = this.grouper.heldStarts();
    const starts: PendingStarts = {};
    for (const stream of ['stdout', 'stderr'] as const) {
      const a = joins[stream];
      const b = groups[stream];
      const start = a === undefined ? b : b === undefined ? a : Math.min(a, b);
      if (start !== undefined) starts[stream] = start;
    }
    return starts;
  }

  /** A multiline group is open on some stream (the source's timer flushes it when idle). */
  get groupsHeld(): boolean {
    return this.grouper !== undefined && this.grouper.heldCount() > 0;
  }

  /**
   * Resuming at a checkpoint that had joins in progress: the read starts at the earliest of them,
   * and lines before `delivered` were already sent unless they belong to a join that was pending.
   */
  resumeAfter(delivered: number, pending: PendingStarts): void {
    this.skipUntil = delivered;
    this.skipPending = pending;
  }

  /** Longest physical line kept whole; longer ones are cut and marked truncated. */
  get physicalLineCap(): number {
    return this.format === 'docker' ? Math.max(this.maxLineBytes, DOCKER_PHYSICAL_LINE_CAP) : this.maxLineBytes;
  }

  /** With `format: auto`, decide from the first line of the first chunk, before it is split. */
  detect(firstLine: string): void {
    if (this.parse !== undefined) return;
    const format = detectFormat(firstLine);
    if (format) this.setFormat(format);
  }

  get formatKnown(): boolean {
    return this.parse !== undefined;
  }

  /**
   * How the reader should hand lines over: CRI lines as bytes (binary strings), because containerd
   * cuts P chunks at a byte count that may split a UTF-8 character; docker lines as UTF-8, since
   * json-file already replaced invalid bytes before we see them.
   */
  get lineMode(): 'bytes' | 'utf8' {
    return this.format === 'cri' ? 'bytes' : 'utf8';
  }

  /** A line given as raw bytes (an over-long head, or a last line without LF). */
  decodeBytes(bytes: Buffer, lineStart: number, observed: string, out: LogRecord[], truncated: boolean): void {
    if (this.lineMode === 'bytes') this.decode(bytes.toString('latin1'), lineStart, observed, out, true, truncated);
    else this.decode(bytes.toString('utf8'), lineStart, observed, out, false, truncated);
  }

  /** `binary`: the line is a latin1 string of UTF-8 bytes, to be read as UTF-8 once P/F chunks are joined. */
  decode(line: string, lineStart: number, observed: string, out: LogRecord[], binary: boolean, truncated = false): void {
    if (line.length === 0) {
      this.events.emptyLine();
      return;
    }
    if (this.parse === undefined) {
      const format = detectFormat(line);
      if (format === undefined) {
        const error = 'unknown format: neither CRI nor docker json-file';
        this.events.parseError('auto', error);
        this.failure(binary ? utf8FromBinary(line) : line, error, observed, out);
        return;
      }
      this.setFormat(format);
    }
    const parsed = this.parse!(line);
    if (lineStart < this.skipUntil && !isParseFailure(parsed)) {
      const start = this.skipPending[parsed.stream];
      if (start === undefined || lineStart < start) return;
    }
    if (isParseFailure(parsed)) {
      this.events.parseError(this.format!, parsed.error);
      this.failure(binary ? utf8FromBinary(line) : line, parsed.error, observed, out);
      return;
    }
    if (truncated) {
      // A physical line cut at max_line_bytes never reaches its F: close the join here.
      parsed.partial = false;
      this.events.truncated();
    }
    this.binaryPending ||= binary;
    if (this.grouper === undefined) {
      const joined = this.merger.push(parsed, lineStart);
      if (joined !== undefined) out.push(this.record(joined, observed, truncated));
      return;
    }
    // A joined line starts where its first P chunk did.
    const start = this.merger.pendingCount() === 0 ? lineStart : (this.merger.pendingStarts()[parsed.stream] ?? lineStart);
    const joined = this.merger.push(parsed, lineStart);
    if (joined !== undefined) this.group(joined, start, observed, out, truncated);
  }

  /** Emit pending partial joins: all of them, or those idle longer than `idleMs`. All: the file is finished, so groups end too. */
  flush(observed: string, out: LogRecord[], idleMs?: number, now = Date.now()): void {
    const grouper = this.grouper;
    if (grouper === undefined) {
      const joins = idleMs === undefined ? this.merger.flush() : this.merger.flushIdle(now, idleMs);
      for (const j of joins) out.push(this.record(j, observed, false));
      return;
    }
    const starts = this.merger.pendingStarts();
    const joins = idleMs === undefined ? this.merger.flush() : this.merger.flushIdle(now, idleMs);
    for (const j of joins) this.group(j, starts[j.stream]!, observed, out, false);
    if (idleMs === undefined) this.groupRecords(grouper.flushAll('end_of_file'), observed, out);
  }

  /** Emit the multiline groups idle for `idleMs` (the source's timer). */
  flushIdleGroups(observed: string, out: LogRecord[], idleMs: number, now = Date.now()): void {
    if (this.grouper !== undefined) this.groupRecords(this.grouper.flush(idleMs, now), observed, out);
  }

  /**
   * Emit every multiline group: the source stops, or the file's successor is about to be read.
   * Joins in progress stay held (for the next start, or until the file is finished).
   */
  flushGroups(observed: string, out: LogRecord[], reason: 'end_of_file' | 'shutdown'): void {
    if (this.grouper !== undefined) this.groupRecords(this.grouper.flushAll(reason), observed, out);
  }

  private group(j: JoinedLine, offset: number, observed: string, out: LogRecord[], truncated: boolean): void {
    const grouped = this.grouped;
    this.grouper!.push(
      { stream: j.stream, time: j.time, content: this.text(j), offset, truncated: j.truncated || truncated, incomplete: j.incomplete },
      grouped,
    );
    if (j.truncated && !truncated) this.events.truncated();
    this.groupRecords(grouped, observed, out);
    grouped.length = 0;
  }

  private groupRecords(records: MultilineRecord[], observed: string, out: LogRecord[]): void {
    for (const r of records) {
      out.push({
        timestamp: r.time,
        observedTimestamp: observed,
        severityText: undefined,
        severityNumber: undefined,
        body: r.content,
        attributes: this.attributes(r.stream, r.incomplete === true, r.truncated),
        resource: this.resource,
      });
    }
  }

  private text(j: JoinedLine): string {
    if (!this.binaryPending) return j.content;
    // Other streams may still hold binary chunks: keep converting until nothing is pending.
    this.binaryPending = this.merger.pendingCount() > 0;
    return utf8FromBinary(j.content);
  }

  private attributes(stream: 'stdout' | 'stderr', incomplete: boolean, truncated: boolean): Attributes {
    const attributes = this.streamAttributes[stream];
    if (!incomplete && !truncated) return attributes;
    const marked: Record<string, AttributeValue> = { ...attributes };
    if (incomplete) marked['kta.log.incomplete'] = true;
    if (truncated) marked['kta.log.truncated'] = true;
    return marked;
  }

  private record(j: JoinedLine, observed: string, truncated: boolean): LogRecord {
    const body = this.text(j);
    if (j.truncated && !truncated) this.events.truncated();
    const attributes = this.attributes(j.stream, j.incomplete, j.truncated || truncated);
    // Severity slots from the start: the parse stage fills them in place, so every record keeps one shape.
    return { timestamp: j.time, observedTimestamp: observed, severityText: undefined, severityNumber: undefined, body, attributes, resource: this.resource };
  }

  private failure(line: string, error: string, observed: string, out: LogRecord[]): void {
    out.push({
      timestamp: observed,
      observedTimestamp: observed,
      severityText: undefined,
      severityNumber: undefined,
      body: line,
      attributes: { 'log.file.path': this.path, 'kta.parse.error': error },
      resource: this.resource,
    });
  }
}
