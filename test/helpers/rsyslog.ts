import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, waitFor } from './child_agent.ts';

/**
 * A real rsyslogd for the syslog output's tests (Debian packages `rsyslog`, and `rsyslog-gnutls`
 * for TLS), run in the foreground with a generated config in a temp folder: imtcp on a free
 * loopback port with octet-counted framing, and every message written by omfile as one JSON
 * object per line (the fields rsyslog parsed, and the raw message), so a test compares each
 * message with what it sent.
 */

const RSYSLOGD_CANDIDATES = ['/usr/sbin/rsyslogd', '/sbin/rsyslogd'];
/** Where rsyslog's modules live: Debian's multiarch folder (`/usr/lib/<triplet>/rsyslog`), others. */
function moduleDirs(): string[] {
  const multiarch = existsSync('/usr/lib') ? readdirSync('/usr/lib').filter((d) => d.endsWith('-linux-gnu')) : [];
  return [...multiarch.map((d) => `/usr/lib/${d}/rsyslog`), '/usr/lib/rsyslog', '/usr/lib64/rsyslog'];
}
export const INSTALL_HINT = 'rsyslog not installed: apt-get install rsyslog rsyslog-gnutls';

function findRsyslogd(): string | undefined {
  const onPath = spawnSync('sh', ['-c', 'command -v rsyslogd'], { encoding: 'utf8' }).stdout.trim();
  return onPath || RSYSLOGD_CANDIDATES.find((p) => existsSync(p));
}

/**
 * Whether rsyslogd (and its GnuTLS driver) are installed. Without them a suite skips with a
 * clear message, except in CI (`CI` set), where missing tools fail it instead of hiding it.
 */
export function rsyslogAvailable(): boolean {
  const missing: string[] = [];
  if (!findRsyslogd()) missing.push('rsyslogd');
  else if (!moduleDirs().some((d) => existsSync(join(d, 'lmnsd_gtls.so')))) missing.push('its GnuTLS driver (lmnsd_gtls.so)');
  // The test certificates are made with the openssl command.
  if (spawnSync('openssl', ['version']).status !== 0) missing.push('openssl');
  if (missing.length === 0) return true;
  const message =
    missing[0] === 'openssl'
      ? 'openssl not installed (the tests make their certificates with it): apt-get install openssl'
      : `${INSTALL_HINT}${missing.includes('openssl') ? ' openssl' : ''} (missing ${missing.join(' and ')})`;
  if (process.env.CI) throw new Error(message);
  console.warn(`SKIPPED: ${message}`);
  return false;
}

// --- certificates ----------------------------------------------------------------------------

export interface TestPki {
  /** CA the server certificate is signed by. */
  caFile: string;
  /** Server certificate for `localhost` and 127.0.0.1, and its key. */
  serverCertFile: string;
  serverKeyFile: string;
  /** A client certificate signed by the same CA, for mutual TLS. */
  clientCertFile: string;
  clientKeyFile: string;
  /** Another CA, which signed nothing the server uses: a client trusting only it must refuse the server. */
  otherCaFile: string;
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.error?.message ?? r.stderr}`);
}

/** A fresh CA, a server and a client certificate signed by it, and an unrelated CA, made by openssl now. */
export function makeTestPki(dir: string): TestPki {
  mkdirSync(dir, { recursive: true });
  const ca = (name: string) => {
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`], dir);
  };
  const leaf = (name: string, signer: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
    openssl(
      ['x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.pem`, '-CAkey', `${signer}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`],
      dir,
    );
  };
  ca('test-ca');
  ca('other-ca');
  leaf('server', 'test-ca', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'test-ca', 'extendedKeyUsage=clientAuth\n');
  return {
    caFile: join(dir, 'test-ca.pem'),
    serverCertFile: join(dir, 'server.pem'),
    serverKeyFile: join(dir, 'server.key'),
    clientCertFile: join(dir, 'client.pem'),
    clientKeyFile: join(dir, 'client.key'),
    otherCaFile: join(dir, 'other-ca.pem'),
  };
}

