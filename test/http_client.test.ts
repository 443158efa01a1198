import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  errorForStatus,
  HttpClient,
  httpClientKeys,
  httpClientNeeds,
  parseRetryAfter,
  SECRET_REFRESH_MS,
  type HttpClientOptions,
  type HttpResponse,
} from '../outputs/http_client.ts';
import { PermanentError, RetryableError } from '../outputs/output.ts';
import { fileProblem } from '../agent/config/target_check.ts';
import { NdjsonReceiver, type NdjsonReceiverOptions } from './fakes/ndjson_receiver.ts';
import { rejection } from './helpers/output_fixtures.ts';
import { makeTestPki, type TestPki } from './helpers/rsyslog.ts';

const scratch = mkdtempSync(join(tmpdir(), 'kta-http-client-'));
const schema = z.strictObject(httpClientKeys);
const LINE = '{"body":"x"}\n';

let pki: TestPki;
beforeAll(() => {
  pki = makeTestPki(join(scratch, 'pki'));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const receivers: NdjsonReceiver[] = [];
const clients: HttpClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

async function receiver(opts: NdjsonReceiverOptions = {}): Promise<NdjsonReceiver> {
  const r = await NdjsonReceiver.start(opts);
  receivers.push(r);
  return r;
}

function tlsServerOptions(requestCert = false): NdjsonReceiverOptions['tls'] {
  return { key: readFileSync(pki.serverKeyFile), cert: readFileSync(pki.serverCertFile), ca: readFileSync(pki.caFile), requestCert };
}

/** A client from config as a user writes it (through the schema), plus the pipeline's connections. */
function client(config: Record<string, unknown>, extra: Partial<HttpClientOptions> = {}, now?: () => number): HttpClient {
  const c = schema.parse(config);
  const made = new HttpClient(
    { name: 'out', endpoint: c.endpoint, tls: c.tls, auth: c.auth, headers: c.headers, timeoutMs: c.timeout, connections: 1, ...extra },
    now,
  );
  clients.push(made);
  return made;
}

const post = (c: HttpClient, body: string | Buffer = LINE, signal = new AbortController().signal) =>
  c.request({ method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body, signal });

describe('http client config keys', () => {
  const issues = (config: Record<string, unknown>) => {
    const r = schema.safeParse({ endpoint: 'http://127.0.0.1:1', ...config });
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('defaults: no TLS files, verification on, no auth, no headers, 30 s timeout', () => {
    expect(schema.parse({ endpoint: 'https://logs.example:8443/in' })).toEqual({
      endpoint: 'https://logs.example:8443/in',
      tls: { insecure_skip_verify: false },
      auth: {},
      headers: {},
      timeout: 30_000,
    });
  });

  it('takes a duration above 0 for timeout', () => {
    expect(schema.parse({ endpoint: 'http://x', timeout: '1500ms' }).timeout).toBe(1500);
    expect(issues({ timeout: '0s' })).toEqual(['timeout: expected a duration above 0, like 30s']);
    expect(issues({ timeout: 'soon' })).toEqual(['timeout: expected a duration like 30s, got "soon"']);
  });

  it('refuses an endpoint that is not http(s)', () => {
    expect(issues({ endpoint: 'ftp://x' })).toEqual(['endpoint: expected an http:// or https:// URL']);
    expect(issues({ endpoint: 'not a url' })).toEqual(['endpoint: expected an http:// or https:// URL']);
  });

  it('refuses bearer and basic auth together, naming the key', () => {
    expect(issues({ auth: { bearer_token: 't', username: 'u', password: 'p' } })).toEqual([
      'auth.username: bearer token and basic auth (username/password) are both set; pick one',
    ]);
  });

  it('refuses a token given twice, a username without a password and a password without a username', () => {
    const tokenFile = join(scratch, 'token-for-schema');
    writeFileSync(tokenFile, 't');
    expect(issues({ auth: { bearer_token: 't', bearer_token_file: tokenFile } })).toEqual([
      'auth.bearer_token_file: set auth.bearer_token or auth.bearer_token_file, not both',
    ]);
    expect(issues({ auth: { username: 'u' } })).toEqual(['auth.password: auth.username is set, so auth.password or auth.password_file is needed too']);
    expect(issues({ auth: { password: 'p' } })).toEqual(['auth.username: auth.password is set, so auth.username is needed too']);
  });

  it('refuses a client certificate without its key, and a key without its certificate', () => {
    expect(issues({ tls: { cert_file: pki.clientCertFile } })).toEqual(['tls.key_file: tls.cert_file is set, so tls.key_file (its private key) is needed too']);
    expect(issues({ tls: { key_file: pki.clientKeyFile } })).toEqual(['tls.cert_file: tls.key_file is set, so tls.cert_file (the client certificate) is needed too']);
  });

  it('names every file that cannot be read, on the node (validate --check, start, reload), not in the pure schema', () => {
    const missing = join(scratch, 'missing');
    const onNode = (config: Record<string, unknown>) => {
      expect(issues(config)).toEqual([]); // plain validate gives the same answer on any machine
      const needs = httpClientNeeds(schema.parse({ endpoint: 'http://127.0.0.1:1', ...config }));
      return (needs.files ?? []).flatMap((f) => {
        const problem = fileProblem(f.path);
        return problem ? [`${f.key}: cannot read ${f.path}: ${problem}`] : [];
      });
    };
    expect(onNode({ tls: { ca_file: missing } })).toEqual([`tls.ca_file: cannot read ${missing}: no such file`]);
    expect(onNode({ tls: { ca_file: scratch } })).toEqual([`tls.ca_file: cannot read ${scratch}: is a folder, not a file`]);
    expect(onNode({ auth: { bearer_token_file: missing } })).toEqual([`auth.bearer_token_file: cannot read ${missing}: no such file`]);
    expect(onNode({ auth: { username: 'u', password_file: missing } })).toEqual([`auth.password_file: cannot read ${missing}: no such file`]);
  });

  it('refuses header names that are not tokens, values with line breaks, and headers the client owns', () => {
    expect(issues({ headers: { 'X Bad': 'v' } })).toEqual(['headers.X Bad: "X Bad" is not a valid header name']);
    expect(issues({ headers: { 'X-Ok': 'a\r\nInjected: 1' } })).toEqual(['headers.X-Ok: a header value cannot contain line breaks or NUL']);
    expect(issues({ headers: { 'Content-Length': '1' } })).toEqual([
      'headers.Content-Length: Content-Length is set by the output (content-encoding: see compression) and cannot be configured',
    ]);
    expect(issues({ headers: { 'content-encoding': 'gzip' } })).toHaveLength(1);
  });
});

describe('parseRetryAfter (RFC 9110 §10.2.3)', () => {
  const now = Date.parse('2026-11-21T10:00:00Z');

  it('reads delay-seconds', () => {
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
  });

  it('reads an HTTP-date as the time from now, and a past date as 0', () => {
    expect(parseRetryAfter('Sat, 21 Nov 2026 10:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Sat, 21 Nov 2026 09:59:00 GMT', now)).toBe(0);
  });

  it('gives undefined for an absent or unreadable value, not a year read from a number', () => {
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
  });
});

describe('errorForStatus', () => {
  const res = (status: number, body = '', headers: HttpResponse['headers'] = {}): HttpResponse => ({ status, headers, body: Buffer.from(body) });

  it('accepts every 2xx', () => {
    for (const s of [200, 201, 202, 204, 299]) expect(errorForStatus('out', res(s))).toBeUndefined();
  });

  it('retries 408, 429 and 5xx, with the Retry-After they carry', () => {
    for (const s of [408, 429, 500, 502, 503, 504]) {
      const e = errorForStatus('out', res(s, 'busy', { 'retry-after': '3' }));
      expect(e).toBeInstanceOf(RetryableError);
      expect((e as RetryableError).retryAfterMs).toBe(3000);
    }
    expect((errorForStatus('out', res(503)) as RetryableError).retryAfterMs).toBeUndefined();
  });

  it('refuses other statuses for good, naming output, status and what the receiver said', () => {
    for (const s of [400, 401, 403, 404, 413, 415, 422]) expect(errorForStatus('out', res(s, 'nope'))).toBeInstanceOf(PermanentError);
    expect(errorForStatus('out', res(400, 'field "x" is\nnot allowed'))!.message).toBe('output out: receiver answered 400 Bad Request: field "x" is not allowed');
    expect(errorForStatus('out', res(404))!.message).toBe('output out: receiver answered 404 Not Found: (empty body)');
  });

  it('quotes at most the first 512 bytes of the body', () => {
    const msg = errorForStatus('out', res(400, 'a'.repeat(512) + 'TAIL'))!.message;
    expect(msg).toBe(`output out: receiver answered 400 Bad Request: ${'a'.repeat(512)}…`);
  });

  it('says where a redirect points (the client does not follow them)', () => {
    const e = errorForStatus('out', res(301, '', { location: 'https://new.example/in' }));
    expect(e).toBeInstanceOf(PermanentError);
    expect(e!.message).toContain('redirect to https://new.example/in; point the endpoint there');
  });
});

describe('HttpClient requests', () => {
  it('joins request paths to the endpoint path and keeps its query', async () => {
    const r = await receiver();
    const c = client({ endpoint: `${r.url}/base/?tenant=a` });
    expect(c.urlFor('')).toBe(`${r.url}/base/?tenant=a`);
    expect(c.urlFor('/v1/logs')).toBe(`${r.url}/base/v1/logs?tenant=a`);
    expect(c.urlFor('_bulk?refresh=false')).toBe(`${r.url}/base/_bulk?tenant=a&refresh=false`);
    await c.request({ method: 'PUT', path: '/in', headers: { 'content-type': 'application/x-ndjson' }, body: LINE, signal: new AbortController().signal });
    expect(r.accepted.map((q) => [q.method, q.path])).toEqual([['PUT', '/base/in?tenant=a']]);
  });

  it('returns status, headers and the whole body without classifying', async () => {
    const r = await receiver();
    r.server.inject({ status: 503, body: 'overloaded', headers: { 'retry-after': '9' } });
    const res = await post(client({ endpoint: r.url }));
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('9');
    expect(res.body.toString()).toBe('overloaded');
  });

  it('sends the configured headers, and lets the request’s own win over a differently spelled one', async () => {
    const r = await receiver();
    const c = client({ endpoint: r.url, headers: { 'X-Scope-OrgID': 'tenant-1', 'Content-Type': 'text/plain' } });
    await post(c);
    expect(r.accepted[0]!.headers['x-scope-orgid']).toBe('tenant-1');
    expect(r.accepted[0]!.headers['content-type']).toBe('application/x-ndjson');
  });

  it('keeps connections alive: sequential requests share one socket', async () => {
    const r = await receiver();
    const c = client({ endpoint: r.url });
    for (let i = 0; i < 5; i++) expect((await post(c)).status).toBe(200);
    expect(r.accepted).toHaveLength(5);
    expect(r.connections).toBe(1);
  });

  it('opens at most `connections` sockets, and reuses them', async () => {
    const r = await receiver();
    const c = client({ endpoint: r.url }, { connections: 3 });
    // Held by the receiver, so all six are in flight together and the pool must spread them.
    r.server.inject({ delayMs: 300 }, 6);
    await Promise.all(Array.from({ length: 6 }, () => post(c)));
    for (let i = 0; i < 4; i++) await post(c);
    expect(r.accepted).toHaveLength(10);
    expect(r.connections).toBe(3);
  });

  it('refuses an answer larger than 64 MiB instead of holding it', async () => {
    const big: Server = createServer((_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(1024 * 1024, 0x61);
      let sent = 0;
      const more = () => {
        while (sent < 70) {
          sent++;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    });
    await new Promise<void>((resolve) => big.listen(0, '127.0.0.1', resolve));
    try {
      const e = await rejection(post(client({ endpoint: `http://127.0.0.1:${(big.address() as AddressInfo).port}` })));
      expect(e).toBeInstanceOf(RetryableError);
      expect(e.message).toContain('the answer is larger than 64 MiB');
    } finally {
      big.closeAllConnections();
      await new Promise((resolve) => big.close(resolve));
    }
  });
});

describe('HttpClient auth', () => {
  it('sends an inline bearer token', async () => {
    const r = await receiver({ authorization: 'Bearer s3cret' });
    expect((await post(client({ endpoint: r.url, auth: { bearer_token: 's3cret' } }))).status).toBe(200);
    expect(r.accepted).toHaveLength(1);
  });

  it('re-reads a bearer token file once it is 60 s old, so a rotated projected token is used', async () => {
    const file = join(scratch, 'token');
    writeFileSync(file, 'token-one\n');
    let now = 1_000_000;
    let current = 'Bearer token-one';
    const r = await receiver({ authorization: () => current });
    const c = client({ endpoint: r.url, auth: { bearer_token_file: file } }, {}, () => now);
    expect((await post(c)).status).toBe(200);

    // Rotated on disk: the old token is still sent until the file is due for a re-read.
    writeFileSync(file, 'token-two\n');
    now += SECRET_REFRESH_MS - 1;
    expect(r.accepted.at(-1)!.headers.authorization).toBe('Bearer token-one');
    expect((await post(c)).status).toBe(200);
    expect(r.accepted.at(-1)!.headers.authorization).toBe('Bearer token-one');

    now += 1;
    current = 'Bearer token-two';
    expect((await post(c)).status).toBe(200);
    expect(r.accepted.at(-1)!.headers.authorization).toBe('Bearer token-two');
  });

  it('fails a request with a clear message when the token file is gone at re-read time', async () => {
    const file = join(scratch, 'token-vanishing');
    writeFileSync(file, 'tok');
    let now = 0;
    const r = await receiver();
    const c = client({ endpoint: r.url, auth: { bearer_token_file: file } }, {}, () => now);
    await post(c);
    unlinkSync(file);
    now += SECRET_REFRESH_MS;
    const e = await rejection(post(c));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toBe(`output out: auth.bearer_token_file ${file}: no such file`);
    expect(r.accepted).toHaveLength(1);
  });

  it('refuses to start when a file named in the config is gone by then, naming key and file', () => {
    const file = join(scratch, 'token-gone-at-start');
    writeFileSync(file, 'tok');
    const config = schema.parse({ endpoint: 'http://127.0.0.1:1', auth: { bearer_token_file: file } });
    unlinkSync(file);
    const opts = { name: 'out', endpoint: config.endpoint, tls: config.tls, auth: config.auth, headers: {}, timeoutMs: 1000, connections: 1 };
    expect(() => new HttpClient(opts)).toThrow(`output out: auth.bearer_token_file ${file}: no such file`);
    const tls = schema.parse({ endpoint: 'https://127.0.0.1:1', tls: { ca_file: scratch } }).tls;
    expect(() => new HttpClient({ ...opts, endpoint: 'https://127.0.0.1:1', auth: {}, tls })).toThrow(`output out: tls.ca_file ${scratch}: is a folder, not a file`);
  });

  it('refuses an empty token file', () => {
    const file = join(scratch, 'token-empty');
    writeFileSync(file, '\n');
    const config = schema.parse({ endpoint: 'http://127.0.0.1:1', auth: { bearer_token_file: file } });
    expect(() => new HttpClient({ name: 'out', endpoint: config.endpoint, tls: config.tls, auth: config.auth, headers: {}, timeoutMs: 1000, connections: 1 })).toThrow(
      `output out: auth.bearer_token_file ${file} is empty`,
    );
  });

  it('sends basic auth from a password or a password file (its final line break dropped)', async () => {
    const expected = 'Basic ' + Buffer.from('elastic:pa:ss wörd').toString('base64');
    const r = await receiver({ authorization: expected });
    expect((await post(client({ endpoint: r.url, auth: { username: 'elastic', password: 'pa:ss wörd' } }))).status).toBe(200);
    const file = join(scratch, 'password');
    writeFileSync(file, 'pa:ss wörd\n');
    expect((await post(client({ endpoint: r.url, auth: { username: 'elastic', password_file: file } }))).status).toBe(200);
    expect(r.accepted).toHaveLength(2);
  });

  it('gets the receiver’s 401 back for wrong credentials', async () => {
    const r = await receiver({ authorization: 'Bearer right' });
    const res = await post(client({ endpoint: r.url, auth: { bearer_token: 'wrong' } }));
    expect(res.status).toBe(401);
    expect(errorForStatus('out', res)).toBeInstanceOf(PermanentError);
    expect(r.accepted).toHaveLength(0);
  });

  it('refuses an Authorization header together with auth', () => {
    const config = schema.parse({ endpoint: 'http://127.0.0.1:1', headers: { authorization: 'ApiKey abc' }, auth: { bearer_token: 't' } });
    expect(() => new HttpClient({ name: 'out', endpoint: config.endpoint, tls: config.tls, auth: config.auth, headers: config.headers, timeoutMs: 1000, connections: 1 })).toThrow(
      'output out: headers.Authorization and auth are both set; pick one',
    );
  });

  it('sends an Authorization header configured alone (Elasticsearch ApiKey)', async () => {
    const r = await receiver({ authorization: 'ApiKey abc' });
    expect((await post(client({ endpoint: r.url, headers: { Authorization: 'ApiKey abc' } }))).status).toBe(200);
  });

  it('refuses credentials in the endpoint URL: the schema without echoing them, and the client itself', () => {
    const r = schema.safeParse({ endpoint: 'http://u:secret@127.0.0.1:1' });
    expect(r.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
      'endpoint: the URL carries credentials (user:password@): put them in auth, where they are never logged',
    ]);
    const opts = { name: 'out', endpoint: 'http://u:secret@127.0.0.1:1', tls: { insecure_skip_verify: false }, auth: {}, headers: {}, timeoutMs: 1000, connections: 1 };
    expect(() => new HttpClient(opts)).toThrow('output out: put credentials in auth, not in the endpoint URL');
  });
});

describe('HttpClient TLS', () => {
  it('talks HTTPS to a receiver whose certificate tls.ca_file trusts', async () => {
    const r = await receiver({ tls: tlsServerOptions() });
    expect((await post(client({ endpoint: r.url, tls: { ca_file: pki.caFile } }))).status).toBe(200);
    expect(r.accepted).toHaveLength(1);
  });

  it('refuses an untrusted certificate with a RetryableError that says so and points at tls.ca_file', async () => {
    const r = await receiver({ tls: tlsServerOptions() });
    const e = await rejection(post(client({ endpoint: r.url })));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toMatch(new RegExp(`^output out: request to ${r.url}/ failed: the receiver's TLS certificate is not trusted \\(SELF_SIGNED_CERT_IN_CHAIN: .*\\); set tls.ca_file to the CA that signed it$`));
    expect(r.accepted).toHaveLength(0);
  });

  it('says the certificate is not signed by the CA given when tls.ca_file names another one', async () => {
    const r = await receiver({ tls: tlsServerOptions() });
    const e = await rejection(post(client({ endpoint: r.url, tls: { ca_file: pki.otherCaFile } })));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toContain(`certificate is not trusted`);
    expect(e.message).toContain(`it is not signed by the CA in tls.ca_file ${pki.otherCaFile}`);
  });

  it('checks the certificate against tls.server_name when set, and says so when it does not match', async () => {
    const r = await receiver({ tls: tlsServerOptions() });
    const byIp = r.url.replace('localhost', '127.0.0.1');
    const e = await rejection(post(client({ endpoint: byIp, tls: { ca_file: pki.caFile, server_name: 'logs.example' } })));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toContain(`the receiver's TLS certificate is not valid for "logs.example"`);
    expect(e.message).toContain('set tls.server_name');
    expect((await post(client({ endpoint: byIp, tls: { ca_file: pki.caFile, server_name: 'localhost' } }))).status).toBe(200);
  });

  it('accepts any certificate with insecure_skip_verify', async () => {
    const r = await receiver({ tls: tlsServerOptions() });
    expect((await post(client({ endpoint: r.url, tls: { insecure_skip_verify: true } }))).status).toBe(200);
  });

  it('presents the client certificate a receiver requires (mutual TLS), and says what to set without one', async () => {
    const r = await receiver({ tls: tlsServerOptions(true) });
    const withCert = client({ endpoint: r.url, tls: { ca_file: pki.caFile, cert_file: pki.clientCertFile, key_file: pki.clientKeyFile } });
    expect((await post(withCert)).status).toBe(200);
    expect(r.accepted).toHaveLength(1);

    const e = await rejection(post(client({ endpoint: r.url, tls: { ca_file: pki.caFile } })));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toContain('if it requires a client certificate, set tls.cert_file and tls.key_file');
    expect(r.accepted).toHaveLength(1);
  });
});

describe('HttpClient network failures', () => {
  it('connection refused: RetryableError naming output, URL and cause', async () => {
    const r = await receiver();
    const url = r.url;
    await r.server.down();
    const e = await rejection(post(client({ endpoint: url })));
    expect(e).toBeInstanceOf(RetryableError);
    const port = new URL(url).port;
    expect(e.message).toBe(`output out: request to ${url}/ failed: connection refused by 127.0.0.1:${port} (nothing listening there, or the receiver is down)`);
  });

  it('connection reset mid-request: RetryableError, and the next request works on a new connection', async () => {
    const r = await receiver();
    const c = client({ endpoint: r.url });
    r.server.inject({ reset: true });
    const e = await rejection(post(c));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toMatch(/^output out: request to http:\/\/127\.0\.0\.1:\d+\/ failed: the receiver closed the connection before answering/);
    expect((await post(c)).status).toBe(200);
    expect(r.connections).toBe(2);
  });

  it('a receiver that comes back after being down is reached again', async () => {
    const r = await receiver();
    const c = client({ endpoint: r.url });
    await post(c);
    await r.server.down();
    expect(await rejection(post(c))).toBeInstanceOf(RetryableError);
    await r.server.up();
    expect((await post(c)).status).toBe(200);
  });

  it('timeout: a receiver slower than `timeout` gives a RetryableError that says timeout', async () => {
    const r = await receiver();
    r.server.inject({ delayMs: 10_000 });
    const e = await rejection(post(client({ endpoint: r.url, timeout: '200ms' })));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toBe(`output out: no complete answer from ${r.url}/ within 200 ms (timeout)`);
    expect(r.accepted).toHaveLength(0);
  }, 5000);

  it('the caller’s abort ends a slow request at once with the signal’s reason', async () => {
    const r = await receiver();
    r.server.inject({ delayMs: 10_000 });
    const c = client({ endpoint: r.url });
    const ac = new AbortController();
    const pending = post(c, LINE, ac.signal);
    // Abort once the request is on the wire, so this is a cancellation, not a refusal to start.
    while (r.connections === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    ac.abort();
    const e = await rejection(pending);
    expect(e.name).toBe('AbortError');
    expect(e).not.toBeInstanceOf(RetryableError);
    expect(r.accepted).toHaveLength(0);
  }, 5000);

  it('an already aborted signal sends nothing', async () => {
    const r = await receiver();
    const ac = new AbortController();
    ac.abort(new Error('shutting down'));
    const e = await rejection(post(client({ endpoint: r.url }), LINE, ac.signal));
    expect(e.message).toBe('shutting down');
    expect(r.connections).toBe(0);
  });
});
