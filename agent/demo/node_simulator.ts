/**
 * A fake Kubernetes node's log tree, written the way kubelet and the container runtime write it
 * (reference/log-formats.md §1-2):
 *
 *   <root>/var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log        CRI lines, written by the runtime
 *   <root>/var/log/containers/<pod>_<ns>_<container>-<64 hex id>.log      kubelet's symlink, absolute target
 *
 * `NodeSimulator` gives primitives (pods, lines of several shapes, rotation, restarts, deletion) and a
 * timed demo loop that mixes all of them; `generateCriCorpus` writes a large corpus fast for benchmarks.
 * Everything is deterministic for a seed (timestamps too, unless the wall clock is asked for).
 */
import * as fs from 'node:fs';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

export type Stream = 'stdout' | 'stderr';
/** containerd: RFC3339Nano UTC, trailing fraction zeros trimmed. crio: 9 digits and `+00:00`. */
export type Runtime = 'containerd' | 'crio';

/** containerd's default `max_container_log_line_size`. */
export const CONTAINERD_MAX_LINE_BYTES = 16 * 1024;
/** conmon's read buffer (`STDIO_BUF_SIZE`): a longer line reaches the file as P chunks of this size. */
export const CRIO_READ_BUFFER_BYTES = 8192;
/** ext4's file name limit; kubelet cuts symlink names (including `.log`) to it. */
const MAX_FILE_NAME_BYTES = 255;
const LF = 0x0a;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: small, fast, good enough for test data. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = Math.imul(this.state ^ (this.state >>> 15), 1 | this.state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  chars(alphabet: string, n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(this.next() * alphabet.length)];
    return s;
  }

  hex(n: number): string {
    return this.chars('0123456789abcdef', n);
  }

  uuid(): string {
    const h = this.hex(32);
    const variant = '89ab'[this.int(0, 3)];
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
  }
}

/** Kubernetes' name suffix alphabet (no vowels, no confusable digits). */
const K8S_SUFFIX_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

// ---------------------------------------------------------------------------------------------
// Time

const NS_PER_SECOND = 1_000_000_000n;

/** `2026-11-21T10:00:00.1234Z` (containerd) or `2026-11-21T10:00:00.123400000+00:00` (CRI-O). */
export function formatCriTimestamp(epochNs: bigint, runtime: Runtime = 'containerd'): string {
  const seconds = epochNs / NS_PER_SECOND;
  const fraction = Number(epochNs % NS_PER_SECOND);
  const base = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  const digits = String(fraction).padStart(9, '0');
  if (runtime === 'crio') return `${base}.${digits}+00:00`;
  const trimmed = digits.replace(/0+$/, '');
  return trimmed ? `${base}.${trimmed}Z` : `${base}Z`;
}

/** kubelet's rotated-file suffix `YYYYMMDD-hhmmss` (the simulated node runs in UTC). */
export function formatRotationTimestamp(epochNs: bigint): string {
  const iso = new Date(Number(epochNs / 1_000_000n)).toISOString();
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
}

/** Epoch nanoseconds from the wall clock, with sub-millisecond digits from the monotonic clock. */
export function wallClock(): () => bigint {
  const baseNs = BigInt(Date.now()) * 1_000_000n;
  const baseHr = process.hrtime.bigint();
  return () => baseNs + (process.hrtime.bigint() - baseHr);
}

const DEFAULT_START = '2026-11-21T10:00:00Z';

// ---------------------------------------------------------------------------------------------
// Paths

export function podDirName(namespace: string, pod: string, uid: string): string {
  return `${namespace}_${pod}_${uid}`;
}

/** kubelet's `logSymlink`: `<pod>_<ns>_<container>-<id>.log`, cut to 255 bytes including `.log`. */
export function symlinkName(namespace: string, pod: string, container: string, containerId: string): string {
  const stem = `${pod}_${namespace}_${container}-${containerId}`;
  const max = MAX_FILE_NAME_BYTES - '.log'.length;
  return `${Buffer.byteLength(stem) > max ? Buffer.from(stem).subarray(0, max).toString() : stem}.log`;
}

const ROTATED_RE = /^(\d+)\.log\.(\d{8}-\d{6})(\.gz)?$/;

// ---------------------------------------------------------------------------------------------
// The simulator

export interface NodeSimulatorOptions {
  /** Folder that plays `/`: files go under `<root>/var/log/pods` and `<root>/var/log/containers`. */
  root: string;
  /** Seed for names, ids, content and the simulated clock. Default 1. */
  seed?: number;
  /** Timestamp style and where long lines are split. Default containerd. */
  runtime?: Runtime;
  /**
   * Epoch-nanosecond clock for line timestamps and rotation names. `simulated` (default) starts at
   * `startTime` and moves forward a little (20 µs - 3 ms) per chunk written: deterministic.
   * `wall` is the real time (use it for the live demo).
   */
  clock?: 'simulated' | 'wall' | (() => bigint);
  /** Start of the simulated clock. Default 2026-11-21T10:00:00Z. */
  startTime?: string | Date;
  /**
   * Content bytes per P chunk: a longer line is split. Default 16384 for containerd
   * (`max_container_log_line_size`), 8192 for crio (conmon's read buffer).
   */
  maxLineBytes?: number;
  /**
   * Rotated files kept per container (`N.log.<ts>` and `.gz`), the oldest deleted first. kubelet's
   * `containerLogMaxFiles` counts the live file too, so its default 5 is `maxFiles: 4`. Default 4.
   */
  maxFiles?: number;
  /** gzip rotated files except the newest, as kubelet does. Default false (all stay plain). */
  compress?: boolean;
  /** Dead instances kept per (pod, container) on restart, like kubelet's container GC. Default 1. */
  keepDeadContainers?: number;
}