// --- rsyslogd --------------------------------------------------------------------------------

/** One message as rsyslog parsed and stored it (property names as in rsyslog's templates). */
export interface RsyslogLine {
  pri: string;
  timestamp: string;
  hostname: string;
  appName: string;
  procid: string;
  msgid: string;
  structuredData: string;
  msg: string;
  rawmsg: string;
}

/** The omfile template: one JSON object per message; `:::json` escapes each property for a JSON string. */
const FIELDS: readonly (readonly [keyof RsyslogLine, string])[] = [
  ['pri', 'pri'],
  ['timestamp', 'timestamp:::date-rfc3339'],
  ['hostname', 'hostname'],
  ['appName', 'app-name'],
  ['procid', 'procid'],
  ['msgid', 'msgid'],
  ['structuredData', 'structured-data'],
  ['msg', 'msg'],
  ['rawmsg', 'rawmsg'],
];

export interface RsyslogOptions {
  /** Folder for the config, pid file and output (created). */
  dir: string;
  /** Default: a free loopback port, kept across restarts. */
  port?: number;
  /** TLS (RFC 5425) with these server files; `authMode` `anon` (default) or `x509/certvalid` (client certificate required). */
  tls?: { caFile: string; certFile: string; keyFile: string; authMode?: 'anon' | 'x509/certvalid' };
  /** rsyslog's maxMessageSize; default 256k, above every test message. */
  maxMessageSize?: string;
}

export class Rsyslog {
  readonly dir: string;
  readonly outputPath: string;
  port = 0;
  stderr = '';
  /** Lines a killed rsyslogd left half written (ended by start(), skipped by lines()). */
  tornLines = 0;
  private readonly opts: RsyslogOptions;
  private proc: ChildProcess | undefined;

  constructor(opts: RsyslogOptions) {
    this.opts = opts;
    this.dir = opts.dir;
    this.outputPath = join(opts.dir, 'messages.jsonl');
    mkdirSync(opts.dir, { recursive: true });
  }

  config(): string {
    const q = (s: string) => JSON.stringify(s);
    const tls = this.opts.tls;
    const template = '{' + FIELDS.map(([key, prop]) => `\\"${key}\\":\\"%${prop.includes(':') ? prop : `${prop}:::json`}%\\"`).join(',') + '}\\n';
    return [
      'global(',
      `  workDirectory=${q(this.dir)}`,
      `  maxMessageSize=${q(this.opts.maxMessageSize ?? '256k')}`,
      // Store messages as received: by default rsyslog writes a control character as #ooo, and drops a trailing LF.
      '  parser.escapeControlCharactersOnReceive="off"',
      '  parser.dropTrailingLFOnReception="off"',
      ...(tls
        ? [
            '  defaultNetstreamDriver="gtls"',
            `  defaultNetstreamDriverCAFile=${q(tls.caFile)}`,
            `  defaultNetstreamDriverCertFile=${q(tls.certFile)}`,
            `  defaultNetstreamDriverKeyFile=${q(tls.keyFile)}`,
          ]
        : []),
      ')',
      'module(load="imtcp")',
      `template(name="kta_fields" type="string" string="${template}")`,
      // Its own ruleset, so rsyslogd's start/stop notes (default ruleset) stay out of the file.
      `ruleset(name="kta_remote") { action(type="omfile" file=${q(this.outputPath)} template="kta_fields") }`,
      `input(type="imtcp" address="127.0.0.1" port="${this.port}" supportOctetCountedFraming="on" ruleset="kta_remote"` +
        (tls ? ` streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode=${q(tls.authMode ?? 'anon')}` : '') +
        ')',
      '',
    ].join('\n');
  }

