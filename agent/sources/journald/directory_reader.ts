import { readdirSync } from 'node:fs';
import type { LogRecord } from '../../record.ts';
import type { Emitter } from '../../pipeline.ts';
import type { Logger } from '../../log.ts';
import { formatUnixMillis } from '../../../parsers/timestamp.ts';
import { AckQueue } from './ack_queue.ts';
import { Backoff } from '../../backoff.ts';
import { ExportParser, type ExportEntry } from './export_reader.ts';
import { JournalctlProcess, journalctlArgs, type JournalctlExit } from './journalctl_process.ts';
import { formatUnixMicros, type JournalRecordMapper } from './record.ts';

/** A batch is handed over at this many entries or bytes, or when no entry came for BATCH_IDLE_MS. */
export const BATCH_MAX_ENTRIES = 1000;
export const BATCH_MAX_BYTES = 256 * 1024;
export const BATCH_IDLE_MS = 50;
/** Restart delays after journalctl failed: 1 s doubling to 60 s (±20%); reset after a 30 s run. */
const RESTART_INITIAL_MS = 1000;
const RESTART_MAX_MS = 60_000;
const STABLE_RUN_MS = 30_000;

/** Why journalctl was (re)started or the read position moved: the `reason` label of source_restarts_total. */
export type RestartReason = 'not_found' | 'spawn_error' | 'exited' | 'cursor_invalid' | 'cursor_gone' | 'new_subdirectory';

export interface DirectoryReaderOptions {
  source: string;
  directory: string;
  /** Resume at this entry (the checkpoint); its entry is not emitted again. */
  cursor: string | undefined;
  /** The checkpoint's cursor was taken with the current filters (see DirectoryCheckpoint.filter). */
  cursorFilterMatches: boolean;
  /** Without a cursor: read entries from this time on (µs since the epoch), else from the oldest. */
  sinceMicros: number | undefined;
  units: readonly string[];
  priority: number;
  journalctl: string;
  maxFieldBytes: number;
  /** Asked each time: a reload may change the outputs the window is chosen for. */
  maxUnackedBytes: () => number;
  mapper: JournalRecordMapper;
  emitter: Emitter;
  log: Logger;
  /** Rate-limited by key; logs at error level. */
  problem: (key: string, message: string) => void;
  events: {
    /** Every output accepted the entries up to `cursor`; undefined: forget the checkpoint (it was invalid). */
    committed(cursor: string | undefined): void;
    restarted(reason: RestartReason): void;
    bytesRead(n: number): void;
    parseError(message: string): void;
    truncated(): void;
  };
}

/** `t=` of a cursor (hex µs since the epoch) as RFC 3339, for log lines. */
function cursorTime(cursor: string): string | undefined {
  const m = /(?:^|;)t=([0-9a-f]+)/.exec(cursor);
  return m ? formatUnixMicros(String(parseInt(m[1]!, 16))) : undefined;
}

function firstValue(entry: ExportEntry, field: string): string | undefined {
  const v = entry.fields.get(field);
  return typeof v === 'string' ? v : v?.[0];
}

/**
 * One journal folder read by one `journalctl --follow -o export`: parse its stdout, batch entries
 * into records, hand them to the pipeline, pause journalctl while too much is unacknowledged, and
 * restart it (after the last entry handed over) when it fails.
 */
export class DirectoryReader {
  readonly directory: string;
  private readonly opts: DirectoryReaderOptions;
  private readonly parser: ExportParser;
  private readonly acks: AckQueue;
  private readonly backoff = new Backoff(RESTART_INITIAL_MS, RESTART_MAX_MS);

  private proc: JournalctlProcess | undefined;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private spawnedAt = 0;
  private subdirectories = '';
  /** Set while a restart we asked for (not a failure) is under way. */
  private restarting: RestartReason | undefined;

  /** Cursor of the last entry handed to the pipeline: a restart resumes after it. */
  private handedOver: string | undefined;
  private handedOverFilterMatches: boolean;
  private sinceMicros: number | undefined;
  /** The cursor the running journalctl was started at, until its first entry shows whether it still exists. */
  private startCursor: string | undefined;
  private entriesThisRun = 0;

  private batch: LogRecord[] = [];
  private batchBytes = 0;
  private batchCursor: string | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private waitingForRoom = 0;
  private readonly entries: ExportEntry[] = [];