export interface PodSpec {
  namespace: string;
  name: string;
  /** Default: a random UUID. Static pods use a 32 hex config hash here. */
  uid?: string;
  containers: readonly string[];
}

/** One container instance (one restart count) and its files. */
export interface ContainerLog {
  readonly namespace: string;
  readonly pod: string;
  readonly uid: string;
  readonly container: string;
  readonly restartCount: number;
  /** 64 hex digits, as in the symlink name. */
  readonly containerId: string;
  /** Absolute `<root>/var/log/pods/.../<restart>.log`. */
  readonly logPath: string;
  /** Absolute `<root>/var/log/containers/...-<id>.log`. */
  readonly symlinkPath: string;
  readonly running: boolean;
  /** Logical lines (an F, or an unterminated P at exit) written by this instance. */
  readonly records: number;
}

export interface PodInfo {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly dir: string;
  /** The current instance of each container. */
  readonly containers: readonly ContainerLog[];
}

export interface SimulatorStats {
  /** Logical records: each F line, plus each P that no F will follow (container exit). */
  records: number;
  /** CRI lines written (P and F). */
  physicalLines: number;
  bytes: number;
  rotations: number;
  restarts: number;
  podsDeleted: number;
}

export interface RotateOptions {
  /**
   * Lines the runtime writes into the renamed file before it reopens the live path (the window
   * between kubelet's rename and `ReopenContainerLog`). Default none.
   */
  writeBeforeReopen?: readonly string[];
}

export interface RestartOptions {
  /** Bytes the dying process wrote without a newline: written as a P with no F. */
  exitPartial?: string;
}

export interface DeletePodOptions {
  /** Also remove `<root>/var/log/pods/<ns>_<pod>_<uid>` (kubelet does after cleanup). Default false. */
  removeDir?: boolean;
}

export interface DemoOptions {
  /** Tick period. Default 200 ms. */
  intervalMs?: number;
  /** Rotation of the busy container, in ticks of intervalMs. Default ~15 s. */
  rotateEveryMs?: number;
  /** Crash and restart of the flaky worker. Default ~60 s. */
  restartEveryMs?: number;
  /** A short-lived job pod is created, logs, and is deleted this often. Default ~45 s. */
  jobEveryMs?: number;
}

class ContainerState implements ContainerLog {
  readonly namespace: string;
  readonly pod: string;
  readonly uid: string;
  readonly container: string;
  readonly restartCount: number;
  readonly containerId: string;
  readonly logPath: string;
  readonly symlinkPath: string;
  running = true;
  records = 0;
  fd: number | undefined;
  /** Clock second of the last rotation name, so names stay unique and in order. */
  lastRotationSecond = -1n;

  constructor(init: Omit<ContainerLog, 'running' | 'records'>, fd: number) {
    this.namespace = init.namespace;
    this.pod = init.pod;
    this.uid = init.uid;
    this.container = init.container;
    this.restartCount = init.restartCount;
    this.containerId = init.containerId;
    this.logPath = init.logPath;
    this.symlinkPath = init.symlinkPath;
    this.fd = fd;
  }
}

interface PodState {
  namespace: string;
  name: string;
  uid: string;
  dir: string;
  /** Instances per container name, oldest first; the last one is current. */
  instances: Map<string, ContainerState[]>;
}

interface DemoState {
  timer: NodeJS.Timeout | undefined;
  tick: number;
  rotateEvery: number;
  restartEvery: number;
  jobEvery: number;
  jobSeq: number;
  jobs: { ns: string; name: string; deleteAt: number }[];
}

export class NodeSimulator {
  readonly root: string;
  readonly podsDir: string;
  readonly containersDir: string;
  readonly runtime: Runtime;
  private readonly rng: Rng;
  private readonly now: () => bigint;
  private readonly maxLineBytes: number;
  private readonly maxFiles: number;
  private readonly compress: boolean;
  private readonly keepDead: number;
  private readonly pods = new Map<string, PodState>();
  private readonly counters: SimulatorStats = {
    records: 0,
    physicalLines: 0,
    bytes: 0,
    rotations: 0,
    restarts: 0,
    podsDeleted: 0,
  };
  private demo: DemoState | undefined;

  constructor(options: NodeSimulatorOptions) {
    this.root = resolve(options.root);
    this.podsDir = join(this.root, 'var/log/pods');
    this.containersDir = join(this.root, 'var/log/containers');
    this.runtime = options.runtime ?? 'containerd';
    this.rng = new Rng(options.seed ?? 1);
    this.maxLineBytes =
      options.maxLineBytes ?? (this.runtime === 'crio' ? CRIO_READ_BUFFER_BYTES : CONTAINERD_MAX_LINE_BYTES);
    this.maxFiles = Math.max(1, options.maxFiles ?? 4);
    this.compress = options.compress ?? false;
    this.keepDead = Math.max(0, options.keepDeadContainers ?? 1);
    const clock = options.clock ?? 'simulated';
    if (typeof clock === 'function') this.now = clock;
    else if (clock === 'wall') this.now = wallClock();
    else {
      let t = BigInt(new Date(options.startTime ?? DEFAULT_START).getTime()) * 1_000_000n;
      const rng = new Rng((options.seed ?? 1) ^ 0x5eed);
      this.now = () => (t += BigInt(rng.int(20_000, 3_000_000)));
    }
    fs.mkdirSync(this.podsDir, { recursive: true });
    fs.mkdirSync(this.containersDir, { recursive: true });
  }

  // ----- pods and containers

