import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { frameOctetCounted, SyslogTransport, SyslogTransportError, type SyslogTransportOptions } from './transport.ts';

/**
 * A TCP server that records what each connection sent; `onConnection` scripts its behaviour.
 * Like rsyslog it closes a connection once it read to the end, unless `keepOpen`.
 */
class FakeServer {
  readonly server: Server;
  readonly connections: { socket: Socket; data: Buffer[] }[] = [];
  port = 0;

  constructor(onConnection: (socket: Socket, index: number) => void = () => {}, keepOpen = false) {
    this.server = createServer({ allowHalfOpen: true }, (socket) => {
      const conn = { socket, data: [] as Buffer[] };
      this.connections.push(conn);
      socket.on('data', (d: Buffer) => conn.data.push(d));
      socket.on('error', () => {});
      if (!keepOpen) socket.on('end', () => socket.end());
      onConnection(socket, this.connections.length - 1);
    });
  }

  async listen(port = 0): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  received(i: number): string {
    return Buffer.concat(this.connections[i]?.data ?? []).toString();
  }

  close(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  // Last made, first closed: a transport before its server, or its close() would reconnect to replay.
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
});

async function fake(onConnection?: (socket: Socket, index: number) => void, keepOpen = false): Promise<FakeServer> {
  const s = await new FakeServer(onConnection, keepOpen).listen();
  cleanups.push(() => s.close());
  return s;
}

function transport(port: number, opts: Partial<SyslogTransportOptions> = {}): SyslogTransport {
  const t = new SyslogTransport({ host: '127.0.0.1', port, settleMs: 20, backoff: { initialMs: 50, maxMs: 100 }, ...opts });
  cleanups.push(() => t.close());
  return t;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  for (const end = Date.now() + timeoutMs; !cond(); await sleep(10)) if (Date.now() > end) throw new Error('condition not met in time');
}

/** A port nothing listens on (bound, read, released). */
async function deadPort(): Promise<number> {
  const s = await new FakeServer().listen();
  const port = s.port;
  await s.close();
  return port;
}

describe('frameOctetCounted', () => {
  it('prefixes each message with its length in bytes and a space (RFC 6587 octet counting)', () => {
    expect(frameOctetCounted(['a', 'ü', Buffer.from('xyz'), '😀 x'.repeat(3)]).toString()).toBe('1 a2 ü3 xyz18 😀 x😀 x😀 x');
    expect(frameOctetCounted([]).length).toBe(0);
    const long = 'y'.repeat(12345);
    expect(frameOctetCounted([long]).toString()).toBe(`12345 ${long}`);
  });
});

