import { fstatSync, openSync, realpathSync, statSync, closeSync, type Stats } from 'node:fs';
import { dirname, join, matchesGlob } from 'node:path';
import type { ReadPace } from '../../pipeline.ts';
import type { Attributes, LogRecord } from '../../record.ts';
import { RateLimitedLog } from '../../log.ts';
import type { Source, SourceContext } from '../source.ts';
import { formatUnixMillis } from '../../../parsers/timestamp.ts';
import { compileRegex } from '../../../parsers/regex_body.ts';
import type { MultilineOptions } from '../../../parsers/multiline.ts';
import type { ContainerLogsConfig } from './config.ts';
import { CheckpointStore, type FileCheckpoint } from './checkpoint_store.ts';
import { ContainerDecoder, DOCKER_PHYSICAL_LINE_CAP } from './container_decoder.ts';
import { discover, globBase, type DiscoveredFile } from './discovery.ts';
import { LayoutCheck } from './layout_check.ts';
import { FolderListings, liveBaseOf, restartOf, type FolderFile } from './folder_listing.ts';
import { TAIL_BYTES, fingerprint, fingerprintMatches, identityKey, tailMatches } from './file_identity.ts';
import { resourceFromPaths } from './path_metadata.ts';
import { ReadPacing } from './read_pacing.ts';
import { TailedFile, type RewriteReason } from './tailed_file.ts';
import { FolderWatcher } from './watcher.ts';

/**
 * Acknowledged bytes after which the checkpoint is rewritten (without fsync; the timer fsyncs):
 * the bound on what a kill -9 repeats, traded against a file rewrite per this many bytes.
 */
export const CHECKPOINT_EVERY_BYTES = 1024 * 1024;

/** File times and the agent's clock can differ a little (and writes land while it starts). */
const MTIME_SLACK_MS = 5000;
/** Files the first scan opens between two turns of the event loop. */
const FIRST_SCAN_SLICE = 500;
/** How often a long first scan logs how far it is. */
const PROGRESS_EVERY_MS = 2000;

/** Why recoverFolder reads a file it opens, for its log line. */
interface RecoveryReasons {
  /** A file the agent knew (a checkpointed one no glob names now). */
  known(rotated: boolean): string;
  /** A file of a known instance after its last known file. */
  after(base: string): string;
  /** A file of a restart the agent knows nothing of. */
  restart(restart: number): string;
}

/** Adds `path`'s live base to its folder's set. */
function addBase(byDir: Map<string, Set<string>>, path: string): void {
  const dir = dirname(path);
  const bases = byDir.get(dir);
  if (bases) bases.add(liveBaseOf(path));
  else byDir.set(dir, new Set([liveBaseOf(path)]));
}

/**
 * Source `container_logs`: finds container log files, reads them in large chunks, decodes lines to
 * records, and moves each file's checkpoint as outputs acknowledge. Rotation keeps the old
 * descriptor until that file is drained; its successor waits for it, so order holds per container.
 */
export class ContainerLogsSource implements Source {
  readonly name: string;
  private readonly config: ContainerLogsConfig;
  private readonly ctx: SourceContext;
  private readonly store: CheckpointStore;
  private readonly warnings: RateLimitedLog;
  private readonly watcher: FolderWatcher;
  private readonly layout: LayoutCheck;
  /** Problems reported per path and reason (counted once, not per rescan), with the scan that last saw them. */
  private readonly reported = new Map<string, { scan: number; fromScan: boolean }>();
  private scans = 0;
  /** Folder listings of the scan or recovery in progress (one per folder per pass). */
  private listings = new FolderListings();
  /** Files the first scan has looked at, and found: /readyz says how far it is. */
  private firstScan: { done: number; total: number } | undefined = { done: 0, total: 0 };

  private readonly files = new Map<string, TailedFile>();
  /** The file each real path names now. */
  private readonly byPath = new Map<string, TailedFile>();
  private readonly dirty = new Set<TailedFile>();
  /** Files a throttle downstream asked to read later (`when_exceeded: pause`). */
  private readonly pacing = new ReadPacing<TailedFile>((file) => {
    this.dirty.add(file);
    this.kick();
  });
  private restore = new Map<string, FileCheckpoint>();
  private restoredAt: number | undefined;
  /** Set when checkpoint entries were lost: files found at start without one may repeat what was sent. */
  private rereadUnknown: 'checkpoint_unreadable' | 'checkpoint_entry_dropped' | undefined;

  private readonly buf: Buffer;
  private unackedBytes = 0;
  /** Batches emitted and not yet accepted; some carry no bytes (flushed groups and joins). */
  private unackedBatches = 0;
  private startedAt = Date.now();
  private ackedSinceSave = 0;
  private checkpointDirty = false;
  private timers: NodeJS.Timeout[] = [];
  private wake: (() => void) | undefined;
  private loopDone: Promise<void> | undefined;
  private stopping = false;
  private started = false;
  private scanQueued = false;
  private readonly labels: { source: string };
  private readonly bytesRead: { inc(n: number): void };
  /** Options of every file's grouper (each file gets its own); undefined when multiline is off. */
  private readonly multiline: MultilineOptions | undefined;

