import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { SelfMetrics } from '../../agent/metrics.ts';
import type { Attributes, LogRecord } from '../../agent/record.ts';
import type { Output, OutputContext, SendResult } from '../../outputs/output.ts';
import { makeTestPki, type TestPki } from './rsyslog.ts';

/**
 * What the tests of the network outputs (test/output_*.test.ts) share: a scratch folder, the test
 * PKI, the OutputContext, closing what a test opened, and the records they send.
 */

interface Closable {
  close(): Promise<unknown>;
}

export interface OutputSuiteOptions {
  /** The output's name in `ctx`: its messages start `output <name>: `. */
  name: string;
  /** Where `ctx.log` goes; by default nowhere. */
  log?: OutputContext['log'];
  /** Make the test PKI under `<scratch>/pki` before the file's first test. */
  pki?: boolean;
  /** Runs after each test, once its outputs and receivers are closed. */
  afterClose?: () => void;
}

export interface OutputSuite {
  /** A folder of the file's own, removed after its last test; also `ctx.dataDir`. */
  readonly scratch: string;
  /** With `pki: true`, filled in before the first test (read it in tests and hooks only). */
  readonly pki: TestPki;
  readonly ctx: OutputContext;
  /** What a test opens, to be closed after it: outputs first, then the receivers they talk to. */
  readonly track: {
    output<T extends Closable>(o: T): T;
    receiver<T extends Closable>(r: T): T;
  };
}

/** Registers the file's hooks (call it at the top level of a test file) and returns what they set up. */
export function outputSuite(prefix: string, opts: OutputSuiteOptions): OutputSuite {
  const scratch = mkdtempSync(join(tmpdir(), prefix));
  const pki = {} as TestPki;
  if (opts.pki) {
    beforeAll(() => {
      Object.assign(pki, makeTestPki(join(scratch, 'pki')));
    });
  }
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  const ctx: OutputContext = { name: opts.name, metrics: new SelfMetrics('test'), log: opts.log ?? (() => {}), dataDir: scratch };
  const outputs: Closable[] = [];
  const receivers: Closable[] = [];
  afterEach(async () => {
    await Promise.all(outputs.splice(0).map((o) => o.close()));
    await Promise.all(receivers.splice(0).map((r) => r.close()));
    opts.afterClose?.();
  });

  const keep =
    (list: Closable[]) =>
    <T extends Closable>(x: T): T => {
      list.push(x);
      return x;
    };
  return { scratch, pki, ctx, track: { output: keep(outputs), receiver: keep(receivers) } };
}

export const send = (o: Pick<Output, 'send'>, records: readonly LogRecord[], signal = new AbortController().signal): Promise<SendResult> => o.send(records, signal);

export async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected the send to fail, it succeeded');
}

// --- records ---------------------------------------------------------------------------------

/** The Kubernetes identity of pod web-1's container app: the resource every test starts from. */
const WEB_1_APP = Object.freeze({
  'k8s.node.name': 'node-1',
  'k8s.namespace.name': 'default',
  'k8s.pod.name': 'web-1',
  'k8s.pod.uid': '0f1e2d3c-4b5a-4697-8877-000000000001',
  'k8s.container.name': 'app',
  'k8s.container.restart_count': '0',
  'container.id': '3b5c'.padEnd(64, '0'),
});

/** A frozen resource: web-1's app container, then `extra` (in this key order). */
export function podResource<E extends Attributes = Record<never, never>>(extra?: E): Readonly<typeof WEB_1_APP & E> {
  return Object.freeze({ ...WEB_1_APP, ...extra } as typeof WEB_1_APP & E);
}

/** The attributes of a line of web-1's app on stdout, and of a truncated one on stderr. */
export const stdoutAttrs = Object.freeze({ 'log.iostream': 'stdout', 'log.file.path': '/var/log/pods/default_web-1_0f1e/app/0.log' });
export const stderrAttrs = Object.freeze({ 'log.iostream': 'stderr', 'log.file.path': '/var/log/pods/default_web-1_0f1e/app/0.log', 'kta.log.truncated': true });

/** `record(body, extra)`: a record read at a fixed time, with these resource and attributes unless `extra` says otherwise. */
export function recordBuilder(resource: Attributes, attributes: Attributes = stdoutAttrs): (body: LogRecord['body'], extra?: Partial<LogRecord>) => LogRecord {
  return (body, extra = {}) => ({
    timestamp: '2026-11-21T10:00:00.123456789Z',
    observedTimestamp: '2026-11-21T10:00:00.130000000Z',
    body,
    attributes,
    resource,
    ...extra,
  });
}

/** Bodies that break naive encoders: quotes, control characters, non-ASCII, lone surrogates, U+2028. */
export const TRICKY_TEXT: readonly string[] = Object.freeze([
  'say "hi" and \\ leave',
  'line one\nline two\r\nline three',
  'tab\there, nul \u0000, bell \u0007, del \u007f',
  'ünïcødé ✓ 日本語 😀',
  'line separators \u2028 and \u2029',
  'lone surrogates \ud800 and \udfff',
]);

/** What design.md says one record is, once JSON.parse'd from its NDJSON line (lone surrogates survive: JSON.stringify escapes them). */
export function asJson(r: LogRecord): Record<string, unknown> {
  return {
    timestamp: r.timestamp,
    observed_timestamp: r.observedTimestamp,
    ...(r.severityText !== undefined ? { severity_text: r.severityText } : {}),
    ...(r.severityNumber !== undefined ? { severity_number: r.severityNumber } : {}),
    body: r.body,
    attributes: r.attributes,
    resource: r.resource,
  };
}