  /** Creates the pod directory, `0.log` for each container and kubelet's symlinks. */
  createPod(spec: PodSpec): PodInfo {
    const key = `${spec.namespace}/${spec.name}`;
    if (this.pods.has(key)) throw new Error(`pod ${key} exists`);
    for (const part of [spec.namespace, spec.name, ...spec.containers]) {
      if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(part)) throw new Error(`not a Kubernetes name: ${part}`);
    }
    const uid = spec.uid ?? this.rng.uuid();
    const dir = join(this.podsDir, podDirName(spec.namespace, spec.name, uid));
    fs.mkdirSync(dir, { recursive: true });
    const pod: PodState = { namespace: spec.namespace, name: spec.name, uid, dir, instances: new Map() };
    this.pods.set(key, pod);
    for (const name of spec.containers) pod.instances.set(name, [this.startContainer(pod, name, 0)]);
    return this.podInfo(pod);
  }

  /** Generates Deployment-style names: `<base>-<rs hash>-<5 chars>`. */
  deploymentPodName(base: string): string {
    return `${base}-${this.rng.chars(K8S_SUFFIX_ALPHABET, 10)}-${this.rng.chars(K8S_SUFFIX_ALPHABET, 5)}`;
  }

  /** The current instance of a container. */
  container(namespace: string, pod: string, container: string): ContainerLog {
    const instances = this.requirePod(namespace, pod).instances.get(container);
    if (!instances) throw new Error(`no container ${container} in pod ${namespace}/${pod}`);
    return instances[instances.length - 1]!;
  }

  pod(namespace: string, name: string): PodInfo | undefined {
    const pod = this.pods.get(`${namespace}/${name}`);
    return pod && this.podInfo(pod);
  }

  listPods(): PodInfo[] {
    return [...this.pods.values()].map((p) => this.podInfo(p));
  }

  /**
   * The container exits and starts again: `<n+1>.log`, a new id and a new symlink. The previous
   * instance's symlink and file stay (for `kubectl logs --previous`); older dead instances beyond
   * `keepDeadContainers` are garbage-collected (symlink and `N.log*` removed).
   */
  restartContainer(handle: ContainerLog, options: RestartOptions = {}): ContainerLog {
    const pod = this.requirePod(handle.namespace, handle.pod);
    const instances = pod.instances.get(handle.container)!;
    const current = instances[instances.length - 1]!;
    if (options.exitPartial !== undefined) this.writeUnterminated(current, options.exitPartial, 'stdout');
    this.closeFd(current);
    current.running = false;
    const next = this.startContainer(pod, handle.container, current.restartCount + 1);
    instances.push(next);
    while (instances.length - 1 > this.keepDead) {
      const dead = instances.shift()!;
      rmQuiet(dead.symlinkPath);
      for (const f of fs.readdirSync(join(pod.dir, dead.container))) {
        if (f === `${dead.restartCount}.log` || f.startsWith(`${dead.restartCount}.log.`)) {
          rmQuiet(join(pod.dir, dead.container, f));
        }
      }
    }
    this.counters.restarts++;
    return next;
  }

  /** Removes the pod's symlinks (all instances) and, when asked, its log directory. */
  deletePod(namespace: string, name: string, options: DeletePodOptions = {}): void {
    const pod = this.requirePod(namespace, name);
    for (const instances of pod.instances.values()) {
      for (const c of instances) {
        this.closeFd(c);
        c.running = false;
        rmQuiet(c.symlinkPath);
      }
    }
    if (options.removeDir) fs.rmSync(pod.dir, { recursive: true, force: true });
    this.pods.delete(`${namespace}/${name}`);
    this.counters.podsDeleted++;
  }

  // ----- writing lines

  /**
   * One logical line (no LF inside). Longer than the runtime's chunk size, it is written as P chunks
   * of exactly that many content bytes and a last F (bytes, so a UTF-8 character may be cut).
   * Returns the CRI lines written.
   */
  writeLine(handle: ContainerLog, content: string | Buffer, stream: Stream = 'stdout'): number {
    const bytes = typeof content === 'string' ? Buffer.from(content) : content;
    if (bytes.includes(LF)) throw new Error('a CRI line cannot contain LF: use writeText for several lines');
    const c = this.writable(handle);
    const max = this.maxLineBytes;
    let chunks = 0;
    let off = 0;
    while (bytes.length - off > max) {
      this.emit(c, stream, 'P', bytes.subarray(off, off + max));
      off += max;
      chunks++;
    }
    this.emit(c, stream, 'F', bytes.subarray(off));
    c.records++;
    this.counters.records++;
    return chunks + 1;
  }

  /** Several lines at once (split on `\n`), e.g. what a program prints with one write. */
  writeText(handle: ContainerLog, text: string, stream: Stream = 'stdout'): number {
    let n = 0;
    for (const line of text.split('\n')) n += this.writeLine(handle, line, stream);
    return n;
  }

  writeJson(handle: ContainerLog, value: unknown, stream: Stream = 'stdout'): number {
    return this.writeLine(handle, JSON.stringify(value), stream);
  }

  /** `key=value` pairs, values quoted when they hold spaces or quotes. */
  writeLogfmt(handle: ContainerLog, fields: Record<string, string | number | boolean>, stream: Stream = 'stdout'): number {
    return this.writeLine(handle, logfmt(fields), stream);
  }

  /** A Java or Python stack trace as consecutive lines, as the application prints it. */
  writeStackTrace(handle: ContainerLog, kind: 'java' | 'python', stream: Stream = 'stderr'): number {
    const lines = kind === 'java' ? javaStackTrace(this.rng, this.nowIso()) : pythonTraceback(this.rng);
    let n = 0;
    for (const line of lines) n += this.writeLine(handle, line, stream);
    return n;
  }

  /** A JSON line of exactly `bytes` bytes (default 20 KiB): becomes P chunks and an F. */
  writeLongLine(handle: ContainerLog, bytes = 20 * 1024, stream: Stream = 'stdout'): number {
    return this.writeLine(handle, longJsonLine(this.rng, bytes), stream);
  }

  /**
   * A short line that reached the runtime in several writes (CRI-O/conmon writes a P per read()
   * without LF): `pieces` P/F chunks at random cut points, the last one F. Timestamp style stays the
   * simulator's runtime. Returns the CRI lines written.
   */
  writeFragmented(handle: ContainerLog, content: string, pieces = 3, stream: Stream = 'stdout'): number {
    const bytes = Buffer.from(content);
    if (bytes.includes(LF)) throw new Error('a CRI line cannot contain LF');
    const n = Math.max(1, Math.min(pieces, bytes.length));
    const cuts = new Set<number>();
    while (cuts.size < n - 1) cuts.add(this.rng.int(1, bytes.length - 1));
    const points = [0, ...[...cuts].sort((a, b) => a - b), bytes.length];
    const c = this.writable(handle);
    for (let i = 0; i + 1 < points.length; i++) {
      this.emit(c, stream, i + 2 === points.length ? 'F' : 'P', bytes.subarray(points[i], points[i + 1]));
    }
    c.records++;
    this.counters.records++;
    return n;
  }

  /**
   * The last bytes of a stream that ended without LF (process exit): a P that no F follows. Counted
   * as a record, since a reader must flush it eventually (marked incomplete).
   */
  writeUnterminated(handle: ContainerLog, content: string, stream: Stream = 'stdout'): void {
    const c = this.writable(handle);
    this.emit(c, stream, 'P', Buffer.from(content));
    c.records++;
    this.counters.records++;
  }

  // ----- rotation

  /**
   * kubelet's rotation: drop the oldest rotated files to make room, gzip older ones when `compress`
   * is on, rename the live `N.log` to `N.log.<YYYYMMDD-hhmmss>`, then the runtime reopens a new
   * empty `N.log`. Returns the rotated file's path. Two rotations within one clock second would
   * collide (kubelet's 10 s monitor interval prevents it); here the later name moves a second on, so
   * names stay unique and sort in rotation order.
   */
  rotate(handle: ContainerLog, options: RotateOptions = {}): string {
    const c = this.writable(handle);
    const dir = join(this.requirePod(c.namespace, c.pod).dir, c.container);
    const rotated = this.rotatedFiles(dir, c.restartCount);
    while (rotated.length > this.maxFiles - 1) rmQuiet(join(dir, rotated.shift()!.name));
    if (this.compress) {
      for (const r of rotated) {
        if (r.gz) continue;
        const plain = join(dir, r.name);
        const tmp = `${plain}.tmp`;
        fs.writeFileSync(tmp, gzipSync(fs.readFileSync(plain)));
        fs.renameSync(tmp, `${plain}.gz`);
        fs.rmSync(plain);
      }
    }
    let second = this.now() / NS_PER_SECOND;
    if (second <= c.lastRotationSecond) second = c.lastRotationSecond + 1n;
    let target = `${c.logPath}.${formatRotationTimestamp(second * NS_PER_SECOND)}`;
    while (fs.existsSync(target) || fs.existsSync(`${target}.gz`)) {
      second++;
      target = `${c.logPath}.${formatRotationTimestamp(second * NS_PER_SECOND)}`;
    }
    c.lastRotationSecond = second;
    fs.renameSync(c.logPath, target);
    for (const line of options.writeBeforeReopen ?? []) this.writeLine(c, line, 'stdout');
    this.closeFd(c);
    c.fd = fs.openSync(c.logPath, 'a');
    this.counters.rotations++;
    return target;
  }

  /** Rotated files of one container instance, oldest first. */
  private rotatedFiles(dir: string, restart: number): { name: string; ts: string; gz: boolean }[] {
    const out: { name: string; ts: string; gz: boolean }[] = [];
    for (const name of fs.readdirSync(dir)) {
      const m = ROTATED_RE.exec(name);
      if (m && Number(m[1]) === restart) out.push({ name, ts: m[2]!, gz: m[3] !== undefined });
    }
    return out.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
  }

  // ----- demo loop

  /**
   * Starts a timed loop (default every 200 ms) that makes pods of several namespaces log a realistic
   * mix: nginx access lines, JSON app logs, logfmt, Java and Python stack traces, 20 KiB lines (P
   * chunks), fragmented short lines, a rotation of the busy container every ~15 s, a crash and
   * restart of a flaky worker every ~60 s (leaving an unterminated P), and short-lived job pods that
   * are deleted. Use `clock: 'wall'` for real timestamps. `demoTick()` runs one step without timers.
   */
  startDemo(options: DemoOptions = {}): void {
    if (this.demo?.timer) throw new Error('demo already running');
    const interval = options.intervalMs ?? 200;
    const ticks = (ms: number) => Math.max(1, Math.round(ms / interval));
    this.demo = {
      timer: undefined,
      tick: 0,
      rotateEvery: ticks(options.rotateEveryMs ?? 15_000),
      restartEvery: ticks(options.restartEveryMs ?? 60_000),
      jobEvery: ticks(options.jobEveryMs ?? 45_000),
      jobSeq: 0,
      jobs: [],
    };
    this.setUpDemoPods();
    this.demo.timer = setInterval(() => this.demoTick(), interval);
  }

  /** One step of the demo; sets the demo pods up on first use when startDemo was not called. */
  demoTick(): void {
    if (!this.demo) {
      this.demo = { timer: undefined, tick: 0, rotateEvery: 75, restartEvery: 300, jobEvery: 225, jobSeq: 0, jobs: [] };
    }
    if (!this.pods.has(`${DEMO_WEB.ns}/${DEMO_WEB.name}`)) this.setUpDemoPods();
    const d = this.demo;
    const t = ++d.tick;
    const rng = this.rng;

    const nginx = this.container(DEMO_WEB.ns, DEMO_WEB.name, 'nginx');
    const app = this.container(DEMO_WEB.ns, DEMO_WEB.name, 'app');
    const checkout = this.container(DEMO_CHECKOUT.ns, DEMO_CHECKOUT.name, 'checkout');
    const worker = this.container(DEMO_WORKER.ns, DEMO_WORKER.name, 'worker');
    const coredns = this.container(DEMO_DNS.ns, DEMO_DNS.name, 'coredns');
    const exporter = this.container(DEMO_EXPORTER.ns, DEMO_EXPORTER.name, 'node-exporter');

    // The busy web pod: access lines and JSON app logs every tick.
    for (let i = rng.int(6, 14); i > 0; i--) this.writeLine(nginx, nginxAccessLine(rng, this.nowDate()));
    if (rng.chance(0.1)) this.writeLine(nginx, nginxErrorLine(rng, this.nowDate()), 'stderr');
    for (let i = rng.int(4, 10); i > 0; i--) this.writeJson(app, appJson(rng, this.nowIso()));
    if (t % 25 === 0) this.writeLongLine(app, rng.int(17_000, 40_000));
    if (t % 10 === 5) this.writeFragmented(app, JSON.stringify(appJson(rng, this.nowIso())), rng.int(2, 4));

    // Java service: text logs, a stack trace now and then.
    for (let i = rng.int(0, 3); i > 0; i--) this.writeLine(checkout, javaLogLine(rng, this.nowIso()));
    if (t % 40 === 20) this.writeStackTrace(checkout, 'java');

    // Python worker: logfmt, tracebacks, a crash and restart once a minute.
    if (rng.chance(0.6)) this.writeLogfmt(worker, workerFields(rng, this.nowIso()));
    if (t % 60 === 30) this.writeStackTrace(worker, 'python');
    if (t % d.restartEvery === 0) {
      this.writeLine(worker, 'Killed: worker exceeded memory limit, exiting', 'stderr');
      this.restartContainer(worker, { exitPartial: 'flushing queue (3 items lef' });
      this.writeLogfmt(this.container(DEMO_WORKER.ns, DEMO_WORKER.name, 'worker'), {
        ts: this.nowIso(),
        level: 'info',
        msg: 'worker starting',
        pid: rng.int(1, 60),
      });
    }

    // Quiet system pods.
    if (rng.chance(0.2)) this.writeLine(coredns, corednsLine(rng));
    if (t % 50 === 0) this.writeLogfmt(exporter, { ts: this.nowIso(), level: 'info', source: 'node_exporter.go:111', msg: 'Scrape done', duration_seconds: (rng.next() / 10).toFixed(4) });

    // Rotation of the busy container; the runtime writes a few lines into the renamed file first.
    if (t % d.rotateEvery === 0) {
      this.rotate(app, { writeBeforeReopen: [JSON.stringify(appJson(rng, this.nowIso()))] });
      this.rotate(nginx);
    }

    // Short-lived job pods: created, log, deleted a while later.
    if (t % d.jobEvery === 0) {
      const name = `report-${29_000_000 + ++d.jobSeq}-${rng.chars(K8S_SUFFIX_ALPHABET, 5)}`;
      const job = this.createPod({ namespace: 'batch', name, containers: ['report'] });
      const c = job.containers[0]!;
      this.writeText(c, `starting report run ${d.jobSeq}\nfetched ${rng.int(100, 9000)} rows\nreport written to s3://reports/${name}.csv`);
      d.jobs.push({ ns: 'batch', name, deleteAt: t + Math.ceil(d.jobEvery / 2) });
    }
    for (const job of d.jobs.filter((j) => j.deleteAt <= t)) {
      this.deletePod(job.ns, job.name, { removeDir: true });
    }
    d.jobs = d.jobs.filter((j) => j.deleteAt > t);
  }

  private setUpDemoPods(): void {
    for (const p of [DEMO_WEB, DEMO_CHECKOUT, DEMO_WORKER, DEMO_DNS, DEMO_EXPORTER]) {
      if (!this.pods.has(`${p.ns}/${p.name}`)) this.createPod({ namespace: p.ns, name: p.name, containers: p.containers });
    }
  }

  /** Stops the demo loop and closes every open file. The tree stays on disk. */
  stop(): void {
    if (this.demo?.timer) clearInterval(this.demo.timer);
    this.demo = undefined;
    for (const pod of this.pods.values()) {
      for (const instances of pod.instances.values()) for (const c of instances) this.closeFd(c);
    }
  }

  stats(): SimulatorStats {
    return { ...this.counters };
  }

  // ----- internals

  private startContainer(pod: PodState, name: string, restartCount: number): ContainerState {
    const dir = join(pod.dir, name);
    fs.mkdirSync(dir, { recursive: true });
    const logPath = join(dir, `${restartCount}.log`);
    const containerId = this.rng.hex(64);
    const fd = fs.openSync(logPath, 'a');
    // kubelet creates the symlink after the runtime created the container and its log file.
    const symlinkPath = join(this.containersDir, symlinkName(pod.namespace, pod.name, name, containerId));
    rmQuiet(symlinkPath);
    fs.symlinkSync(logPath, symlinkPath);
    return new ContainerState(
      { namespace: pod.namespace, pod: pod.name, uid: pod.uid, container: name, restartCount, containerId, logPath, symlinkPath },
      fd,
    );
  }

  private emit(c: ContainerState, stream: Stream, tag: 'P' | 'F', content: Buffer): void {
    const head = Buffer.from(`${formatCriTimestamp(this.now(), this.runtime)} ${stream} ${tag} `);
    const line = Buffer.concat([head, content, Buffer.of(LF)]);
    fs.writeSync(c.fd!, line);
    this.counters.physicalLines++;
    this.counters.bytes += line.length;
  }

  private writable(handle: ContainerLog): ContainerState {
    const c = handle as ContainerState;
    if (!(c instanceof ContainerState) || c.fd === undefined || !c.running) {
      throw new Error(`container ${handle.namespace}/${handle.pod}/${handle.container}#${handle.restartCount} is not running`);
    }
    return c;
  }

  private closeFd(c: ContainerState): void {
    if (c.fd !== undefined) fs.closeSync(c.fd);
    c.fd = undefined;
  }

  private requirePod(namespace: string, name: string): PodState {
    const pod = this.pods.get(`${namespace}/${name}`);
    if (!pod) throw new Error(`no pod ${namespace}/${name}`);
    return pod;
  }

  private podInfo(pod: PodState): PodInfo {
    return {
      namespace: pod.namespace,
      name: pod.name,
      uid: pod.uid,
      dir: pod.dir,
      containers: [...pod.instances.values()].map((list) => list[list.length - 1]!),
    };
  }

  private nowDate(): Date {
    return new Date(Number(this.now() / 1_000_000n));
  }

  private nowIso(): string {
    return this.nowDate().toISOString();
  }
}

