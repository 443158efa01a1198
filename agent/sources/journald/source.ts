import { statSync } from 'node:fs';
import { RateLimitedLog } from '../../log.ts';
import type { Source } from '../source.ts';
import type { SourceContext } from '../source.ts';
import { journalDirectories, type JournaldConfig } from './config.ts';
import { CursorStore, type CursorState } from './cursor_store.ts';
import { DirectoryReader } from './directory_reader.ts';
import { JournalRecordMapper } from './record.ts';

/** journalctl writes in pipe-sized pieces; a window under about 1 MiB would stop it every few entries. */
const JOURNAL_MIN_WINDOW_BYTES = 1024 * 1024;

/** How often missing folders are looked for again, and folders checked for new subfolders. */
export const DIRECTORY_CHECK_MS = 5000;

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Source `journald`: the node's journal through `journalctl --follow -o export`, one journalctl
 * per journal folder. A folder's cursor is checkpointed once every output accepted the batch that
 * holds its entry; restarts (of journalctl or of the agent) resume after it.
 */
export class JournaldSource implements Source {
  readonly name: string;
  private readonly config: JournaldConfig;
  private readonly ctx: SourceContext;
  private readonly store: CursorStore;
  private readonly problems: RateLimitedLog;
  /** The last problem each folder's reader reported (shown by /readyz while its journalctl is not running). */
  private readonly lastProblem = new Map<string, string>();
  private readonly mapper: JournalRecordMapper;
  /** The filters in force, as stored beside each cursor. */
  private readonly filter: string;
  private readonly labels: { source: string };

  private state: CursorState = {};
  private readonly readers = new Map<string, DirectoryReader>();
  private readonly missing = new Set<string>();
  private timers: NodeJS.Timeout[] = [];
  private started = false;
  private stopping = false;
  /** The checkpoint existed but (part of it) could not be used: folders without an entry are read whole. */
  private checkpointLost = false;
  /** The checkpoint changed since the last fsync'd write. */
  private durableDirty = false;

  constructor(name: string, config: JournaldConfig, ctx: SourceContext) {
    this.name = name;
    this.config = config;
    this.ctx = ctx;
    this.labels = { source: name };
    this.store = new CursorStore(ctx.dataDir, name);
    // Problems that keep the journal from being read are errors, logged once a minute per folder.
    this.problems = new RateLimitedLog({ ...ctx.log, warn: (m) => ctx.log.error(m) });
    this.mapper = new JournalRecordMapper({ nodeName: ctx.nodeName, excludeFields: config.exclude_fields });
    this.filter = JSON.stringify({ units: [...config.units].sort(), priority: config.priority });
    // Present from the start so dashboards can alert on increase() from zero.
    for (const reason of ['not_found', 'exited', 'cursor_gone']) ctx.metrics.sourceRestarts.inc({ ...this.labels, reason }, 0);
  }

  /**
   * Ready while journalctl runs for every configured folder that exists. While it is missing or
   * keeps failing, /readyz says so (a rollout of an image without journalctl stops there); the
   * agent and its other sources go on.
   */
  get ready(): boolean {
    return this.notReadyReason === undefined;
  }

  /** Why /readyz says not ready: the folder whose journalctl is not running, and its last problem. */
  get notReadyReason(): string | undefined {
    if (!this.started) return 'starting';
    if (this.stopping) return 'stopping';
    for (const [dir, reader] of this.readers) {
      if (!reader.running) return `journalctl is not running for ${dir}${this.lastProblem.has(dir) ? `: ${this.lastProblem.get(dir)}` : ''}`;
    }
    return undefined;
  }

  async start(): Promise<void> {
    const { state, problem, unreadable, dropped } = this.store.load();
    if (unreadable) {
      // Not a first start: read_from end would skip what was written while the agent was down.
      this.checkpointLost = true;
      this.ctx.metrics.checkpointInvalid.inc({ ...this.labels, reason: 'unreadable' });
      this.ctx.log.warn(`source ${this.name}: ${problem}; not a first start: every journal folder is read from its oldest entry (records may repeat)`);
    }
    if (dropped.length > 0) {
      this.checkpointLost = true;
      this.ctx.metrics.checkpointInvalid.inc({ ...this.labels, reason: 'bad_entry' }, dropped.length);
      this.ctx.log.warn(`source ${this.name}: checkpoint ${this.store.path}: dropped invalid entries (${dropped.slice(0, 5).join('; ')}); those folders are read from their oldest entry (records may repeat)`);
    }
    const dirs = journalDirectories(this.config);
    for (const dir of dirs) if (state[dir]) this.state[dir] = state[dir];
    for (const dir of dirs) {
      if (isDirectory(dir)) await this.open(dir);
      else {
        this.missing.add(dir);
        this.ctx.log.info(`source ${this.name}: journal folder ${dir} does not exist; skipped (looked for again every ${DIRECTORY_CHECK_MS / 1000} s)`);
      }
    }
    this.timers.push(
      setInterval(() => this.checkDirectories(), DIRECTORY_CHECK_MS),
      setInterval(() => {
        this.save(true);
        this.ctx.metrics.unackedBytes.set(this.labels, this.unackedBytes());
      }, this.config.checkpoint_interval),
    );
    for (const t of this.timers) t.unref();
    this.started = true;
  }