  constructor(name: string, config: ContainerLogsConfig, ctx: SourceContext) {
    this.name = name;
    this.config = config;
    this.ctx = ctx;
    this.labels = { source: name };
    this.bytesRead = ctx.metrics.sourceBytes.labels(this.labels);
    this.store = new CheckpointStore(ctx.dataDir, name);
    this.layout = new LayoutCheck(config.allowed_roots);
    this.multiline = this.multilineOptions();
    // Every file gets a decoder made from these settings: making one now finds what is wrong with
    // them (a multiline or line bound) while the source is built, where start and a reload catch it.
    this.decoderFor('', {});
    this.warnings = new RateLimitedLog(ctx.log);
    // TAIL_BYTES more: every read also takes the bytes just before its offset (TailedFile.read).
    this.buf = Buffer.allocUnsafe(Math.max(config.read_chunk, config.max_line_bytes, DOCKER_PHYSICAL_LINE_CAP) + 1 + TAIL_BYTES);
    this.watcher = new FolderWatcher(
      (event, dir, file) => this.onFsEvent(event, dir, file),
      (dir, err) => this.warnings.warn(`watch:${dir}`, `source ${name}: cannot watch ${dir} (${err.message}); polling it every ${config.poll_interval} ms`),
    );
  }

  /** Not ready until the first scan has looked at every file (a large node takes seconds). */
  get ready(): boolean {
    return this.started && !this.stopping;
  }

  get notReadyReason(): string | undefined {
    if (this.stopping) return 'stopping';
    const first = this.firstScan;
    if (first) return first.total === 0 ? 'first scan: listing files' : `first scan: ${first.done} of ${first.total} files`;
    return this.started ? undefined : 'not started';
  }

  async start(): Promise<void> {
    this.startedAt = Date.now();
    this.loadCheckpoint();
    await this.scanFirst();
    if (this.stopping) return;
    this.listings = new FolderListings();
    this.recoverAfterRestart();
    this.restore.clear();
    this.firstScan = undefined;
    this.rereadUnknown = undefined;
    if (this.config.inotify) for (const pattern of this.config.include) this.watcher.watch(globBase(pattern));
    this.timers.push(
      setInterval(() => this.scan(false), this.config.glob_interval),
      setInterval(() => this.poll(), this.config.poll_interval),
      setInterval(() => this.saveCheckpoint(true), this.config.checkpoint_interval),
    );
    if (this.config.multiline !== null) {
      // Often enough that a group leaves within about a quarter of its timeout after going quiet.
      const every = Math.min(1000, Math.max(20, Math.floor(this.config.multiline.timeout / 4)));
      this.timers.push(setInterval(() => this.flushIdleGroups(), every));
    }
    for (const t of this.timers) t.unref();
    this.started = true;
    this.ctx.log.info(`source ${this.name}: tailing ${this.files.size} files (${this.config.include.join(', ')})`);
    this.loopDone = this.readLoop();
  }

  async stopReading(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.watcher.close();
    this.pacing.clear();
    this.wake?.();
    await this.loopDone;
    // P chunks still waiting for their F are not emitted: the checkpoint stays before them, so the
    // next start (or the source that replaces this one on reload) joins them whole. Multiline groups
    // are: a clean stop delivers what was logged, and the checkpoint moves past it once accepted.
    const observed = formatUnixMillis(Date.now());
    for (const file of this.files.values()) {
      if (!file.decoder.groupsHeld) continue;
      this.flushGroups(file, observed, 'shutdown');
    }
  }

  private flushGroups(file: TailedFile, observed: string, reason: 'end_of_file' | 'shutdown'): void {
    const out: LogRecord[] = [];
    file.decoder.flushGroups(observed, out, reason);
    void this.emit(file, out, 0);
  }

