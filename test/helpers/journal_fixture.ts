import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Real journal files for tests: entries are written in journalctl's export format and converted
 * by systemd-journal-remote (Debian package `systemd-journal-remote`), then read back by the
 * agent through journalctl --directory, as on a node.
 */
export const JOURNAL_REMOTE = '/lib/systemd/systemd-journal-remote';

/**
 * Whether the journal tools are here. Without them a suite skips with a clear message, except in
 * CI (`CI` set), where missing tools fail it instead of hiding it.
 */
export function journalToolsAvailable(): boolean {
  const missing = [JOURNAL_REMOTE].filter((p) => !existsSync(p));
  if (spawnSync('journalctl', ['--version']).status !== 0) missing.push('journalctl (in PATH)');
  if (missing.length === 0) return true;
  const message = `journald tests need ${missing.join(' and ')}: apt-get install -y systemd-journal-remote`;
  if (process.env.CI) throw new Error(message);
  console.warn(`SKIPPED: ${message}`);
  return false;
}

export type FieldInput = string | Buffer | readonly (string | Buffer)[];

export interface FixtureEntry {
  /** A Buffer (or a string with a newline) is written binary-framed. */
  message?: string | Buffer;
  priority?: number;
  /** SYSLOG_IDENTIFIER */
  identifier?: string;
  /** _SYSTEMD_UNIT */
  unit?: string;
  /** _HOSTNAME; default `node-a`. */
  hostname?: string;
  /** µs since the epoch; default: the fixture's clock (now, strictly increasing). */
  sourceRealtime?: number;
  /** More fields; an array repeats the field. */
  fields?: Record<string, FieldInput>;
}

const BOOT_ID = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';

/** One field in export format: `NAME=value\n`, or binary-framed when the value is not plain printable text. */
export function exportField(name: string, value: string | Buffer): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value) : value;
  // journalctl frames a value as binary when it holds a control character or is not valid UTF-8.
  const plain = typeof value === 'string' && ![...value].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
  if (plain) return Buffer.concat([Buffer.from(`${name}=`), bytes, Buffer.from('\n')]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([Buffer.from(`${name}\n`), len, bytes, Buffer.from('\n')]);
}

/** A journal folder (`dir`) filled through systemd-journal-remote. */
export class JournalFixture {
  readonly dir: string;
  private lastRealtime = 0;
  private files = 0;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
  }

  /** Export-format bytes of `entries`, stamped with increasing times (one µs apart at least). */
  exportText(entries: readonly FixtureEntry[]): Buffer {
    const parts: Buffer[] = [];
    for (const e of entries) {
      const realtime = (this.lastRealtime = Math.max(Date.now() * 1000, this.lastRealtime + 1));
      parts.push(
        exportField('__REALTIME_TIMESTAMP', String(realtime)),
        // Same boot, so journalctl orders entries of different files by this clock: keep it in step.
        exportField('__MONOTONIC_TIMESTAMP', String(realtime - 1_600_000_000_000_000)),
        exportField('_BOOT_ID', BOOT_ID),
        exportField('_HOSTNAME', e.hostname ?? 'node-a'),
        exportField('_TRANSPORT', 'stdout'),
      );
      if (e.identifier !== undefined) parts.push(exportField('SYSLOG_IDENTIFIER', e.identifier));
      if (e.unit !== undefined) parts.push(exportField('_SYSTEMD_UNIT', e.unit));
      if (e.priority !== undefined) parts.push(exportField('PRIORITY', String(e.priority)));
      if (e.sourceRealtime !== undefined) parts.push(exportField('_SOURCE_REALTIME_TIMESTAMP', String(e.sourceRealtime)));
      for (const [name, value] of Object.entries(e.fields ?? {})) {
        const values = typeof value === 'string' || Buffer.isBuffer(value) ? [value] : value;
        for (const v of values) parts.push(exportField(name, v));
      }
      if (e.message !== undefined) parts.push(exportField('MESSAGE', e.message));
      parts.push(Buffer.from('\n'));
    }
    return Buffer.concat(parts);
  }

  /**
   * Appends `entries` to journal file `file` in the folder (created when new; default: a new file
   * each call) and returns its path. Entries become visible to a following journalctl at once.
   */
  write(entries: readonly FixtureEntry[], file = `fixture-${++this.files}.journal`): string {
    if (!file.endsWith('.journal')) throw new Error(`journal file names end in .journal: ${file}`);
    const input = join(tmpdir(), `kta-journal-${process.pid}-${this.files}.export`);
    writeFileSync(input, this.exportText(entries));
    const path = join(this.dir, file);
    const r = spawnSync(JOURNAL_REMOTE, ['-o', path, input], { encoding: 'utf8' });
    rmSync(input, { force: true });
    if (r.status !== 0) throw new Error(`${JOURNAL_REMOTE} -o ${path} failed (${r.status}): ${r.stderr}`);
    return path;
  }

  /** journald's rotation: `file` is renamed to `name@...journal` (archived); the next write to `file` starts a new one. */
  rotate(file: string): string {
    const archived = join(this.dir, `${file.replace(/\.journal$/, '')}@${BOOT_ID}-${String(++this.files).padStart(16, '0')}-${Date.now().toString(16).padStart(16, '0')}.journal`);
    renameSync(join(this.dir, file), archived);
    return archived;
  }

  /** journalctl --vacuum-*: archived files deleted (`paths`, default every file but the active `keep`). */
  vacuum(paths?: string[], keep = 'system.journal'): void {
    for (const p of paths ?? readdirSync(this.dir).filter((n) => n.endsWith('.journal') && n !== keep).map((n) => join(this.dir, n))) rmSync(p);
  }

  /** What journalctl itself reads back, entry by entry, as `-o json` objects (fields with bytes as arrays). */
  readBack(): Record<string, unknown>[] {
    const r = spawnSync('journalctl', [`--directory=${this.dir}`, '--merge', '--all', '-o', 'json', '--no-pager'], { encoding: 'utf8', maxBuffer: 1 << 30 });
    if (r.status !== 0) throw new Error(`journalctl failed: ${r.stderr}`);
    return r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** `__CURSOR` of every entry, oldest first. */
  cursors(): string[] {
    return this.readBack().map((e) => e.__CURSOR as string);
  }

  fileNames(): string[] {
    return readdirSync(this.dir).filter((n) => n.endsWith('.journal')).sort();
  }
}
