import { promises as fsp } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Backoff } from '../../agent/backoff.ts';

/**
 * Syslog over TCP, or TLS (RFC 5425), with RFC 6587 octet-counting framing: `<length> <message>`.
 * One connection; batches go out one after another, in order.
 *
 * What `send` resolving means: every byte of the batch was handed to the kernel's socket buffer.
 * It does NOT mean the server read, parsed or stored it: syslog over TCP has no application
 * acknowledgement. A server that stops reading (rsyslog does at once on SIGTERM, then closes
 * the connection with a reset) leaves what our and its socket buffers hold unread, and a killed
 * one loses what it read but had not stored: in test/syslog.test.ts, without replay, 540 to
 * 1,820 of 6,000 "sent" messages vanished across an rsyslog restart, with no error for them.
 * What this transport does about it:
 * - it reads the socket, so the server's close (FIN) or a reset is seen at once, also while
 *   idle, and it never writes to a connection the server has closed;
 * - a send whose connection ends before or while it is written rejects: the caller sends that
 *   batch again (a duplicate if it had in fact arrived);
 * - it keeps the batches written recently (`replay`) and, when a connection is lost, writes them
 *   again first on the next one: duplicates, bounded by that window, instead of silent loss.
 *   Loss remains possible when the server keeps a connection open without reading for longer
 *   than `replay.maxAgeMs`, when more than `replay.maxBytes` sit unread in socket buffers, when
 *   the server loses what it read long before, and when the agent itself dies (kernel buffers
 *   and the replay window are gone with it);
 * - a new connection carries no batch before it has stayed up for `settleMs`: servers that
 *   refuse a client after accepting it would otherwise swallow a batch.
 * Delivery the server confirms needs RELP, which this is not. close() comes closest: it waits
 * for the server to close its side after our FIN, which it does only once it read everything;
 * and when the connection was lost before that (also after the last send: a server restarting
 * just then), it writes the kept batches again on a new connection first, since they are the
 * only copy left of what the lost connection may not have delivered.
 */

export interface SyslogTlsOptions {
  /** PEM file of the CA(s) that sign the server's certificate; default: Node's bundled roots. */
  caFile?: string;
  /** Client certificate and key (PEM files), for servers that require them (mutual TLS). */
  certFile?: string;
  keyFile?: string;
  /** Name the server certificate must carry, also sent as SNI; default: `host`. */
  serverName?: string;
  /** Default true. False accepts any certificate: encryption without knowing who listens. */
  rejectUnauthorized?: boolean;
}

export interface SyslogTransportOptions {
  host: string;
  port: number;
  /** Present: TLS. */
  tls?: SyslogTlsOptions;
  /**
   * TCP connect plus TLS handshake; default 10 s. Also how long close() waits for the server to
   * close its side, and how long after it began close() still reconnects to replay (so a close
   * takes at most about twice this).
   */
  connectTimeoutMs?: number;
  /**
   * How long a new connection must stay up before the first batch goes out; default 250 ms.
   * Servers refuse some clients only after accepting them, within a round trip: rsyslog checks a
   * client certificate after the TLS 1.3 handshake is done on our side, and drops senders not in
   * AllowedSender after accept(). Without the wait a batch would be "written" into that connection.
   */
  settleMs?: number;
  /** Wait before connecting again after a failure: doubling from `initialMs` (250) to `maxMs` (30 000), ±20%. */
  backoff?: { initialMs?: number; maxMs?: number };
  /**
   * Batches kept after they were written, sent again first after a lost connection. `maxBytes`
   * (default 4 MiB; 0 turns replay off) should cover the socket buffers that can hold unread data
   * (Linux: our tcp_wmem plus the server's tcp_rmem, as autotuned); `maxAgeMs` (default 10 s) is
   * how long a server may stop reading before it closes, and bounds the duplicates of a slow stream.
   */
  replay?: { maxBytes?: number; maxAgeMs?: number };
  /** Connection state changes (connected, lost, failing, recovered), not every retry. */
  log?: (level: 'info' | 'warn' | 'error', msg: string) => void;
}