describe('SyslogTransport over a scripted TCP server', () => {
  it('sends batches in order, one connection, and close() is confirmed by the server', async () => {
    const server = await fake();
    const t = transport(server.port);
    const sends = [t.send(['<14>1 - - - - - - one']), t.send(['<14>1 - - - - - - two', '<14>1 - - - - - - three']), t.send([])];
    await Promise.all(sends);
    expect(t.connected).toBe(true);
    expect(await t.close()).toBe(true);
    expect(server.connections.length).toBe(1);
    expect(server.received(0)).toBe('21 <14>1 - - - - - - one21 <14>1 - - - - - - two23 <14>1 - - - - - - three');
    await expect(t.send(['late'])).rejects.toMatchObject({ kind: 'closed' });
  });

  it('close() says false when the server does not close its side in time', async () => {
    const server = await fake(undefined, true); // reads, never closes
    const t = transport(server.port, { connectTimeoutMs: 200 });
    await t.send(['x']);
    expect(await t.close()).toBe(false);
  });

  it('a refused connection is a clear, retryable error, and the next try waits out the backoff', async () => {
    const port = await deadPort();
    const t = transport(port, { backoff: { initialMs: 300, maxMs: 1000 } });
    const err = (await t.send(['x']).catch((e: unknown) => e)) as SyslogTransportError;
    expect(err).toBeInstanceOf(SyslogTransportError);
    expect(err.kind).toBe('connect');
    expect(err.code).toBe('ECONNREFUSED');
    expect(err.endpoint).toBe(`tcp://127.0.0.1:${port}`);
    expect(err.message).toBe(`syslog tcp://127.0.0.1:${port}: cannot connect: connect ECONNREFUSED 127.0.0.1:${port}`);

    // The server comes up; the retry connects, but not before the backoff (300 ms ±20%).
    const server = await new FakeServer().listen(port);
    cleanups.push(() => server.close());
    const started = Date.now();
    await t.send(['x']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    await sleep(50);
    expect(server.received(0)).toBe('1 x');
  });

  it('a server that hangs up right after accepting is a connect error, and nothing is written', async () => {
    const server = await fake((socket) => socket.destroy());
    const t = transport(server.port, { settleMs: 200 });
    await expect(t.send(['x'])).rejects.toThrow(
      `syslog tcp://127.0.0.1:${server.port}: the server closed the connection right after accepting it: it may not accept this sender`,
    );
    expect(server.received(0)).toBe('');
  });

  it('gives up a TLS handshake the server never answers after connectTimeoutMs', async () => {
    const server = await fake(); // plain TCP: takes the ClientHello, says nothing
    const t = transport(server.port, { tls: {}, connectTimeoutMs: 200 });
    const started = Date.now();
    await expect(t.send(['x'])).rejects.toMatchObject({
      kind: 'timeout',
      message: `syslog tls://127.0.0.1:${server.port}: TLS handshake not done within 200 ms`,
    });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('waits while the server does not read (backpressure), and resolves once it does', async () => {
    let reader: Socket | undefined;
    const server = await fake((socket) => {
      reader = socket;
      socket.pause();
    });
    const t = transport(server.port);
    const big = 'z'.repeat(1024 * 1024);
    let done = false;
    const sending = t.send(Array.from({ length: 64 }, () => big)).then(() => (done = true));
    await sleep(500);
    expect(done).toBe(false); // 64 MiB do not fit in socket buffers
    reader!.resume();
    await sending;
    await t.close();
    expect(server.received(0).length).toBe(64 * (1024 * 1024 + '1048576 '.length));
  });

  it('a reset while writing rejects that send; the retry goes out on a new connection', async () => {
    const server = await fake((socket, i) => {
      if (i === 0) socket.once('data', () => socket.resetAndDestroy());
    });
    const t = transport(server.port);
    const batch = Array.from({ length: 32 }, (_, i) => `${i} ${'r'.repeat(1024 * 1024)}`);
    const err = (await t.send(batch).catch((e: unknown) => e)) as SyslogTransportError;
    expect(err).toBeInstanceOf(SyslogTransportError);
    expect(err.kind).toBe('connection');
    expect(['ECONNRESET', 'EPIPE']).toContain(err.code);
    expect(err.message).toMatch(new RegExp(`^syslog tcp://127\\.0\\.0\\.1:${server.port}: connection lost: `));
    await t.send(batch);
    await t.close();
    expect(server.connections.length).toBe(2);
    expect(server.received(1)).toBe(frameOctetCounted(batch).toString());
  });

  it('after the server closes an idle connection, recent batches are sent again first (replay)', async () => {
    const server = await fake((socket, i) => {
      if (i === 0) socket.once('data', () => setTimeout(() => socket.end(), 50));
    });
    const t = transport(server.port);
    await t.send(['first']);
    await sleep(200);
    expect(t.connected).toBe(false); // the FIN was seen while idle
    await t.send(['second']);
    expect(await t.close()).toBe(true);
    expect(server.received(0)).toBe('5 first');
    expect(server.received(1)).toBe('5 first6 second');
    expect(t.stats).toEqual({ connects: 2, losses: 1, replayedBatches: 1, replayedMessages: 1 });
  });

  it('a connection lost after the last send: close() writes the kept batches again on a new connection, and is confirmed there', async () => {
    // A server that stops reading and resets later (rsyslog on SIGTERM): every send "succeeds"
    // into the socket buffers, and the reset comes when nothing is left to send.
    let first: Socket | undefined;
    const server = await fake((socket, i) => {
      if (i === 0) {
        first = socket;
        socket.pause();
      }
    });
    const logs: string[] = [];
    const t = transport(server.port, { log: (level, msg) => logs.push(`${level} ${msg}`) });
    const batches = [['one'], ['two', 'three'], ['four']];
    for (const b of batches) await t.send(b);
    first!.resetAndDestroy();
    await until(() => !t.connected);
    expect(await t.close()).toBe(true);
    expect(server.connections.length).toBe(2);
    expect(server.received(0)).toBe(''); // never read: without the replay all four were lost
    expect(server.received(1)).toBe('3 one3 two5 three4 four');
    expect(t.stats).toEqual({ connects: 2, losses: 1, replayedBatches: 3, replayedMessages: 4 });
    expect(logs.filter((l) => l.startsWith('warn'))).toEqual([`warn syslog tcp://127.0.0.1:${server.port}: connection lost: read ECONNRESET; retrying with backoff`]);
  });

  it('a reset while close() waits for the server: the kept batches go out again on a new connection', async () => {
    let first: Socket | undefined;
    const server = await fake((socket, i) => {
      if (i === 0) {
        first = socket;
        socket.pause();
      }
    });
    const t = transport(server.port);
    await t.send(['a']);
    await t.send(['b']);
    const closing = t.close();
    await sleep(100); // close() sent FIN and waits; the server, not reading, then goes away
    first!.resetAndDestroy();
    expect(await closing).toBe(true);
    expect(server.received(1)).toBe('1 a1 b');
    expect(t.stats).toMatchObject({ connects: 2, losses: 1, replayedMessages: 2 });
    expect(await t.close()).toBe(true); // the same answer again, no second close
  });

  it('a connection lost before close() with the server still down: false after connectTimeoutMs of retries, and logged', async () => {
    const server = await fake((socket) => socket.pause());
    const logs: string[] = [];
    const t = transport(server.port, { connectTimeoutMs: 300, log: (level, msg) => logs.push(`${level} ${msg}`) });
    await t.send(['x', 'y']);
    await server.close(); // stops listening and resets the connection, with x and y unread
    await until(() => !t.connected);
    expect(await t.close()).toBe(false);
    expect(t.stats.connects).toBe(1);
    expect(logs.at(-1)).toBe(`warn syslog tcp://127.0.0.1:${server.port}: closed without the server confirming it read everything; up to 2 recent messages may be lost`);
  });

  it('close() gives up a replay the new connection does not read, after connectTimeoutMs', async () => {
    let first: Socket | undefined;
    const server = await fake((socket, i) => {
      if (i === 0) first = socket;
      else socket.pause(); // the new connection takes nothing
    });
    const t = transport(server.port, { connectTimeoutMs: 500, replay: { maxBytes: 64 * 1024 * 1024 } });
    const big = 'k'.repeat(1024 * 1024);
    for (let i = 0; i < 16; i++) await t.send([big]);
    await until(() => server.received(0).length === 16 * (big.length + '1048576 '.length));
    first!.resetAndDestroy();
    await until(() => !t.connected);
    expect(await t.close()).toBe(false); // 16 MiB do not fit in socket buffers: the replay cannot finish
    expect(t.stats.connects).toBe(2);
  });

  it('an aborted send stops waiting out the backoff, and the connect', async () => {
    const port = await deadPort();
    const t = transport(port, { backoff: { initialMs: 60_000, maxMs: 60_000 } });
    await expect(t.send(['x'])).rejects.toMatchObject({ kind: 'connect' });
    const ac = new AbortController();
    const sending = t.send(['x'], ac.signal);
    setTimeout(() => ac.abort(), 50);
    await expect(sending).rejects.toMatchObject({ kind: 'aborted', message: `syslog tcp://127.0.0.1:${port}: send aborted` });
    await expect(t.send(['x'], AbortSignal.abort())).rejects.toMatchObject({ kind: 'aborted' });
  });

  it('an aborted send held up by a server that does not read drops the connection; the next send replays on a new one', async () => {
    const server = await fake((socket, i) => i === 0 && socket.pause());
    const t = transport(server.port);
    await t.send(['before']);
    const ac = new AbortController();
    const sending = t.send(Array.from({ length: 64 }, () => 'z'.repeat(1024 * 1024)), ac.signal);
    await sleep(200);
    ac.abort();
    await expect(sending).rejects.toMatchObject({ kind: 'aborted' });
    expect(t.connected).toBe(false);
    expect(await t.send(['after'])).toBe('5 after'.length);
    expect(await t.close()).toBe(true);
    expect(server.received(1)).toBe('6 before5 after');
  });

  it('resolves with the bytes of the framed batch', async () => {
    const server = await fake();
    const t = transport(server.port);
    expect(await t.send(['ü', 'abc'])).toBe('2 ü3 abc'.length + 1);
    expect(await t.send([])).toBe(0);
    expect(await t.close()).toBe(true);
  });

  it('does not replay batches older than replay.maxAgeMs when the connection was idle', async () => {
    const server = await fake((socket, i) => {
      if (i === 0) socket.once('data', () => setTimeout(() => socket.end(), 150));
    });
    const t = transport(server.port, { replay: { maxAgeMs: 50 } });
    await t.send(['old']);
    await sleep(300);
    await t.send(['new']);
    await sleep(50);
    expect(server.received(1)).toBe('3 new');
    expect(t.stats.replayedBatches).toBe(0);
  });

  it('keeps at most replay.maxBytes of recent batches (the newest always)', async () => {
    const server = await fake((socket, i) => {
      if (i === 0) socket.on('data', (d: Buffer) => d.toString().includes('last') && socket.end());
    });
    const t = transport(server.port, { replay: { maxBytes: 20 } });
    for (const m of ['aaaaaaaa', 'bbbbbbbb', 'cccccccc', 'last']) await t.send([m]);
    await sleep(100);
    await t.send(['next']);
    await sleep(50);
    // 10 bytes per framed 8-letter batch: 'cccccccc' (10) + 'last' (6) fit in 20, 'bbbbbbbb' did not.
    expect(server.received(1)).toBe('8 cccccccc4 last4 next');
  });
});