  async settled(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.unackedBatches > 0) {
      if (Date.now() >= until) return false;
      await new Promise((r) => setTimeout(r, 10));
    }
    return true;
  }

  async close(): Promise<void> {
    // Stopped during the first scan: nothing was read, and a checkpoint of the files scanned so far
    // would forget the others' offsets. The one on disk stays.
    if (this.firstScan === undefined) this.saveCheckpoint(true, true);
    for (const file of this.files.values()) file.close();
    this.ctx.metrics.openFiles.set(this.labels, 0);
  }

  // --- discovery ---------------------------------------------------------------------------

  /**
   * The checkpoint is untrusted: bad entries are dropped and a file that cannot be used at all
   * still means "not a first start" (with read_from: end too): files without a usable entry are
   * read from their start, and what that may repeat is counted.
   */
  private loadCheckpoint(): void {
    const loaded = this.store.load();
    const { metrics, log } = this.ctx;
    if (loaded.status === 'missing') return;
    if (loaded.status === 'unreadable') {
      metrics.checkpointInvalid.inc({ ...this.labels, reason: 'unreadable' });
      log.warn(`source ${this.name}: ${loaded.problem}; not a first start: every file is read from its start (records may repeat)`);
      // Rotated copies written since it was last replaced are read too.
      this.restoredAt = loaded.mtimeMs ?? 0;
      this.rereadUnknown = 'checkpoint_unreadable';
      return;
    }
    if (loaded.dropped.length > 0) {
      metrics.checkpointInvalid.inc({ ...this.labels, reason: 'bad_entry' }, loaded.dropped.length);
      const shown = loaded.dropped.slice(0, 5).join('; ');
      log.warn(
        `source ${this.name}: checkpoint ${this.store.path}: dropped ${loaded.dropped.length} invalid entries (${shown}${loaded.dropped.length > 5 ? '; ...' : ''}); their files are read from their start (records may repeat)`,
      );
      this.rereadUnknown = 'checkpoint_entry_dropped';
    }
    this.restoredAt = loaded.state.writtenAt;
    for (const cp of loaded.state.files) {
      // Its path is untrusted too: rotated copies are looked for beside it, orphans opened by it.
      const refused = this.layout.problem(cp.path, cp.path);
      if (refused) {
        metrics.checkpointInvalid.inc({ ...this.labels, reason: 'bad_entry' });
        log.warn(`source ${this.name}: checkpoint ${this.store.path}: dropped the entry of ${cp.path}: ${refused.message}`);
        continue;
      }
      this.restore.set(`${cp.dev}:${cp.ino}`, cp);
    }
  }

  /**
   * The first scan, in slices that give the event loop back (so /healthz answers while a large node
   * is scanned), with its progress logged every few seconds.
   */
  private async scanFirst(): Promise<void> {
    const began = Date.now();
    const { scan, files } = this.discover();
    const seenLinks = new Set<string>();
    const first = this.firstScan!;
    first.total = files.length;
    let lastLog = began;
    for (let i = 0; i < files.length; i += FIRST_SCAN_SLICE) {
      for (const found of files.slice(i, i + FIRST_SCAN_SLICE)) this.consider(found, true, seenLinks);
      first.done = Math.min(files.length, i + FIRST_SCAN_SLICE);
      if (this.stopping) return;
      if (first.done < files.length) {
        const now = Date.now();
        if (now - lastLog >= PROGRESS_EVERY_MS) {
          lastLog = now;
          this.ctx.log.info(`source ${this.name}: first scan: ${first.done} of ${files.length} files (${((now - began) / 1000).toFixed(1)} s)`);
        }
        await new Promise((r) => setImmediate(r));
      }
    }
    this.afterScan(scan, seenLinks);
    if (Date.now() - began >= PROGRESS_EVERY_MS) {
      this.ctx.log.info(`source ${this.name}: first scan: ${files.length} files in ${((Date.now() - began) / 1000).toFixed(1)} s`);
    }
  }

  private scan(initial: boolean): void {
    if (this.stopping) return;
    const { scan, files } = this.discover();
    const seenLinks = new Set<string>();
    for (const found of files) this.consider(found, initial, seenLinks);
    this.afterScan(scan, seenLinks);
  }

  /** What the globs name now; refusals reported. Starts a scan pass (fresh folder listings). */
  private discover(): { scan: number; files: DiscoveredFile[] } {
    const scan = ++this.scans;
    this.listings = new FolderListings();
    const { files, problems } = discover(this.config.include, this.config.exclude, this.layout);
    for (const p of problems) this.report(p.path, p.reason, `skipping ${p.path}: ${p.message}`, true);
    return { scan, files };
  }

  /** One file a scan found: tracked already, a rotation's successor, or new. */
  private consider(found: DiscoveredFile, initial: boolean, seenLinks: Set<string>): void {
    seenLinks.add(found.linkPath);
    let st: Stats;
    try {
      st = statSync(found.realPath);
    } catch (err) {
      this.fileProblem(found.realPath, 'unreadable', err as Error, true);
      return;
    }
    if (!st.isFile()) return;
    const key = identityKey(st);
    const known = this.files.get(key);
    if (known) {
      if (known.linkPath === undefined && known.state === 'orphaned' && !known.finished && known.realPath === found.realPath) {
        // Opened beside a file that lost its symlink (recoverBehind) just before kubelet made its
        // own: a glob names it now, so it lives on (not finished when idle, then read again from 0).
        known.state = 'live';
        this.ctx.log.debug(`source ${this.name}: ${found.realPath} has a symlink now (${found.linkPath}); tailing it as a live file`);
      }
      known.linkPath ??= found.linkPath;
      return;
    }
    const prev = this.byPath.get(found.realPath);
    const file = this.open(found.realPath, found.linkPath, st, initial, prev, prev?.decoder.resource);
    if (!file) return;
    if (prev && prev.state === 'live') {
      prev.state = 'rotated';
      prev.atEof = false;
      this.dirty.add(prev);
      this.adoptMissedRotations(prev, file);
    } else if (!prev && !initial) {
      // A container that started and was rotated before we first looked: its first copies are new too.
      const since = this.startedAt - MTIME_SLACK_MS;
      const last = this.trackRotated(dirname(found.realPath), liveBaseOf(found.realPath), undefined, file, (s) => s.mtimeMs >= since);
      if (last) file.predecessor = last;
    }
  }

  private afterScan(scan: number, seenLinks: Set<string>): void {
    // A symlink gone (pod deleted, container garbage-collected): read what is left, then let go.
    const unlinked = new Set<string>();
    for (const file of this.files.values()) {
      if (file.state === 'live' && file.linkPath !== undefined && !seenLinks.has(file.linkPath)) {
        file.state = 'orphaned';
        file.atEof = false;
        this.dirty.add(file);
        unlinked.add(dirname(file.realPath));
      }
    }
    if (unlinked.size > 0) this.recoverBehind(unlinked);
    // A problem gone since (the target appeared, the file became readable) is counted again if it comes back.
    for (const [key, seen] of this.reported) if (seen.fromScan && seen.scan !== scan) this.reported.delete(key);
    this.updateGauges();
    this.kick();
  }

  /**
   * Counts and logs a problem with one path once, not once per rescan or poll (a dangling symlink
   * must not add one a second). `fromScan`: looked at again each scan, forgotten when not seen.
   */
  private report(path: string, reason: string, message: string, fromScan: boolean): void {
    const key = `${reason}\0${path}`;
    const seen = this.reported.get(key);
    if (seen) {
      seen.scan = this.scans;
      return;
    }
    if (this.reported.size >= 100_000) this.reported.clear();
    this.reported.set(key, { scan: this.scans, fromScan });
    this.ctx.metrics.fileErrors.inc({ ...this.labels, reason });
    this.warnings.warn(`${reason}:${path}`, `source ${this.name}: ${message}`);
  }

  private open(
    realPath: string,
    linkPath: string | undefined,
    st: Stats,
    initial: boolean,
    prev: TailedFile | undefined,
    knownResource?: Attributes,
  ): TailedFile | undefined {
    let fd: number;
    try {
      fd = openSync(realPath, 'r');
    } catch (err) {
      this.fileProblem(realPath, (err as NodeJS.ErrnoException).code === 'EACCES' ? 'permission_denied' : 'unreadable', err as Error, true);
      return undefined;
    }
    const fst = fstatSync(fd);
    const key = identityKey(fst);
    if (key !== identityKey(st)) {
      // Replaced between stat and open: the next scan sees the new one.
      closeSync(fd);
      return undefined;
    }
    let offset = 0;
    let resume: FileCheckpoint | undefined;
    const cp = this.restore.get(key);
    if (cp) {
      // The file must still hold what the checkpoint says was read: its first bytes and those just
      // before the offset. Otherwise it was rewritten while the agent was down (copytruncate,
      // maybe refilled past the offset) or the inode was reused: read it whole.
      const mismatch = !fingerprintMatches(fd, cp.fingerprint)
        ? 'its first bytes differ'
        : cp.offset > fst.size
          ? `it shrank to ${fst.size} bytes`
          : cp.tail && !tailMatches(fd, cp.offset, cp.tail)
            ? `the bytes before the offset differ`
            : undefined;
      if (mismatch === undefined) {
        offset = cp.offset;
        if (offset > 0) resume = cp;
      } else if (cp.offset > 0) {
        this.ctx.metrics.fileTruncations.inc({ ...this.labels, reason: 'checkpoint_mismatch' });
        this.ctx.log.info(
          `source ${this.name}: ${realPath} no longer holds what the checkpoint read (${mismatch}; checkpoint at byte ${cp.offset}, file ${fst.size} bytes); reading it from byte 0`,
        );
      }
    } else if (initial && this.restoredAt === undefined && this.config.read_from === 'end') {
      offset = fst.size;
    } else if (initial && this.rereadUnknown && fst.size > 0) {
      this.ctx.metrics.rereadBytes.inc({ ...this.labels, reason: this.rereadUnknown }, fst.size);
    }
    // Rotated copies and successors keep the resource of the container's live file.
    const resource: Attributes = knownResource ?? Object.freeze(resourceFromPaths(linkPath ?? realPath, realPath, this.ctx.nodeName));
    const file = new TailedFile({
      fd,
      dev: fst.dev,
      ino: fst.ino,
      realPath,
      linkPath,
      offset,
      fingerprint: cp && offset > 0 ? cp.fingerprint : fingerprint(fd),
      decoder: this.decoderFor(realPath, resource),
    });
    file.size = fst.size;
    if (resume?.delivered !== undefined && resume.pending) {
      file.decoder.resumeAfter(resume.delivered, resume.pending);
      file.committed = { offset, delivered: resume.delivered, pending: resume.pending };
    }
    if (prev && !prev.finished) file.predecessor = prev;
    this.files.set(key, file);
    this.byPath.set(realPath, file);
    // Over the descriptor cap: track it closed; nextFile reopens it by path when there is room.
    if (!this.makeRoom(file)) file.close();
    if (this.config.inotify) this.watcher.watch(dirname(realPath));
    this.dirty.add(file);
    this.checkpointDirty = true;
    return file;
  }

  private multilineOptions(): MultilineOptions | undefined {
    const ml = this.config.multiline;
    if (ml === null) return undefined;
    const groups = this.ctx.metrics.multilineGroups;
    const source = this.name;
    return {
      mode: ml.mode,
      // The schema checked it; compiled here once for every file's grouper.
      startPattern: ml.start_pattern === undefined ? undefined : compileRegex(ml.start_pattern, `sources.${source}.multiline.start_pattern`),
      maxLines: ml.max_lines,
      maxBytes: ml.max_bytes,
      onGroup: (reason) => groups.inc({ source, reason }),
    };
  }

  private decoderFor(path: string, resource: Attributes): ContainerDecoder {
    const { metrics } = this.ctx;
    const labels = this.labels;
    return new ContainerDecoder({
      format: this.config.format,
      maxLineBytes: this.config.max_line_bytes,
      multiline: this.multiline,
      resource,
      path,
      events: {
        parseError: (parser, message) => {
          metrics.parseErrors.inc({ ...labels, parser });
          this.warnings.warn(`parse:${path}`, `source ${this.name}: ${path}: ${message}`);
        },
        truncated: () => metrics.truncatedRecords.inc(labels),
        emptyLine: () => metrics.droppedRecords.inc({ component: this.name, reason: 'empty_line' }),
      },
    });
  }

  /**
   * After a restart, in every folder a checkpointed file lived in (recoverFolder): the checkpointed
   * files no glob names any more (rotated, or their symlink deleted with the pod while the agent was
   * down) resume at their offsets, found by inode; what was made after them, including restarts of
   * the container the agent never saw, is read from byte 0. In folders no checkpointed file lived in
   * (a pod that appeared while the agent was down, found by a glob), rotated copies written since
   * the checkpoint are read before the live file.
   */
  private recoverAfterRestart(): void {
    const restoredAt = this.restoredAt;
    if (restoredAt === undefined) return;
    const known = new Map<string, Set<string>>();
    for (const cp of this.restore.values()) addBase(known, cp.path);
    const reasons: RecoveryReasons = {
      known: (rotated) => `${rotated ? 'was rotated' : 'lost its symlink'} while the agent was down`,
      after: (base) => `was made after the agent last saw ${base}`,
      restart: (n) => `is restart ${n} of the container, which the checkpoint does not know`,
    };
    const checkpointed = (key: string) => this.restore.has(key);
    // A rotated copy before the last checkpointed file of its instance and not in the checkpoint
    // was read and forgotten, unless it was written since (a checkpoint that lost entries).
    const writtenSince = (st: Stats) => st.mtimeMs >= restoredAt;
    const covered = new Set<string>();
    for (const [dir, bases] of known) {
      for (const base of this.recoverFolder(dir, bases, checkpointed, writtenSince, reasons)) covered.add(join(dir, base));
    }
    // Elsewhere only rotated copies written since the checkpoint: see recoverFolder for why no more.
    for (const file of [...this.files.values()]) {
      const dir = dirname(file.realPath);
      const base = liveBaseOf(file.realPath);
      if (covered.has(join(dir, base))) continue;
      covered.add(join(dir, base));
      const live = this.byPath.get(join(dir, base));
      const last = this.trackRotated(dir, base, undefined, live, (st) => st.mtimeMs >= restoredAt);
      if (live && last) live.predecessor = last;
    }
  }

  /**
   * While running: `dirs` lost their symlinks since the last scan (pod deleted). Anything kubelet
   * made there since that scan (a restart's `<n+1>.log`, a rotation's new file) has no symlink left
   * to be found by: read it after the files the agent tracks.
   */
  private recoverBehind(dirs: ReadonlySet<string>): void {
    const known = new Map<string, Set<string>>();
    const keys = new Set<string>();
    for (const file of this.files.values()) {
      if (!dirs.has(dirname(file.realPath))) continue;
      addBase(known, file.realPath);
      keys.add(file.key);
    }
    const reasons: RecoveryReasons = {
      known: (rotated) => (rotated ? 'was rotated' : 'lost its symlink'), // never: known files are tracked
      after: (base) => `was made after the last scan saw ${base}, and the symlink is gone`,
      restart: (n) => `is restart ${n} of the container, made after the last scan, and the symlink is gone`,
    };
    for (const [dir, bases] of known) this.recoverFolder(dir, bases, (key) => keys.has(key), () => false, reasons);
  }

  /**
   * Reads what a container folder holds beyond the files the agent knows, in kubelet's order (by
   * restart count; within one, rotated copies oldest first, then the live file), each file after
   * the one before it. `bases`: the instances (`<n>.log`) it knows files of; `known`: those files.
   * - Files of a known instance after its last known file were made after the agent last saw it
   *   (a new file at the live path, rotated copies newer than it): none can have been read, so they
   *   are read from byte 0, whatever their times (a file written before the checkpoint by a
   *   container the agent was behind on is as unread as one written after).
   * - Every file of a later instance the agent knows nothing of (a restart: kubelet makes
   *   `<n+1>.log` beside `<n>.log`), with its rotated copies, is read from byte 0: the checkpoint
   *   cannot vouch for any of it, whether it was seen or not before a crash.
   * - Files before a known instance's last known file that it does not know are read when
   *   `earlier` says so.
   * Not read: instances with a lower restart count than every known one, and folders holding no
   * known file (the caller's choice). Those are history: the agent read them to their end and let
   * them go (a deleted pod's files stay on disk for a while; a dead instance's until it is
   * garbage-collected), or they predate what the agent was asked to read (the first start). No entry
   * tells the two apart from files never read, and reading them would send whole pods' logs again
   * on every restart. Returns the live bases it went through.
   */
  private recoverFolder(
    dir: string,
    bases: ReadonlySet<string>,
    known: (key: string) => boolean,
    earlier: (st: Stats) => boolean,
    reasons: RecoveryReasons,
  ): string[] {
    // The folder came from a checkpoint (untrusted) or a tracked file: it must still be a folder of
    // its own, not a symlink leading elsewhere.
    try {
      if (realpathSync.native(dir) !== dir) return [];
    } catch {
      return [];
    }
    let lowest: number | undefined;
    const others: string[] = [];
    for (const base of bases) {
      const n = restartOf(base);
      if (n === undefined) others.push(base); // docker's `<id>-json.log`: one instance per folder
      else if (lowest === undefined || n < lowest) lowest = n;
    }
    const instances: { base: string; restart?: number; files: FolderFile[] }[] = lowest === undefined ? [] : this.listings.instancesFrom(dir, lowest);
    for (const base of others) instances.push({ base, files: this.listings.instance(dir, base) });
    /** The last file of the chain so far, and whether this recovery opened it. */
    let tail: { file: TailedFile; opened: boolean } | undefined;
    for (const { base, restart, files } of instances) {
      const knownInstance = bases.has(base);
      let lastKnown = -1;
      if (knownInstance) files.forEach(({ st }, i) => known(identityKey(st)) && (lastKnown = i));
      // The file a scan last found at the live path, still linked: scans follow this instance. What
      // the listing shows after it was made by a rotation since that scan's glob; the next scan takes
      // it as the successor (consider: the old file marked rotated, the new one waiting for it), or
      // recoverBehind does once the symlink is gone. Opened here, it would be read beside the old
      // file, which would never be marked rotated.
      const holder = this.byPath.get(join(dir, base));
      let until = files.length;
      if (holder?.state === 'live') {
        const at = files.findIndex(({ st }) => identityKey(st) === holder.key);
        until = at >= 0 ? at + 1 : lastKnown + 1;
      }
      let resource: Attributes | undefined;
      for (const [i, { path, st }] of files.entries()) {
        if (i >= until) break;
        const key = identityKey(st);
        let file = this.files.get(key);
        const opened = file === undefined;
        if (file === undefined) {
          const isKnown = known(key);
          if (i < lastKnown && !isKnown && !earlier(st)) continue;
          const rotated = path !== join(dir, base);
          const why = isKnown ? reasons.known(rotated) : !knownInstance && restart !== undefined ? reasons.restart(restart) : i > lastKnown ? reasons.after(base) : 'was rotated since the checkpoint';
          resource ??= this.instanceResource(dir, base);
          file = this.openRecovered(path, st, rotated, resource, why);
          if (!file) continue;
        }
        // Chained only where this recovery opened one of the two: files already tracked keep theirs,
        // and a live file (its container runs) never ends, so nothing waits for it.
        if (tail && (opened || tail.opened) && tail.file !== file && tail.file.state !== 'live' && !file.predecessor) file.predecessor = tail.file;
        tail = { file, opened };
      }
    }
    return instances.map((i) => i.base);
  }

  /**
   * The resource of a container instance's files: its tracked live file's (which has the container
   * id from the symlink's name), else from the path alone (restart count from the file name).
   */
  private instanceResource(dir: string, base: string): Attributes {
    const live = this.byPath.get(join(dir, base));
    if (live?.linkPath !== undefined) return live.decoder.resource;
    const path = join(dir, base);
    return Object.freeze(resourceFromPaths(path, path, this.ctx.nodeName));
  }

  /** A file no glob names, found beside the ones the agent knows; kubelet's layout and `exclude` still apply. */
  private openRecovered(path: string, st: Stats, rotated: boolean, resource: Attributes, why: string): TailedFile | undefined {
    if (this.layout.problem(path, path) || this.config.exclude.some((g) => matchesGlob(path, g))) return undefined;
    const file = this.open(path, undefined, st, false, undefined, resource);
    if (!file) return undefined;
    if (rotated) this.byPath.delete(path);
    file.state = rotated ? 'rotated' : 'orphaned';
    this.ctx.log.info(`source ${this.name}: ${path} ${why}; reading it to its end from byte ${file.readOffset}`);
    return file;
  }

  /**
   * kubelet rotated `prev` and, before we looked again, maybe rotated its successors too: pick up
   * the rotated copies written since we first saw `prev`, in name (time) order, ahead of `next`.
   */
  private adoptMissedRotations(prev: TailedFile, next: TailedFile): void {
    const last = this.trackRotated(dirname(prev.realPath), liveBaseOf(prev.realPath), prev, next, (st) => st.mtimeMs >= prev.firstSeen);
    if (last) next.predecessor = last;
  }

  /** Opens untracked rotated siblings that `wanted` accepts, chained after `first`; returns the last. */
  private trackRotated(
    dir: string,
    base: string,
    first: TailedFile | undefined,
    live: TailedFile | undefined,
    wanted: (st: Stats, key: string) => boolean,
  ): TailedFile | undefined {
    let prev = first;
    for (const { path, st } of this.listings.rotatedSiblings(dir, base)) {
      const key = identityKey(st);
      if (this.files.has(key) || !wanted(st, key)) continue;
      const file = this.open(path, live?.linkPath, st, false, undefined, live?.decoder.resource);
      if (!file) continue;
      this.byPath.delete(path);
      file.state = 'rotated';
      file.predecessor = prev;
      prev = file;
      this.ctx.log.info(`source ${this.name}: reading rotated ${path} from byte ${file.readOffset}`);
    }
    return prev;
  }

  /** `fromScan`: found while scanning (stat, open), so forgotten once a scan no longer sees it. */
  private fileProblem(path: string, reason: string, err: Error, fromScan = false): void {
    this.report(path, reason, `cannot read ${path}: ${err.message}`, fromScan);
  }

  private onFsEvent(event: string, dir: string, file: string | null): void {
    const tracked = file === null ? undefined : this.byPath.get(join(dir, file));
    if (tracked) {
      this.dirty.add(tracked);
      this.kick();
    }
    // A name came or went (new symlink, rotation): look again.
    if (!tracked || event === 'rename') this.queueScan();
  }

  /** New names show up as events; coalesce a burst of them into one scan. */
  private queueScan(): void {
    if (this.scanQueued || this.stopping) return;
    this.scanQueued = true;
    setTimeout(() => {
      this.scanQueued = false;
      this.scan(false);
    }, 50).unref();
  }

  // --- reading -----------------------------------------------------------------------------

  private kick(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private nextFile(): TailedFile | undefined {
    for (const file of this.dirty) {
      this.dirty.delete(file);
      if (this.pacing.waiting(file)) continue; // back in line when its pause is over
      const pred = file.predecessor;
      if (pred && !pred.finished && !(pred.atEof && pred.state !== 'live')) {
        if (pred.fd === undefined && !this.files.has(pred.key)) file.predecessor = undefined;
        else continue; // picked up again when the predecessor is drained
      }
      // The drained predecessor's last trace goes out before its successor's first lines.
      if (pred && !pred.finished && pred.decoder.groupsHeld) this.flushGroups(pred, formatUnixMillis(Date.now()), 'end_of_file');
      if (file.fd === undefined && !(this.makeRoom(file) && this.reopen(file))) continue;
      return file;
    }
    return undefined;
  }

  private window(): number {
    return this.config.max_unacked_bytes ?? this.ctx.unackedWindow();
  }

  private async readLoop(): Promise<void> {
    const { config } = this;
    while (!this.stopping) {
      if (this.unackedBytes >= this.window()) {
        await new Promise<void>((r) => (this.wake = r));
        continue;
      }
      const file = this.nextFile();
      if (!file) {
        await new Promise<void>((r) => (this.wake = r));
        continue;
      }
      const out: LogRecord[] = [];
      let result;
      try {
        result = file.read(this.buf, config.read_chunk, formatUnixMillis(Date.now()), out);
      } catch (err) {
        this.fileProblem(file.realPath, 'read_error', err as Error);
        continue;
      }
      if (result.rewritten) {
        this.rewritten(file, 'rewritten');
        continue;
      }
      if (result.bytes > 0 || out.length > 0) await this.emit(file, out, result.bytes);
      if (result.more) this.dirty.add(file);
      else if (file.atEof) this.wakeSuccessors(file);
    }
  }

  private wakeSuccessors(file: TailedFile): void {
    if (file.state === 'live') return;
    for (const other of this.files.values()) if (other.predecessor === file) this.dirty.add(other);
  }

  private emit(file: TailedFile, records: LogRecord[], bytes: number): Promise<void> {
    this.bytesRead.inc(bytes);
    const accepted = file.track();
    if (records.length === 0) {
      accepted();
      this.checkpointDirty = true;
      return Promise.resolve();
    }
    this.unackedBytes += bytes;
    this.unackedBatches++;
    // Pod metadata added downstream counts against the window too (ReadPace.weigh).
    let added = 0;
    const filePace = this.pacing.paceFor(file);
    const pace: ReadPace = {
      holdFor: (ms) => filePace.holdFor(ms),
      weigh: (more) => {
        added += more;
        this.unackedBytes += more;
      },
    };
    return this.ctx.emitter.emit(
      records,
      bytes,
      () => {
        accepted();
        this.unackedBytes -= bytes + added;
        this.unackedBatches--;
        this.checkpointDirty = true;
        // Saved before the output takes its next batch, so a crash repeats at most this much.
        this.ackedSinceSave += bytes;
        if (this.ackedSinceSave >= CHECKPOINT_EVERY_BYTES) this.saveCheckpoint(false);
        if (this.unackedBytes < this.window()) this.kick();
      },
      pace,
    );
  }

  // --- periodic work -----------------------------------------------------------------------

  /** A group whose stream went quiet is emitted by this timer, not by the next line (§5.3). */
  private flushIdleGroups(): void {
    if (this.stopping) return;
    const timeout = this.config.multiline!.timeout;
    const now = Date.now();
    let observed: string | undefined;
    for (const file of this.files.values()) {
      if (!file.decoder.groupsHeld) continue;
      const out: LogRecord[] = [];
      file.decoder.flushIdleGroups((observed ??= formatUnixMillis(now)), out, timeout, now);
      if (out.length > 0) void this.emit(file, out, 0);
    }
  }

  private poll(): void {
    if (this.stopping) return;
    const now = Date.now();
    let observed: string | undefined;
    for (const file of [...this.files.values()]) {
      if (file.fd === undefined) {
        this.pollClosed(file);
        continue;
      }
      let st;
      try {
        st = file.stat()!;
      } catch (err) {
        this.fileProblem(file.realPath, 'stat_error', err as Error);
        continue;
      }
      let changed: RewriteReason | undefined;
      try {
        changed = file.changedUnderUs(st);
      } catch (err) {
        this.fileProblem(file.realPath, 'read_error', err as Error);
        continue;
      }
      if (changed) this.rewritten(file, changed, st.size);
      if (st.nlink === 0 && file.state === 'live') file.state = 'orphaned';
      if (st.size > file.readOffset) {
        file.atEof = false;
        this.dirty.add(file);
      } else if (file.decoder.heldFrom() !== undefined) {
        const out: LogRecord[] = [];
        file.decoder.flush((observed ??= formatUnixMillis(now)), out, this.config.partial_timeout, now);
        if (out.length) void this.emit(file, out, 0);
      }
      if (file.state !== 'live' && file.atEof && !this.dirty.has(file) && now - file.lastActivity >= this.config.rotate_wait) {
        this.finish(file, (observed ??= formatUnixMillis(now)));
      }
      file.refreshFingerprint();
    }
    for (const file of [...this.files.values()]) {
      if (file.finished && !file.unacked) this.forget(file);
    }
    this.updateGauges();
    this.kick();
  }

  /**
   * The file no longer holds what was read from it (copytruncate, maybe refilled past the offset
   * already): hand over what is held, and read it again from byte 0. What was read of the old
   * content stays delivered; nothing of the new content is skipped.
   */
  private rewritten(file: TailedFile, reason: RewriteReason, size = file.size): void {
    this.ctx.metrics.fileTruncations.inc({ ...this.labels, reason });
    const what = reason === 'shrunk' ? `shrank to ${size} bytes` : `was rewritten in place (now ${size} bytes)`;
    this.ctx.log.info(`source ${this.name}: ${file.realPath} ${what} after ${file.readOffset} bytes were read (copytruncate); reading it again from byte 0`);
    const out: LogRecord[] = [];
    file.decoder.flush(formatUnixMillis(Date.now()), out);
    void this.emit(file, out, 0);
    file.restartFromZero();
    this.dirty.add(file);
  }

  /** The file will not grow again: hand over its last bytes and joins, close it, wake its successor. */
  private finish(file: TailedFile, observed: string): void {
    const out: LogRecord[] = [];
    const bytes = file.finishTail(this.buf, observed, out);
    void this.emit(file, out, bytes);
    file.finished = true;
    file.close();
    if (this.byPath.get(file.realPath) === file) this.byPath.delete(file.realPath);
    for (const other of this.files.values()) {
      if (other.predecessor === file) {
        other.predecessor = undefined;
        this.dirty.add(other);
      }
    }
  }

  private forget(file: TailedFile): void {
    this.files.delete(file.key);
    this.checkpointDirty = true;
  }

  /**
   * Keeps descriptors within max_open_files: to open one more, close the live file idle the
   * longest (it is reopened by path when it grows). Files whose name is gone keep theirs: only the
   * descriptor still reaches them. False when nothing can be closed; the caller waits.
   */
  private makeRoom(except?: TailedFile): boolean {
    let open = 0;
    let victim: TailedFile | undefined;
    for (const f of this.files.values()) {
      if (f.fd === undefined) continue;
      open++;
      if (f === except || f.state !== 'live' || this.dirty.has(f)) continue;
      if (!victim || f.lastActivity < victim.lastActivity) victim = f;
    }
    if (open < this.config.max_open_files) return true;
    if (!victim) return false;
    victim.close();
    return true;
  }

  private reopen(file: TailedFile): boolean {
    if (file.reopen()) return true;
    // The path names another file now: ours was rotated while closed. Find it beside the path.
    const moved = new FolderListings().rotatedSiblings(dirname(file.realPath), liveBaseOf(file.realPath)).find(
      ({ st }) => st.dev === file.dev && st.ino === file.ino,
    );
    if (moved) {
      try {
        file.fd = openSync(moved.path, 'r');
        file.state = 'rotated';
        if (this.byPath.get(file.realPath) === file) this.byPath.delete(file.realPath);
        return true;
      } catch {
        // removed between the listing and the open
      }
    }
    this.report(file.realPath, 'gone_while_closed', `${file.realPath} was removed while closed over max_open_files; its unread tail is lost`, false);
    file.finished = true;
    if (this.byPath.get(file.realPath) === file) this.byPath.delete(file.realPath);
    return false;
  }

  private pollClosed(file: TailedFile): void {
    if (file.finished) return;
    try {
      const st = statSync(file.realPath);
      if (st.dev === file.dev && st.ino === file.ino && st.size === file.readOffset) return;
    } catch {
      // gone or replaced: reopen() below looks for it
    }
    this.dirty.add(file);
  }

  private updateGauges(): void {
    let open = 0;
    let lag = 0;
    for (const f of this.files.values()) {
      if (f.fd !== undefined) open++;
      if (f.size > f.readOffset) lag += f.size - f.readOffset;
    }
    this.ctx.metrics.filesTailed.set(this.labels, this.files.size);
    this.ctx.metrics.openFiles.set(this.labels, open);
    this.ctx.metrics.tailLagBytes.set(this.labels, lag);
    this.ctx.metrics.unackedBytes.set(this.labels, this.unackedBytes);
  }

  private saveCheckpoint(durable: boolean, force = false): void {
    if (!this.checkpointDirty && !force) return;
    this.checkpointDirty = false;
    this.ackedSinceSave = 0;
    const files: FileCheckpoint[] = [];
    for (const f of this.files.values()) {
      const { offset, delivered, pending } = f.committed;
      const cp: FileCheckpoint = { dev: f.dev, ino: f.ino, fingerprint: f.fingerprint, offset, path: f.realPath };
      if (f.committed.tail) cp.tail = f.committed.tail;
      if (delivered > offset) Object.assign(cp, { delivered, pending });
      files.push(cp);
    }
    try {
      this.store.save(files, durable);
      this.ctx.metrics.checkpointWrites.inc(this.labels);
    } catch (err) {
      this.checkpointDirty = true;
      this.ctx.metrics.checkpointErrors.inc(this.labels);
      this.warnings.warn('checkpoint', `source ${this.name}: cannot write checkpoint ${this.store.path}: ${(err as Error).message}; reading goes on, retrying`);
    }
  }
}