/** What went wrong, for a metric or a log line; every kind means "send the same batch again later". */
export type SyslogErrorKind =
  /** TCP connect refused, unreachable, name not resolved. */
  | 'connect'
  /** Connect or handshake took longer than connectTimeoutMs. */
  | 'timeout'
  /** The handshake failed (certificate not trusted, wrong name, expired, protocol), or a TLS file is unreadable. */
  | 'tls'
  /** An established connection broke: reset, closed by the server, write error. */
  | 'connection'
  /** close() was called. */
  | 'closed'
  /** The caller's AbortSignal fired (the connection, if it was being written, is dropped). */
  | 'aborted';

/** Between close()'s attempts to reconnect for the replay, at least (the configured backoff may be off). */
const CLOSE_RETRY_MS = 200;

export class SyslogTransportError extends Error {
  readonly kind: SyslogErrorKind;
  /** `tcp://host:port` or `tls://host:port`. */
  readonly endpoint: string;
  /** The system or OpenSSL code when there is one: ECONNREFUSED, ECONNRESET, UNABLE_TO_VERIFY_LEAF_SIGNATURE... */
  readonly code: string | undefined;

  constructor(kind: SyslogErrorKind, endpoint: string, message: string, cause?: Error) {
    super(`syslog ${endpoint}: ${message}`, cause ? { cause } : undefined);
    this.name = 'SyslogTransportError';
    this.kind = kind;
    this.endpoint = endpoint;
    this.code = (cause as NodeJS.ErrnoException | undefined)?.code;
  }
}

/** Counters for metrics (and tests). */
export interface SyslogTransportStats {
  connects: number;
  /** Established connections that ended before the server read to the end (without close(), or during its wait). */
  losses: number;
  /** Batches and messages written again after a lost connection (possible duplicates). */
  replayedBatches: number;
  replayedMessages: number;
}

/** Why a handshake failed, in words, for the codes OpenSSL and Node give (the code is appended). */
function describeTlsError(err: NodeJS.ErrnoException): string {
  const code = err.code ?? '';
  // Node appends advice on its own flags ("; if the root CA is installed locally, try running
  // Node.js with --use-system-ca"), which is no help to someone writing the agent's config.
  const reason = err.message.split('; ')[0];
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `server certificate does not match the name: ${reason}`;
  if (/CERT|SIGNATURE|ISSUER|SELF_SIGNED|CHAIN|VERIFY/.test(code)) return `server certificate not trusted: ${reason} (${code})`;
  return `TLS handshake failed: ${reason}${code ? ` (${code})` : ''}`;
}

/** Octet-counting frames (`<len> <msg>`) of a batch in one buffer of its own: one write, and kept for replay. */
export function frameOctetCounted(messages: readonly (Buffer | string)[]): Buffer {
  const prefixes = new Array<string>(messages.length);
  let total = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    // The length goes before the bytes, so it is counted first (V8 counts UTF-8 without encoding).
    const n = typeof m === 'string' ? Buffer.byteLength(m) : m.length;
    const prefix = `${n} `;
    prefixes[i] = prefix;
    total += prefix.length + n;
  }
  const buf = Buffer.allocUnsafeSlow(total);
  let off = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    off += buf.write(prefixes[i]!, off, 'latin1');
    off += typeof m === 'string' ? buf.write(m, off) : m.copy(buf, off);
  }
  return buf;
}

interface Kept {
  readonly frames: Buffer;
  readonly messages: number;
  /** When it was last written (ms since the epoch). */
  at: number;
}

export class SyslogTransport {
  readonly endpoint: string;
  readonly stats: SyslogTransportStats = { connects: 0, losses: 0, replayedBatches: 0, replayedMessages: 0 };
  private readonly opts: SyslogTransportOptions;
  private readonly connectTimeoutMs: number;
  private readonly settleMs: number;
  private readonly backoff: Backoff;
  private readonly replayMaxBytes: number;
  private readonly replayMaxAgeMs: number;
  private readonly log: (level: 'info' | 'warn' | 'error', msg: string) => void;