function rmQuiet(path: string): void {
  fs.rmSync(path, { force: true });
}

// ---------------------------------------------------------------------------------------------
// Content

const DEMO_WEB = { ns: 'default', name: 'web-7d9f8c6b5d-x2k9p', containers: ['nginx', 'app'] };
const DEMO_CHECKOUT = { ns: 'shop', name: 'checkout-6c9d7f8b54-q4w7z', containers: ['checkout'] };
const DEMO_WORKER = { ns: 'shop', name: 'worker-0', containers: ['worker'] };
const DEMO_DNS = { ns: 'kube-system', name: 'coredns-76f75df574-8xk2m', containers: ['coredns'] };
const DEMO_EXPORTER = { ns: 'monitoring', name: 'node-exporter-7xk2p', containers: ['node-exporter'] };

const PATHS = ['/', '/api/v1/orders', '/api/v1/orders/{id}', '/api/v1/cart', '/healthz', '/static/app.js', '/login', '/api/v1/search'];
const METHODS = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'];
const STATUSES = [200, 200, 200, 200, 201, 204, 301, 304, 400, 404, 500, 503];
const AGENTS = [
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36',
  'curl/8.5.0',
  'kube-probe/1.31',
  'Go-http-client/2.0',
];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const WORDS =
  'order payment cart user session cache request response timeout retry upstream database query index shard replica token invoice shipment warehouse inventory price discount customer account profile region zone queue message batch commit rollback lock'.split(
    ' ',
  );

