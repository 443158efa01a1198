/**
 * Streaming parser of `journalctl -o export` (systemd's JOURNAL_EXPORT_FORMATS.md): entries
 * separated by an empty line; a text field is `NAME=value\n`; a field that is not printable UTF-8
 * is `NAME\n`, an 8-byte little-endian length, the raw bytes and `\n`. Chunks from a pipe split
 * anywhere (inside a name, a length, a value), so every state survives the end of a chunk.
 */

export type FieldValue = string | string[];

export interface ExportEntry {
  /** Field name -> value, decoded as UTF-8 (invalid bytes become U+FFFD); a repeated field is an array. */
  readonly fields: Map<string, FieldValue>;
  /** Bytes the entry took in the stream, separator included. */
  readonly bytes: number;
  /** A field was longer than maxFieldBytes and was cut. */
  readonly truncated: boolean;
}

export interface ExportParserOptions {
  /** Longer values are cut at this many bytes (at a character boundary). */
  maxFieldBytes: number;
  /** The stream broke the format (a binary value not followed by `\n`); parsing resynchronises. */
  onError?: (message: string) => void;
}

const NL = 0x0a;
const EQ = 0x3d;

type State = 'line' | 'skip_line' | 'length' | 'value' | 'value_end';

/** The longest prefix of `buf` of at most `max` bytes that ends on a UTF-8 character boundary. */
export function utf8Prefix(buf: Buffer, max: number): Buffer {
  if (buf.length <= max) return buf;
  let end = max;
  // Back over continuation bytes to the lead byte of the character that straddles the cut.
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end--;
  return buf.subarray(0, end);
}

export class ExportParser {
  private readonly maxFieldBytes: number;
  private readonly onError: (message: string) => void;

  private state: State = 'line';
  /** A line (or length header) begun in an earlier chunk. */
  private carry: Buffer[] = [];
  private carryBytes = 0;

  // The binary field being read.
  private binaryName = '';
  private binaryLength = 0;
  private binaryRemaining = 0;
  private binaryParts: Buffer[] = [];
  private binaryKept = 0;

  // The entry being assembled.
  private fields = new Map<string, FieldValue>();
  private entryBytes = 0;
  private truncated = false;

  constructor(opts: ExportParserOptions) {
    this.maxFieldBytes = opts.maxFieldBytes;
    this.onError = opts.onError ?? (() => {});
  }

  /** An entry is begun but not finished (what a reader killed mid-entry leaves behind). */
  get midEntry(): boolean {
    return this.entryBytes > 0;
  }

  /** Forgets everything begun: the next chunk starts a new stream. */
  reset(): void {
    this.state = 'line';
    this.carry = [];
    this.carryBytes = 0;
    this.binaryParts = [];
    this.binaryKept = 0;
    this.binaryRemaining = 0;
    this.fields = new Map();
    this.entryBytes = 0;
    this.truncated = false;
  }