  /** Starts rsyslogd (again on the same port after stop()) and resolves once the port accepts connections. */
  async start(): Promise<void> {
    const bin = findRsyslogd();
    if (!bin) throw new Error(INSTALL_HINT);
    if (this.port === 0) this.port = this.opts.port ?? (await freePort());
    // A SIGKILL can stop omfile mid-line: end that line, so rsyslog's next line starts on its own.
    if (existsSync(this.outputPath)) {
      const text = readFileSync(this.outputPath);
      if (text.length > 0 && text[text.length - 1] !== 0x0a) {
        appendFileSync(this.outputPath, '\n');
        this.tornLines++;
      }
    }
    const confPath = join(this.dir, 'rsyslog.conf');
    writeFileSync(confPath, this.config());
    const proc = spawn(bin, ['-n', '-f', confPath, '-i', join(this.dir, 'rsyslogd.pid')], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    const collect = (d: Buffer) => {
      this.stderr += d.toString();
      if (this.stderr.length > 100_000) this.stderr = this.stderr.slice(-50_000);
    };
    proc.stdout!.on('data', collect);
    proc.stderr!.on('data', collect);
    await waitFor(
      `rsyslogd listening on 127.0.0.1:${this.port}`,
      async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`rsyslogd exited (${proc.exitCode ?? proc.signalCode}):\n${this.stderr}`);
        return accepts(this.port);
      },
      10_000,
      50,
    );
  }

  /** SIGTERM (rsyslog's orderly shutdown) or SIGKILL; resolves once the process is gone. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    await exited;
  }

  /**
   * SIGSTOP: rsyslogd stops reading, as it does between SIGTERM and its exit, but for as long as
   * a test needs; stop('SIGKILL') ends it from there. Resolves once every thread is stopped: the
   * signal takes effect when each is next scheduled, which on a loaded machine is after kill()
   * returned, so a thread could still read what a test sends next.
   */
  async pause(): Promise<void> {
    const pid = this.proc?.pid;
    if (pid === undefined) throw new Error('rsyslogd is not running');
    this.proc!.kill('SIGSTOP');
    const stopped = (task: string) => {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
      // "tid (comm) STATE ...": comm may hold spaces and parentheses, so the state follows the last ')'.
      return 'Tt'.includes(stat[stat.lastIndexOf(')') + 2]!);
    };
    await waitFor(`rsyslogd (pid ${pid}) stopped`, () => readdirSync(`/proc/${pid}/task`).every(stopped), 5000, 10);
  }

  /** For clean-ups after a failed test: SIGKILL now, without waiting. */
  kill(): void {
    this.proc?.kill('SIGKILL');
    this.proc = undefined;
  }

  /**
   * Every message written so far, parsed; an incomplete last line (still being written) is left
   * out, and so are the lines a SIGKILL tore (at most `tornLines`; any other bad line throws).
   */
  lines(): RsyslogLine[] {
    if (!existsSync(this.outputPath)) return [];
    const text = readFileSync(this.outputPath, 'utf8');
    const end = text.lastIndexOf('\n');
    if (end < 0) return [];
    const out: RsyslogLine[] = [];
    let torn = 0;
    text
      .slice(0, end)
      .split('\n')
      .forEach((line, i) => {
        try {
          out.push(JSON.parse(line) as RsyslogLine);
        } catch {
          if (++torn > this.tornLines) throw new Error(`${this.outputPath} line ${i + 1} is not JSON: ${line.slice(0, 500)}`);
        }
      });
    return out;
  }

  /** Waits until at least `n` messages are in the file. */
  async waitForLines(n: number, timeoutMs = 20_000): Promise<RsyslogLine[]> {
    let have = 0;
    try {
      return await waitFor(
        `${n} messages from rsyslog`,
        () => {
          const lines = this.lines();
          have = lines.length;
          return lines.length >= n ? lines : undefined;
        },
        timeoutMs,
        50,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; it wrote ${have}. rsyslogd said:\n${this.stderr.slice(-2000)}`, { cause: err });
    }
  }
}

/** Whether a TCP connection to the loopback port succeeds (closed again at once). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