function ip(rng: Rng): string {
  return `10.244.${rng.int(0, 3)}.${rng.int(2, 254)}`;
}

function clf(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

function path(rng: Rng): string {
  return rng.pick(PATHS).replace('{id}', String(rng.int(1000, 99999)));
}

function nginxAccessLine(rng: Rng, d: Date): string {
  return `${ip(rng)} - - [${clf(d)}] "${rng.pick(METHODS)} ${path(rng)} HTTP/1.1" ${rng.pick(STATUSES)} ${rng.int(0, 40000)} "-" "${rng.pick(AGENTS)}" ${(rng.next() / 4).toFixed(3)}`;
}

function nginxErrorLine(rng: Rng, d: Date): string {
  const iso = d.toISOString();
  return `${iso.slice(0, 10).replaceAll('-', '/')} ${iso.slice(11, 19)} [error] 29#29: *${rng.int(1, 99999)} upstream timed out (110: Connection timed out) while reading response header from upstream, client: ${ip(rng)}, server: _, request: "GET ${path(rng)} HTTP/1.1"`;
}

function sentence(rng: Rng, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(rng.pick(WORDS));
  return out.join(' ');
}

function appJson(rng: Rng, iso: string): Record<string, unknown> {
  const level = rng.pick(['info', 'info', 'info', 'debug', 'warn', 'error']);
  return {
    time: iso,
    level,
    logger: rng.pick(['http', 'db', 'cache', 'auth']),
    msg: sentence(rng, rng.int(3, 9)),
    trace_id: rng.hex(32),
    span_id: rng.hex(16),
    user_id: rng.int(1, 50_000),
    duration_ms: Math.round(rng.next() * 25_000) / 100,
    ...(level === 'error' ? { error: `${rng.pick(WORDS)} failed: context deadline exceeded` } : {}),
  };
}

function longJsonLine(rng: Rng, bytes: number): string {
  const head = `{"time":"${new Date(0).toISOString()}","level":"debug","msg":"response dump","body":"`;
  const tail = '"}';
  const n = Math.max(0, bytes - head.length - tail.length);
  let body = '';
  while (body.length < n) body += rng.pick(WORDS) + ' ';
  return head + body.slice(0, n) + tail;
}

function javaLogLine(rng: Rng, iso: string): string {
  const level = rng.pick(['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN']);
  const cls = rng.pick(['c.e.shop.CheckoutController', 'c.e.shop.PaymentClient', 'o.s.web.servlet.DispatcherServlet', 'c.z.hikari.pool.HikariPool']);
  return `${iso.replace('T', ' ').slice(0, 23)} ${level.padStart(5)} 1 --- [nio-8080-exec-${rng.int(1, 10)}] ${cls.padEnd(40)} : ${sentence(rng, rng.int(4, 12))}`;
}

function javaStackTrace(rng: Rng, iso: string): string[] {
  const id = rng.int(10000, 99999);
  return [
    `${iso.replace('T', ' ').slice(0, 23)} ERROR 1 --- [nio-8080-exec-${rng.int(1, 10)}] c.e.shop.CheckoutController             : Checkout failed for order ${id}`,
    `java.lang.IllegalStateException: payment declined for order ${id}`,
    '\tat com.example.shop.payment.PaymentClient.charge(PaymentClient.java:142)',
    '\tat com.example.shop.checkout.CheckoutService.complete(CheckoutService.java:87)',
    '\tat com.example.shop.checkout.CheckoutController.post(CheckoutController.java:54)',
    '\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)',
    '\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)',
    `Caused by: java.net.SocketTimeoutException: Read timed out after ${rng.int(1, 30)}000 ms`,
    '\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)',
    '\tat com.example.shop.payment.PaymentClient.charge(PaymentClient.java:139)',
    `\t... ${rng.int(20, 60)} more`,
  ];
}

function pythonTraceback(rng: Rng): string[] {
  const bad = rng.pick(['abc', 'n/a', '', '12x']);
  return [
    'Traceback (most recent call last):',
    '  File "/app/worker.py", line 88, in <module>',
    '    main()',
    '  File "/app/worker.py", line 61, in main',
    '    process(job)',
    `  File "/app/jobs/${rng.pick(['invoice', 'shipment', 'email'])}.py", line ${rng.int(10, 300)}, in process`,
    '    qty = int(row["quantity"])',
    `ValueError: invalid literal for int() with base 10: '${bad}'`,
  ];
}

function workerFields(rng: Rng, iso: string): Record<string, string | number | boolean> {
  return {
    ts: iso,
    level: rng.pick(['info', 'info', 'debug', 'warn']),
    msg: `processed ${rng.pick(['invoice', 'shipment', 'email'])} job`,
    job_id: rng.hex(12),
    attempt: rng.int(1, 3),
    duration: `${rng.int(1, 900)}ms`,
    ok: rng.chance(0.95),
  };
}

function corednsLine(rng: Rng): string {
  return `[INFO] ${ip(rng)}:${rng.int(30000, 60000)} - ${rng.int(1, 65535)} "${rng.pick(['A', 'AAAA', 'SRV'])} IN ${rng.pick(['api', 'db', 'cache'])}.shop.svc.cluster.local. udp 64 false 1232" NOERROR qr,aa,rd 106 0.000${rng.int(100, 999)}s`;
}

export function logfmt(fields: Record<string, string | number | boolean>): string {
  return Object.entries(fields)
    .map(([k, v]) => {
      const s = String(v);
      return /[\s"=]/.test(s) || s === '' ? `${k}=${JSON.stringify(s)}` : `${k}=${s}`;
    })
    .join(' ');
}

// ---------------------------------------------------------------------------------------------
// Bulk corpus for benchmarks

export interface CriCorpusOptions {
  /** Root folder: the tree goes under `<dir>/var/log/pods` and `<dir>/var/log/containers`. */
  dir: string;
  /** Containers (one live file each). Default 50. */
  files?: number;
  /** Approximate total size; every file gets an equal share (a file ends at the first line past it). */
  totalBytes: number;
  seed?: number;
  /** One 20 KiB line (P 16384 + F rest) every this many lines per file. Default 1000; 0 = none. */
  longLineEvery?: number;
}

export interface CriCorpus {
  /** Number of log files. */
  files: number;
  /** Logical records after P/F joining (= F lines). */
  lines: number;
  /** CRI lines on disk (P and F). */
  physicalLines: number;
  bytes: number;
  /** Absolute paths of the log files (`.../var/log/pods/.../0.log`). */
  paths: string[];
  /** Absolute `<dir>/var/log/containers`: glob `*.log` in it for the symlinks. */
  containersDir: string;
}

const CORPUS_NAMESPACES = ['default', 'shop', 'payments', 'kube-system', 'monitoring'];
const CORPUS_APPS = ['web', 'api', 'checkout', 'cart', 'search', 'auth', 'ledger', 'mailer', 'gateway', 'catalog'];
const CORPUS_CONTAINERS = ['app', 'sidecar'];
const LONG_LINE_BYTES = 20 * 1024;
const FLUSH_BYTES = 4 * 1024 * 1024;

/**
 * Writes a CRI corpus fast (buffered ~4 MiB writes): `files` containers spread over pods of a few
 * namespaces, lines of 150-400 content bytes (JSON and text bodies, ~10% on stderr), and every
 * `longLineEvery` lines a 20 KiB line written as P (16384 bytes) + F (rest); while such a line is
 * open on stdout, a stderr line sometimes comes in between (the join is per stream). All content is
 * ASCII. Deterministic for a seed: same options, same bytes.
 */
export function generateCriCorpus(options: CriCorpusOptions): CriCorpus {
  const files = options.files ?? 50;
  const seed = options.seed ?? 1;
  const longEvery = options.longLineEvery ?? 1000;
  const rng = new Rng(seed);
  const root = resolve(options.dir);
  const podsDir = join(root, 'var/log/pods');
  const containersDir = join(root, 'var/log/containers');
  fs.mkdirSync(podsDir, { recursive: true });
  fs.mkdirSync(containersDir, { recursive: true });

  // A pool of lowercase words to slice bodies from; one per corpus, from the seed.
  let pool = '';
  while (pool.length < 1 << 18) pool += rng.pick(WORDS) + (rng.chance(0.1) ? ', ' : ' ');
  let hexPool = '';
  while (hexPool.length < 1 << 14) hexPool += rng.hex(64);
  const slice = (n: number) => {
    const at = Math.floor(rng.next() * (pool.length - n));
    return pool.substring(at, at + n);
  };
  const hex = (n: number) => {
    const at = Math.floor(rng.next() * (hexPool.length - n));
    return hexPool.substring(at, at + n);
  };

  const share = Math.ceil(options.totalBytes / files);
  const result: CriCorpus = { files, lines: 0, physicalLines: 0, bytes: 0, paths: [], containersDir };

  for (let f = 0; f < files; f++) {
    const ns = CORPUS_NAMESPACES[f % CORPUS_NAMESPACES.length]!;
    const app = CORPUS_APPS[Math.floor(f / 2) % CORPUS_APPS.length]!;
    const pod = `${app}-${rng.chars(K8S_SUFFIX_ALPHABET, 10)}-${rng.chars(K8S_SUFFIX_ALPHABET, 5)}`;
    const container = CORPUS_CONTAINERS[f % 2]!;
    const podDir = join(podsDir, podDirName(ns, pod, rng.uuid()));
    fs.mkdirSync(join(podDir, container), { recursive: true });
    const logPath = join(podDir, container, '0.log');
    fs.symlinkSync(logPath, join(containersDir, symlinkName(ns, pod, container, rng.hex(64))));
    result.paths.push(logPath);

    const fd = fs.openSync(logPath, 'w');
    let parts: string[] = [];
    let pending = 0;
    let written = 0;
    // Clock: one second prefix cached, nanoseconds advanced per line.
    let sec = Date.parse(DEFAULT_START) / 1000 + f;
    let prefix = new Date(sec * 1000).toISOString().slice(0, 19);
    let nanos = rng.int(0, 999_999_999);
    const ts = (): string => {
      nanos += 1_000 + Math.floor(rng.next() * 4_000_000);
      if (nanos >= 1_000_000_000) {
        sec += Math.floor(nanos / 1_000_000_000);
        nanos %= 1_000_000_000;
        prefix = new Date(sec * 1000).toISOString().slice(0, 19);
      }
      if (nanos === 0) return prefix + 'Z';
      let digits = String(nanos).padStart(9, '0');
      let end = 9;
      while (digits.charCodeAt(end - 1) === 48) end--;
      if (end < 9) digits = digits.slice(0, end);
      return prefix + '.' + digits + 'Z';
    };
    const push = (line: string) => {
      parts.push(line);
      pending += line.length;
      result.physicalLines++;
      if (pending >= FLUSH_BYTES) flush();
    };
    const flush = () => {
      if (pending === 0) return;
      fs.writeSync(fd, parts.join(''));
      written += pending;
      parts = [];
      pending = 0;
    };

    let k = longEvery > 0 ? rng.int(0, longEvery - 1) : 0;
    while (written + pending < share) {
      const time = ts();
      if (longEvery > 0 && ++k % longEvery === 0) {
        const head = `{"time":"${time}","level":"debug","logger":"http","msg":"response dump","trace_id":"${hex(32)}","body":"`;
        const content = head + slice(LONG_LINE_BYTES - head.length - 2) + '"}';
        push(time + ' stdout P ' + content.slice(0, CONTAINERD_MAX_LINE_BYTES) + '\n');
        if (rng.chance(0.5)) {
          push(ts() + ' stderr F ' + textBody(ts(), rng.int(150, 400)) + '\n');
          result.lines++;
        }
        push(ts() + ' stdout F ' + content.slice(CONTAINERD_MAX_LINE_BYTES) + '\n');
        result.lines++;
        continue;
      }
      const stream = rng.next() < 0.1 ? ' stderr F ' : ' stdout F ';
      const size = 150 + Math.floor(rng.next() * 251);
      const body = rng.next() < 0.55 ? jsonBody(time, size) : textBody(time, size);
      push(time + stream + body + '\n');
      result.lines++;
    }
    flush();
    fs.closeSync(fd);
    result.bytes += written;
  }
  return result;

  function jsonBody(time: string, size: number): string {
    const level = rng.next() < 0.85 ? 'info' : rng.next() < 0.5 ? 'warn' : 'error';
    const head = `{"time":"${time}","level":"${level}","logger":"${CORPUS_APPS[Math.floor(rng.next() * 10)]}","trace_id":"${hex(32)}","status":${STATUSES[Math.floor(rng.next() * STATUSES.length)]},"duration_ms":${Math.floor(rng.next() * 5000) / 10},"msg":"`;
    return head + slice(Math.max(1, size - head.length - 2)) + '"}';
  }

  function textBody(time: string, size: number): string {
    const head =
      rng.next() < 0.5
        ? `10.244.${Math.floor(rng.next() * 4)}.${2 + Math.floor(rng.next() * 250)} - - [${time}] "${METHODS[Math.floor(rng.next() * METHODS.length)]} /api/v1/items/${Math.floor(rng.next() * 99999)} HTTP/1.1" ${STATUSES[Math.floor(rng.next() * STATUSES.length)]} ${Math.floor(rng.next() * 40000)} "-" "`
        : `${time.slice(0, 10)} ${time.slice(11, 23)}  INFO 1 --- [nio-8080-exec-${1 + Math.floor(rng.next() * 9)}] c.e.shop.OrderService : `;
    return head + slice(Math.max(1, size - head.length - 1)) + (head.endsWith('"') ? '"' : '.');
  }
}
