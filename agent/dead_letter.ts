import { mkdirSync, promises as fsp, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { safeFileName } from './safe_file_name.ts';
import type { NdjsonEncoder } from '../outputs/ndjson.ts';
import type { LogRecord } from './record.ts';

export interface DeadLetterOptions {
  readonly output: string;
  readonly dataDir: string;
  /** The file is rotated to `<name>.1` past this size, so at most about twice it is kept. */
  readonly maxBytes: number;
  readonly encoder: NdjsonEncoder;
}

/** Owner only, like checkpoints and buffer segments: refused records are log lines, which may hold anything. */
const FILE_MODE = 0o600;

/** `<dataDir>/dead_letter/<output>.ndjson`. */
export function deadLetterPath(dataDir: string, output: string): string {
  return join(dataDir, 'dead_letter', `${safeFileName(output)}.ndjson`);
}

/**
 * Where records go that a receiver refused for good (a 400 for the whole request, a bulk item
 * that fails its mapping): one NDJSON line per record, `{"time","output","reason","record"}`,
 * with the record in the design.md shape so it can be replayed with any tool that reads NDJSON.
 * Appends are serialised; a write that fails rejects, and the caller counts the records as
 * dropped. Not fsync'd: a dead letter is a diagnosis aid, and the records were already refused.
 */
export class DeadLetterFile {
  readonly path: string;
  private readonly opts: DeadLetterOptions;
  private size: number | undefined;
  private tail: Promise<void> = Promise.resolve();

  constructor(opts: DeadLetterOptions) {
    this.opts = opts;
    this.path = deadLetterPath(opts.dataDir, opts.output);
  }

  write(records: readonly LogRecord[], reason: string): Promise<void> {
    const run = this.tail.then(() => this.append(records, reason));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async append(records: readonly LogRecord[], reason: string): Promise<void> {
    if (this.size === undefined) {
      mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
      // Older versions left the folder and its files readable by every user of the node.
      await fsp.chmod(dirname(this.path), 0o700).catch(() => undefined);
      try {
        this.size = statSync(this.path).size;
        await fsp.chmod(this.path, FILE_MODE);
      } catch {
        this.size = 0;
      }
    }
    const head = `{"time":${JSON.stringify(new Date().toISOString())},"output":${JSON.stringify(this.opts.output)},"reason":${JSON.stringify(reason)},"record":`;
    let text = '';
    for (const r of records) text += `${head}${this.opts.encoder.encode(r).slice(0, -1)}}\n`;
    const bytes = Buffer.byteLength(text);
    if (this.size > 0 && this.size + bytes > this.opts.maxBytes) {
      await fsp.rename(this.path, `${this.path}.1`);
      this.size = 0;
    }
    await fsp.appendFile(this.path, text, { mode: FILE_MODE });
    this.size += bytes;
  }
}