  async stopReading(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await Promise.all([...this.readers.values()].map((r) => r.stop()));
  }

  async settled(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.unackedBytes() > 0) {
      if (Date.now() >= until) return false;
      await new Promise((r) => setTimeout(r, 10));
    }
    return true;
  }

  async close(): Promise<void> {
    this.save(true, true);
    this.ctx.metrics.unackedBytes.set(this.labels, this.unackedBytes());
  }

  private unackedBytes(): number {
    let n = 0;
    for (const r of this.readers.values()) n += r.unackedBytes;
    return n;
  }

  /** `appeared`: the folder was created after the start; like a new file, it is read from its start. */
  private async open(dir: string, appeared = false): Promise<void> {
    const { config, ctx } = this;
    let cp = this.state[dir];
    if (!cp && config.read_from === 'end' && !appeared && !this.checkpointLost) {
      // Remembered, so that entries written before a first checkpoint are not skipped after a restart.
      cp = this.state[dir] = { since: Date.now() * 1000, filter: this.filter };
      this.save(true);
    }
    if (cp?.cursor !== undefined && cp.filter !== this.filter) {
      ctx.log.info(`source ${this.name}: units or priority changed since the checkpoint of ${dir}; resuming after it with the new filters`);
    }
    const reader = new DirectoryReader({
      source: this.name,
      directory: dir,
      cursor: cp?.cursor,
      cursorFilterMatches: cp?.filter === this.filter,
      sinceMicros: cp?.cursor === undefined ? cp?.since : undefined,
      units: config.units,
      priority: config.priority,
      journalctl: config.journalctl,
      maxFieldBytes: config.max_field_bytes,
      maxUnackedBytes: () => config.max_unacked_bytes ?? Math.max(JOURNAL_MIN_WINDOW_BYTES, ctx.unackedWindow()),
      mapper: this.mapper,
      emitter: ctx.emitter,
      log: ctx.log,
      problem: (key, message) => {
        this.lastProblem.set(dir, message);
        this.problems.warn(key, message);
      },
      events: {
        committed: (cursor) => this.committed(dir, cursor),
        restarted: (reason) => ctx.metrics.sourceRestarts.inc({ ...this.labels, reason }),
        bytesRead: (n) => ctx.metrics.sourceBytes.inc(this.labels, n),
        parseError: (message) => {
          ctx.metrics.parseErrors.inc({ ...this.labels, parser: 'journal_export' });
          this.problems.warn(`parse:${dir}`, `source ${this.name}: ${dir}: ${message}`);
        },
        truncated: () => ctx.metrics.truncatedRecords.inc(this.labels),
      },
    });
    this.readers.set(dir, reader);
    await reader.start();
  }

  private committed(dir: string, cursor: string | undefined): void {
    if (cursor === undefined) delete this.state[dir];
    else this.state[dir] = { cursor, filter: this.filter };
    this.ctx.metrics.unackedBytes.set(this.labels, this.unackedBytes());
    // Saved (without fsync) before the output takes its next batch: a crash repeats at most about one batch.
    this.save(false);
  }

  private checkDirectories(): void {
    if (this.stopping) return;
    for (const dir of [...this.missing]) {
      if (!isDirectory(dir)) continue;
      this.missing.delete(dir);
      this.ctx.log.info(`source ${this.name}: journal folder ${dir} appeared; reading it`);
      void this.open(dir, true);
    }
    for (const reader of this.readers.values()) reader.check();
  }

  private save(durable: boolean, force = false): void {
    if (durable && !this.durableDirty && !force) return;
    try {
      this.store.save(this.state, durable);
      this.durableDirty = !durable;
      this.ctx.metrics.checkpointWrites.inc(this.labels);
    } catch (err) {
      this.durableDirty = true;
      this.ctx.metrics.checkpointErrors.inc(this.labels);
      this.problems.warn('checkpoint', `source ${this.name}: cannot write checkpoint ${this.store.path}: ${(err as Error).message}; reading goes on, retrying`);
    }
  }
}