  /** The connection, while usable: set once connected (and handshaken), cleared at the first sign of its end. */
  private socket: Socket | undefined;
  /** Why each connection ended, when an error said so. */
  private readonly causes = new WeakMap<Socket, Error>();
  /** No connection attempt before this time (ms since the epoch): the backoff after a failure. */
  private retryAt = 0;
  /** Consecutive failures: the first is logged, then the recovery, not every retry. */
  private failures = 0;
  /** Sends run one after another: this is the last one queued. */
  private tail: Promise<unknown> = Promise.resolve();
  private writing = false;
  private closed = false;
  private closing: Promise<boolean> | undefined;
  /** Wakes a send waiting out the backoff when close() is called. */
  private wake: (() => void) | undefined;
  /** Batches written recently, oldest first, and their size. */
  private kept: Kept[] = [];
  private keptBytes = 0;
  /**
   * A connection was lost since `kept` was last written: write it again first. Also set when
   * nothing is kept yet: a send whose write completed just before the loss was seen keeps its
   * batch after this was set.
   */
  private replayDue = false;

  constructor(opts: SyslogTransportOptions) {
    this.opts = opts;
    this.endpoint = `${opts.tls ? 'tls' : 'tcp'}://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.settleMs = opts.settleMs ?? 250;
    this.backoff = new Backoff(opts.backoff?.initialMs ?? 250, opts.backoff?.maxMs ?? 30_000);
    this.replayMaxBytes = opts.replay?.maxBytes ?? 4 * 1024 * 1024;
    this.replayMaxAgeMs = opts.replay?.maxAgeMs ?? 10_000;
    this.log = opts.log ?? (() => {});
  }

  /** Whether a connection is up now (a send may still find it gone). */
  get connected(): boolean {
    return this.socket !== undefined;
  }

  /**
   * Sends one batch of messages (RFC 5424 text, without framing), after the sends before it.
   * Resolves with the batch's framed size once all its bytes were written to the socket (see
   * the top of this file for what that does and does not promise). Rejects with a
   * SyslogTransportError when no connection could be made (one attempt, after waiting out the
   * backoff) or the connection ended before the batch was fully written. Part of it may have
   * arrived: the caller's retry may duplicate up to this batch, and the replay before it the
   * recent batches (stats.replayedMessages). `signal` cuts the backoff wait, the connect, and a
   * write held up by a server that does not read (by dropping the connection: the replay then
   * covers what it may not have read).
   */
  send(messages: readonly (Buffer | string)[], signal?: AbortSignal): Promise<number> {
    const run = this.tail.then(() => this.sendNow(messages, signal));
    this.tail = run.catch(() => {});
    return run;
  }

  /**
   * Closes after the sends queued so far (one waiting out the backoff rejects at once); later
   * sends reject. Sends FIN and waits (up to connectTimeoutMs) for the server to close its side,
   * which rsyslog does once it read to the end. A connection lost before that, found at close or
   * during the wait, is not the end: the kept batches are written again on a new connection,
   * which is then closed the same way (reconnects: the first at once, then with the backoff,
   * until connectTimeoutMs after close began). Resolves true when the server confirmed it read
   * everything this transport still kept, false otherwise (logged).
   */
  close(): Promise<boolean> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<boolean> {
    this.closed = true;
    this.wake?.();
    await this.tail;
    const giveUpAt = Date.now() + this.connectTimeoutMs;
    let confirmed = false;
    // A replay into a server that does not read would wait for 'drain' for ever.
    const stuck = setTimeout(() => {
      const socket = this.socket;
      if (!socket) return;
      this.causes.set(socket, new Error(`the server did not read the replay within ${this.connectTimeoutMs} ms of close()`));
      socket.destroy();
    }, this.connectTimeoutMs);
    for (let attempt = 0; ; attempt++) {
      const socket = this.socket;
      this.socket = undefined;
      if (socket) {
        const outcome = await this.finish(socket);
        if (outcome !== 'lost') {
          confirmed = outcome === 'confirmed';
          break;
        }
        this.stats.losses++;
        this.replayDue = true;
        this.failed(this.lostError(socket));
      }
      if (!this.replayDue || this.kept.length === 0) {
        confirmed = true;
        break;
      }
      // Lost after the last send (or just now): the kept batches may not have been read, and this
      // is their last chance. The first attempt does not wait out the backoff of the loss; the
      // others wait at least CLOSE_RETRY_MS, also with the backoff turned off.
      const wait = attempt === 0 ? 0 : Math.max(CLOSE_RETRY_MS, this.retryAt - Date.now());
      if (Date.now() + wait >= giveUpAt) break;
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      try {
        await this.replayOn(await this.establish(giveUpAt - Date.now()));
      } catch {
        // Logged by failed() (the first of a series); the loop tries again until giveUpAt.
      }
    }
    clearTimeout(stuck);
    if (!confirmed && this.kept.length > 0) {
      const messages = this.kept.reduce((n, k) => n + k.messages, 0);
      this.log('warn', `syslog ${this.endpoint}: closed without the server confirming it read everything; up to ${messages} recent messages may be lost`);
    }
    this.kept = [];
    this.keptBytes = 0;
    this.replayDue = false;
    return confirmed;
  }

  /**
   * FIN, then waits for the server's side to close: 'confirmed' when it closed cleanly (it read
   * to the end), 'lost' when the connection broke first (a reset: it did not), 'timeout' when it
   * kept the connection open past connectTimeoutMs (alive, but not saying).
   */
  private finish(socket: Socket): Promise<'confirmed' | 'lost' | 'timeout'> {
    if (socket.destroyed) return Promise.resolve('lost');
    return new Promise((resolve) => {
      let ended = false;
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        socket.destroy();
      }, this.connectTimeoutMs);
      socket.once('end', () => (ended = true));
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(timedOut ? 'timeout' : ended && !this.causes.has(socket) ? 'confirmed' : 'lost');
      });
      socket.end();
    });
  }

  private async sendNow(messages: readonly (Buffer | string)[], signal: AbortSignal | undefined): Promise<number> {
    if (this.closed) throw new SyslogTransportError('closed', this.endpoint, 'transport closed');
    if (signal?.aborted) throw this.abortedError();
    if (messages.length === 0) return 0;
    const frames = frameOctetCounted(messages);
    const socket = this.socket ?? (await this.connect(signal));
    const onAbort = () => {
      this.causes.set(socket, this.abortedError());
      socket.destroy();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    this.writing = true;
    try {
      if (this.replayDue) await this.replay(socket);
      await this.write(socket, frames);
    } catch (err) {
      throw signal?.aborted ? this.abortedError() : err;
    } finally {
      this.writing = false;
      signal?.removeEventListener('abort', onAbort);
    }
    const now = Date.now();
    this.keep({ frames, messages: messages.length, at: now });
    this.age(now);
    // The write may have completed just before a loss was seen (both in one event loop turn):
    // the batch is kept for the replay, but that is no recovery.
    if (this.socket !== socket) return frames.length;
    if (this.failures > 0) this.log('info', `syslog ${this.endpoint}: sending again after ${this.failures} failure(s)`);
    this.failures = 0;
    this.backoff.reset();
    return frames.length;
  }

  private abortedError(): SyslogTransportError {
    return new SyslogTransportError('aborted', this.endpoint, 'send aborted');
  }

  /** The kept batches, again, in their order, before anything new: the server sees the stream resume where it may have stopped reading. */
  private async replay(socket: Socket): Promise<void> {
    const now = Date.now();
    for (const k of this.kept) {
      await this.write(socket, k.frames);
      k.at = now;
      this.stats.replayedBatches++;
      this.stats.replayedMessages += k.messages;
    }
    this.replayDue = false;
  }

  private async replayOn(socket: Socket): Promise<void> {
    this.writing = true;
    try {
      await this.replay(socket);
    } finally {
      this.writing = false;
    }
  }

  private keep(k: Kept): void {
    if (this.replayMaxBytes <= 0) return;
    this.kept.push(k);
    this.keptBytes += k.frames.length;
    // The newest batch stays even when alone above maxBytes: it is the likeliest to be unread.
    while (this.keptBytes > this.replayMaxBytes && this.kept.length > 1) this.keptBytes -= this.kept.shift()!.frames.length;
  }

  /**
   * Forgets batches written longer than maxAgeMs ago. Only called while writes go through (after
   * a send) or the connection was idle when lost: a write held up because the server stopped
   * reading must not age out what it has not read.
   */
  private age(now: number): void {
    while (this.kept.length > 0 && this.kept[0]!.at < now - this.replayMaxAgeMs) this.keptBytes -= this.kept.shift()!.frames.length;
  }

  /**
   * Writes and resolves once the socket took every byte (the write callback; and 'drain' when
   * write() said its buffer is full, so nothing more is queued in memory before it empties).
   * Rejects if the connection ends first, the server's FIN included: bytes that reach a closed
   * socket are dropped by the server's kernel, yet our write may still succeed locally.
   */
  private write(socket: Socket, frames: Buffer): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let written = false;
      let drained = true;
      let settled = false;
      const settle = (err?: Error) => {
        if (settled || (!err && !(written && drained))) return;
        settled = true;
        socket.off('drain', onDrain);
        socket.off('end', onEnd);
        socket.off('close', onEnd);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => {
        drained = true;
        settle();
      };
      let writeError: Error | undefined;
      const onEnd = () => settle(this.lostError(socket, writeError));
      if (socket !== this.socket) return onEnd();
      socket.on('end', onEnd);
      socket.on('close', onEnd);
      const ok = socket.write(frames, (err) => {
        written = true;
        // A failed write destroys the socket; its 'close' settles, with the socket's own error
        // (ECONNRESET) rather than this one, which may only say the write was cancelled.
        if (err) writeError = err;
        else settle();
      });
      if (!ok) {
        drained = false;
        socket.on('drain', onDrain);
      }
    });
  }

  /** Connects, after the backoff when the last attempt failed. One attempt per call. */
  private async connect(signal: AbortSignal | undefined): Promise<Socket> {
    const wait = this.retryAt - Date.now();
    if (wait > 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, wait);
        this.wake = done;
        signal?.addEventListener('abort', done, { once: true });
      });
      if (this.closed) throw new SyslogTransportError('closed', this.endpoint, 'transport closed');
      if (signal?.aborted) throw this.abortedError();
    }
    return this.establish(this.connectTimeoutMs, signal);
  }

  /** One connection attempt, now; the connection becomes the transport's. */
  private async establish(timeoutMs: number, signal?: AbortSignal): Promise<Socket> {
    let socket: Socket;
    try {
      socket = await this.open(timeoutMs, signal);
    } catch (err) {
      // Giving up on the caller's word is no failure of the server's: no backoff, nothing logged.
      if ((err as SyslogTransportError).kind === 'aborted') throw err;
      this.failed(err as SyslogTransportError);
      throw err;
    }
    this.socket = socket;
    this.stats.connects++;
    this.watch(socket);
    this.log('info', `syslog ${this.endpoint}: connected`);
    return socket;
  }

  private failed(err: SyslogTransportError): void {
    this.retryAt = Date.now() + this.backoff.next();
    if (this.failures++ === 0) this.log('warn', `${err.message}; retrying with backoff`);
  }

  /** TCP connect, and the TLS handshake when configured, within timeoutMs. */
  private async open(timeoutMs: number, signal?: AbortSignal): Promise<Socket> {
    const { host, port, tls } = this.opts;
    // Read per connection: a renewed certificate (a rotated Secret) is used from the next connect on.
    let files: (Buffer | undefined)[] = [];
    if (tls) {
      try {
        files = await Promise.all([tls.caFile, tls.certFile, tls.keyFile].map((f) => (f ? fsp.readFile(f) : undefined)));
      } catch (err) {
        throw new SyslogTransportError('tls', this.endpoint, `cannot read a TLS file: ${(err as Error).message}`, err as Error);
      }
    }
    return new Promise<Socket>((resolve, reject) => {
      const socket: Socket = tls
        ? tlsConnect({
            host,
            port,
            // Without serverName Node sends `host` as SNI (unless an IP) and checks the certificate against it.
            ...(tls.serverName ? { servername: tls.serverName } : {}),
            ca: files[0],
            cert: files[1],
            key: files[2],
            rejectUnauthorized: tls.rejectUnauthorized ?? true,
          })
        : netConnect({ host, port });
      let tcpUp = false;
      let settling = false;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => fail(this.abortedError());
      const fail = (err: SyslogTransportError) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.destroy();
        reject(err);
      };
      if (signal?.aborted) return fail(this.abortedError());
      signal?.addEventListener('abort', onAbort, { once: true });
      /** The server hung up during the settle wait: it took the connection, but not us. */
      const refused = (err?: Error) => {
        const why = tls
          ? 'the server closed the connection right after the TLS handshake: it may require a client certificate, or not accept the one given'
          : 'the server closed the connection right after accepting it: it may not accept this sender';
        fail(new SyslogTransportError(tls ? 'tls' : 'connect', this.endpoint, why + (err ? ` (${err.message})` : ''), err));
      };
      const onConnect = () => (tcpUp = true);
      const onError = (err: NodeJS.ErrnoException) => {
        if (settling) refused(err);
        else if (tls && tcpUp) fail(new SyslogTransportError('tls', this.endpoint, describeTlsError(err), err));
        else fail(new SyslogTransportError('connect', this.endpoint, `cannot connect: ${err.message}`, err));
      };
      const onEnd = () => refused();
      const onClose = () => {
        if (settling) refused();
        else fail(new SyslogTransportError(tls ? 'tls' : 'connect', this.endpoint, 'connection closed by the server while connecting'));
      };
      const onReady = () => {
        clearTimeout(timer);
        settling = true;
        // Read, so that a FIN is seen during the wait (the server sends nothing else).
        socket.resume();
        timer = setTimeout(() => {
          signal?.removeEventListener('abort', onAbort);
          socket.off('connect', onConnect);
          socket.off('error', onError);
          socket.off('end', onEnd);
          socket.off('close', onClose);
          resolve(socket);
        }, this.settleMs);
      };
      timer = setTimeout(() => {
        const what = tls && tcpUp ? 'TLS handshake not done' : 'no TCP connection';
        fail(new SyslogTransportError('timeout', this.endpoint, `${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', onConnect);
      socket.on('error', onError);
      socket.on('end', onEnd);
      socket.on('close', onClose);
      socket.once(tls ? 'secureConnect' : 'connect', onReady);
    });
  }

  /**
   * Watches an established connection. The server sends nothing on a syslog connection, so
   * reading only discards; but it is how the server's FIN ('end') or a reset is seen while we
   * are idle, and the connection is dropped at once, not found dead by the next batch.
   */
  private watch(socket: Socket): void {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    const lost = () => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.stats.losses++;
      // Lost while idle: what was written long ago was read long ago (a server reading normally
      // takes microseconds), so only the recent batches go out again.
      if (!this.writing) this.age(Date.now());
      this.replayDue = true;
      this.failed(this.lostError(socket));
      if (!socket.destroyed) socket.destroy();
    };
    socket.on('error', (err) => {
      this.causes.set(socket, err);
      lost();
    });
    socket.on('end', lost);
    socket.on('close', lost);
    socket.resume();
  }

  private lostError(socket: Socket, err?: Error): SyslogTransportError {
    const cause = this.causes.get(socket) ?? err;
    return new SyslogTransportError('connection', this.endpoint, cause ? `connection lost: ${cause.message}` : 'connection closed by the server', cause);
  }
}