  /** Parses `chunk`, appending every entry it completes to `out`. */
  push(chunk: Buffer, out: ExportEntry[]): void {
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      switch (this.state) {
        case 'line': {
          const nl = chunk.indexOf(NL, pos);
          if (nl < 0) {
            this.entryBytes += end - pos;
            this.keepCarry(chunk.subarray(pos));
            pos = end;
            break;
          }
          this.entryBytes += nl + 1 - pos;
          const line = this.takeLine(chunk.subarray(pos, nl));
          pos = nl + 1;
          this.onLine(line, out);
          break;
        }
        case 'skip_line': {
          const nl = chunk.indexOf(NL, pos);
          const stop = nl < 0 ? end : nl + 1;
          this.entryBytes += stop - pos;
          pos = stop;
          if (nl >= 0) this.state = 'line';
          break;
        }
        case 'length': {
          const take = Math.min(8 - this.carryBytes, end - pos);
          this.carry.push(Buffer.from(chunk.subarray(pos, pos + take)));
          this.carryBytes += take;
          this.entryBytes += take;
          pos += take;
          if (this.carryBytes < 8) break;
          const header = Buffer.concat(this.carry);
          this.carry = [];
          this.carryBytes = 0;
          this.binaryLength = header.readUInt32LE(0) + header.readUInt32LE(4) * 0x1_0000_0000;
          this.binaryRemaining = this.binaryLength;
          this.binaryParts = [];
          this.binaryKept = 0;
          this.state = this.binaryRemaining === 0 ? 'value_end' : 'value';
          break;
        }
        case 'value': {
          const take = Math.min(this.binaryRemaining, end - pos);
          // One byte past the cap tells utf8Prefix whether the cut falls inside a character.
          const room = this.maxFieldBytes + 1 - this.binaryKept;
          if (room > 0) {
            const part = chunk.subarray(pos, pos + Math.min(take, room));
            this.binaryParts.push(Buffer.from(part));
            this.binaryKept += part.length;
          }
          this.binaryRemaining -= take;
          this.entryBytes += take;
          pos += take;
          if (this.binaryRemaining === 0) this.state = 'value_end';
          break;
        }
        case 'value_end': {
          this.finishBinary();
          if (chunk[pos] === NL) {
            pos++;
            this.entryBytes++;
          } else {
            this.onError(`binary field ${this.binaryName} is not followed by a newline; resynchronising`);
          }
          this.state = 'line';
          break;
        }
      }
    }
  }

  private keepCarry(part: Buffer): void {
    // Beyond the field cap (plus room for a name) the rest of the line is skipped, its prefix kept.
    const cap = this.maxFieldBytes + 256;
    if (this.carryBytes + part.length > cap) {
      const line = Buffer.concat([...this.carry, part]);
      this.carry = [];
      this.carryBytes = 0;
      this.addTextField(line, true);
      this.state = 'skip_line';
      return;
    }
    this.carry.push(Buffer.from(part));
    this.carryBytes += part.length;
  }

  private takeLine(rest: Buffer): Buffer {
    if (this.carry.length === 0) return rest;
    const line = Buffer.concat([...this.carry, rest]);
    this.carry = [];
    this.carryBytes = 0;
    return line;
  }

  private onLine(line: Buffer, out: ExportEntry[]): void {
    if (line.length === 0) {
      if (this.fields.size > 0) out.push({ fields: this.fields, bytes: this.entryBytes, truncated: this.truncated });
      this.fields = new Map();
      this.entryBytes = 0;
      this.truncated = false;
      return;
    }
    if (line.indexOf(EQ) >= 0) {
      this.addTextField(line, false);
      return;
    }
    this.binaryName = line.toString('latin1');
    this.state = 'length';
  }

  /** `NAME=value`; when `cut`, the line went on past the cap and only its prefix is here. */
  private addTextField(line: Buffer, cut: boolean): void {
    const eq = line.indexOf(EQ);
    if (eq < 0) {
      // A name longer than the cap: not a journal field name (those are at most 64 bytes).
      this.onError(`field name longer than ${this.maxFieldBytes} bytes; skipped`);
      return;
    }
    const value = line.subarray(eq + 1);
    const kept = utf8Prefix(value, this.maxFieldBytes);
    if (cut || kept.length < value.length) this.truncated = true;
    this.add(line.toString('latin1', 0, eq), kept.toString('utf8'));
  }

  private finishBinary(): void {
    let value = this.binaryParts.length === 1 ? this.binaryParts[0]! : Buffer.concat(this.binaryParts);
    this.binaryParts = [];
    this.binaryKept = 0;
    if (this.binaryLength > this.maxFieldBytes) {
      value = utf8Prefix(value, this.maxFieldBytes);
      this.truncated = true;
    }
    this.add(this.binaryName, value.toString('utf8'));
  }

  private add(name: string, value: string): void {
    const prev = this.fields.get(name);
    if (prev === undefined) this.fields.set(name, value);
    else if (typeof prev === 'string') this.fields.set(name, [prev, value]);
    else prev.push(value);
  }
}