  constructor(opts: DirectoryReaderOptions) {
    this.opts = opts;
    this.directory = opts.directory;
    this.handedOver = opts.cursor;
    this.handedOverFilterMatches = opts.cursorFilterMatches;
    this.sinceMicros = opts.sinceMicros;
    this.parser = new ExportParser({ maxFieldBytes: opts.maxFieldBytes, onError: (m) => opts.events.parseError(m) });
    this.acks = new AckQueue((cursor) => opts.events.committed(cursor));
  }

  /** journalctl runs (it may be paused by backpressure). */
  get running(): boolean {
    return this.proc?.running ?? false;
  }

  get unackedBytes(): number {
    return this.acks.unackedBytes;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Resolves once the first journalctl started, or failed to (a restart is then scheduled). */
  async start(): Promise<void> {
    await this.spawn();
  }

  /** Hands over what was read, stops journalctl; unread entries are read again from the checkpoint. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.flush();
    await this.proc?.stop();
  }

  /**
   * Called every few seconds: journalctl -D does not notice a subfolder created after it started
   * (journald makes `<dir>/<machine-id>/` when persistence is switched on), so restart it then.
   */
  check(): void {
    if (this.stopping || !this.proc?.running || this.restarting) return;
    const now = this.listSubdirectories();
    if (now === this.subdirectories) return;
    this.opts.log.info(`source ${this.opts.source}: ${this.directory} has a new subfolder; restarting journalctl to read it`);
    this.restarting = 'new_subdirectory';
    void this.proc.stop();
  }

  private listSubdirectories(): string {
    try {
      return readdirSync(this.directory, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
        .sort()
        .join('/');
    } catch {
      return '';
    }
  }

  private async spawn(): Promise<void> {
    if (this.stopping) return;
    this.parser.reset();
    this.startCursor = this.handedOver;
    this.entriesThisRun = 0;
    this.subdirectories = this.listSubdirectories();
    this.spawnedAt = Date.now();
    const { opts } = this;
    const args = journalctlArgs({
      directory: this.directory,
      cursor: this.handedOver,
      sinceMicros: this.handedOver === undefined ? this.sinceMicros : undefined,
      units: opts.units,
      priority: opts.priority,
    });
    opts.log.debug(`source ${opts.source}: ${opts.journalctl} ${args.join(' ')}`);
    const proc = new JournalctlProcess(
      opts.journalctl,
      args,
      (chunk) => this.onData(proc, chunk),
      (exit) => this.onExit(proc, exit),
    );
    this.proc = proc;
    if (await proc.started) {
      opts.log.info(
        `source ${opts.source}: reading ${this.directory} with journalctl (pid ${proc.pid}) ` +
          (this.handedOver ? 'after its checkpoint' : this.sinceMicros !== undefined ? `from ${formatUnixMicros(String(this.sinceMicros))} on` : 'from its oldest entry'),
      );
    }
  }

  private onData(proc: JournalctlProcess, chunk: Buffer): void {
    if (proc !== this.proc || this.stopping) return;
    this.opts.events.bytesRead(chunk.length);
    const entries = this.entries;
    this.parser.push(chunk, entries);
    if (entries.length === 0) return;
    const observed = formatUnixMillis(Date.now());
    for (const entry of entries) this.onEntry(entry, observed);
    entries.length = 0;
    if (this.batch.length > 0 && this.flushTimer === undefined) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        this.flush();
      }, BATCH_IDLE_MS);
    }
    this.applyBackpressure();
  }

  private onEntry(entry: ExportEntry, observed: string): void {
    const cursor = firstValue(entry, '__CURSOR');
    this.entriesThisRun++;
    if (this.startCursor !== undefined) {
      const expected = this.startCursor;
      this.startCursor = undefined;
      // `--cursor` prints the entry it starts at: already delivered.
      if (cursor === expected) return;
      if (this.handedOverFilterMatches) this.cursorGone(expected, entry);
    }
    if (entry.truncated) this.opts.events.truncated();
    this.batch.push(this.opts.mapper.map(entry, observed));
    this.batchBytes += entry.bytes;
    if (cursor !== undefined) this.batchCursor = cursor;
    if (this.batch.length >= BATCH_MAX_ENTRIES || this.batchBytes >= BATCH_MAX_BYTES) this.flush();
  }

  /** The entry at the cursor we resumed from is no longer in the journal: journalctl started at the nearest one after it. */
  private cursorGone(cursor: string, first: ExportEntry): void {
    const from = cursorTime(cursor) ?? 'the checkpoint';
    const to = formatUnixMicros(firstValue(first, '__REALTIME_TIMESTAMP') ?? '') ?? 'the oldest entry left';
    this.opts.events.restarted('cursor_gone');
    this.opts.log.warn(
      `source ${this.opts.source}: the entry of the checkpoint in ${this.directory} is no longer in the journal ` +
        `(vacuumed or its file deleted before it was read further); resuming at the nearest entry after it: ` +
        `entries between ${from} and ${to} that were removed are lost`,
    );
  }

  /** Hands the batch to the pipeline. */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.batch.length === 0) return;
    const records = this.batch;
    const bytes = this.batchBytes;
    const cursor = this.batchCursor;
    this.batch = [];
    this.batchBytes = 0;
    if (cursor === undefined) {
      // Cannot happen with journalctl (every entry has __CURSOR); nothing to checkpoint then.
      void this.opts.emitter.emit(records, bytes, () => {});
      return;
    }
    this.handedOver = cursor;
    this.handedOverFilterMatches = true;
    const accepted = this.acks.track(cursor, bytes);
    this.waitingForRoom++;
    this.opts.emitter
      .emit(records, bytes, () => {
        accepted();
        this.applyBackpressure();
      })
      .then(() => {
        this.waitingForRoom--;
        this.applyBackpressure();
      });
  }

  /** Pause journalctl's stdout while outputs are full or too much is unacknowledged. */
  private applyBackpressure(): void {
    const proc = this.proc;
    if (!proc || this.stopping) return;
    if (this.waitingForRoom > 0 || this.acks.unackedBytes >= this.opts.maxUnackedBytes()) proc.pause();
    else proc.resume();
  }

  private onExit(proc: JournalctlProcess, exit: JournalctlExit): void {
    if (proc !== this.proc) return;
    // Complete entries read before it ended are handed over; a torn last one is read again.
    this.flush();
    if (this.stopping) return;
    const { opts } = this;
    const requested = this.restarting;
    this.restarting = undefined;
    if (requested) {
      opts.events.restarted(requested);
      void this.spawn();
      return;
    }
    const ranMs = Date.now() - this.spawnedAt;
    if (ranMs >= STABLE_RUN_MS) this.backoff.reset();

    if (exit.spawnError) {
      const notFound = exit.spawnError.code === 'ENOENT';
      const delay = this.backoff.next();
      opts.events.restarted(notFound ? 'not_found' : 'spawn_error');
      opts.problem(
        `spawn:${this.directory}`,
        notFound
          ? `source ${opts.source}: journalctl not found (${JSON.stringify(opts.journalctl)} is not installed or not in PATH): the journal in ${this.directory} is not read. ` +
              `Install journalctl (systemd) in the image or set \`journalctl:\` to its path; trying again in ${Math.round(delay / 1000)} s`
          : `source ${opts.source}: cannot start ${opts.journalctl} for ${this.directory}: ${exit.spawnError.message}; trying again in ${Math.round(delay / 1000)} s`,
      );
      this.scheduleRestart(delay);
      return;
    }

    const cursorRejected = this.entriesThisRun === 0 && this.handedOver !== undefined && exit.code === 1 && /seek to cursor/i.test(exit.stderr);
    if (cursorRejected) {
      opts.events.restarted('cursor_invalid');
      opts.log.error(
        `source ${opts.source}: journalctl rejected the checkpoint cursor for ${this.directory} (${exit.stderr.split('\n').pop()}); ` +
          `dropping it and reading the journal from its oldest entry (entries already delivered are sent again)`,
      );
      this.handedOver = undefined;
      this.handedOverFilterMatches = false;
      this.sinceMicros = undefined;
      opts.events.committed(undefined);
      void this.spawn();
      return;
    }

    const delay = this.backoff.next();
    opts.events.restarted('exited');
    const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
    opts.problem(
      `exit:${this.directory}`,
      `source ${opts.source}: journalctl for ${this.directory} ${how} after ${Math.round(ranMs / 1000)} s` +
        `${exit.stderr ? ` (stderr: ${exit.stderr.slice(-500).replace(/\n/g, ' | ')})` : ''}; ` +
        `restarting in ${Math.round(delay / 1000)} s after the last entry read`,
    );
    this.scheduleRestart(delay);
  }

  private scheduleRestart(delay: number): void {
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      void this.spawn();
    }, delay);
    this.restartTimer.unref();
  }
}
