import { hostname } from 'node:os';
import { z } from 'zod';
import { duration, size } from '../../agent/config/types.ts';
import type { TargetNeeds } from '../../agent/config/target_check.ts';
import type { LogRecord } from '../../agent/record.ts';
import { outputCommon } from '../common_config.ts';
import { tlsConfig, tlsFiles } from '../http_client.ts';
import { RetryableError, type Output, type OutputContext, type SendResult } from '../output.ts';
import {
  compileTemplate,
  DEFAULT_APP_NAME,
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_PROC_ID,
  DEFAULT_SD_ID,
  FACILITIES,
  NILVALUE,
  Rfc5424Encoder,
  validateSdId,
} from './rfc5424.ts';
import { SyslogTransport, SyslogTransportError } from './transport.ts';

/**
 * `type: syslog`: RFC 5424 messages (rfc5424.ts) over TCP or TLS (RFC 5425) with octet-counting
 * framing (RFC 6587 §3.4.1), one connection (transport.ts). A batch is accepted once every byte
 * of it was written to the socket: syslog over TCP has no acknowledgement, so what a server that
 * restarts had not read yet is covered by the transport's replay window, not by the pipeline's
 * retries (see transport.ts for what that does and does not cover).
 */

/** RFC 5425 §4.1 assigns 6514 to syslog over TLS; TCP has no assigned port, 514 is what rsyslog and syslog-ng use. */
const DEFAULT_PORTS = { tcp: 514, tls: 6514 } as const;

export interface SyslogEndpoint {
  protocol: 'tcp' | 'tls';
  host: string;
  port: number;
}

/** `tcp://host[:port]` or `tls://host[:port]`; an IPv6 address in brackets. A string says what is wrong. */
export function parseEndpoint(value: string): SyslogEndpoint | string {
  const expected = 'expected tcp://host:port or tls://host:port';
  const m = /^(tcp|tls):\/\/(\[[0-9a-fA-F:.]+\]|[^\s/:@[\]?#]+)(?::(\d+))?\/?$/.exec(value);
  if (!m) return `${expected}, got ${JSON.stringify(value)}`;
  const protocol = m[1] as 'tcp' | 'tls';
  const port = m[3] === undefined ? DEFAULT_PORTS[protocol] : Number(m[3]);
  if (port < 1 || port > 65535) return `port ${m[3]} is outside 1-65535`;
  return { protocol, host: m[2]!.replace(/^\[(.*)\]$/, '$1'), port };
}

const template = (fallback: string) => z.string().default(fallback);

export const syslogConfig = z
  .strictObject({
    type: z.literal('syslog'),
    ...outputCommon,
    endpoint: z.string(),
    /** Only with tls:// (the same keys as the HTTP outputs). */
    tls: tlsConfig,
    facility: z.union([z.enum(Object.keys(FACILITIES) as [string, ...string[]]), z.number().int().min(0).max(23)]).default('user'),
    /** Templates: `{key}` is a record attribute, else resource attribute; `{a|b}` the first present; other text is kept. */
    app_name: template(DEFAULT_APP_NAME),
    proc_id: template(DEFAULT_PROC_ID),
    msg_id: template(NILVALUE),
    /** The `[k8s@32473 namespace= pod= container= node=]` element; false: `-`. */
    structured_data: z.boolean().default(true),
    sd_id: z.string().default(DEFAULT_SD_ID),
    /** Longest message (header and body, without framing); a longer body is cut at a character boundary. 0: no limit. */
    max_message_bytes: size('8KiB').default(DEFAULT_MAX_MESSAGE_BYTES),
    /** TCP connect and TLS handshake; also how long close() waits for the server (see transport.ts). */
    connect_timeout: duration('10s')
      .pipe(z.number().min(1, { error: 'expected a duration above 0, like 10s' }))
      .default(10_000),
    /** Batches kept after they were written, and written again first after a lost connection. */
    replay: z
      .strictObject({
        /** 0 turns replay off. */
        max_bytes: size('4MiB').default(4 * 1024 * 1024),
        max_age: duration('10s').default(10_000),
      })
      .prefault({}),
  })
  .superRefine((cfg, ctx) => {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    const endpoint = parseEndpoint(cfg.endpoint);
    if (typeof endpoint === 'string') issue(['endpoint'], endpoint);
    else if (endpoint.protocol === 'tcp') {
      const t = cfg.tls;
      const set: string[] = (['ca_file', 'cert_file', 'key_file', 'server_name'] as const).filter((k) => t[k] !== undefined);
      if (t.insecure_skip_verify) set.push('insecure_skip_verify');
      if (set.length > 0) issue(['tls'], `tls.${set.join(', tls.')} given, but the endpoint is tcp://: use tls://${cfg.endpoint.slice('tcp://'.length)} for TLS`);
    }
    for (const key of ['app_name', 'proc_id', 'msg_id'] as const) {
      try {
        compileTemplate(cfg[key]);
      } catch (err) {
        issue([key], (err as Error).message);
      }
    }
    try {
      validateSdId(cfg.sd_id);
    } catch (err) {
      issue(['sd_id'], (err as Error).message);
    }
    // One connection, written in order: a second batch in flight would only queue behind the
    // first, and a retried batch would land after newer ones.
    if (cfg.concurrency > 1) issue(['concurrency'], 'syslog sends over one connection, in order: concurrency must be 1');
  });
export type SyslogConfig = z.infer<typeof syslogConfig>;

/** The TLS files (tls:// only) and the server (checked on the node: agent/config/target_check.ts). */
export function syslogNeeds(config: SyslogConfig): TargetNeeds {
  const endpoint = parseEndpoint(config.endpoint) as SyslogEndpoint; // validated by the schema
  const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
  return {
    files: endpoint.protocol === 'tls' ? tlsFiles(config.tls) : [],
    endpoints: [{ key: 'endpoint', url: `${endpoint.protocol}://${host}:${endpoint.port}`, tls: endpoint.protocol === 'tls' ? config.tls : undefined }],
  };
}

/** OpenSSL's codes for "signed by no CA we trust" (an expired or misnamed certificate is another matter). */
const UNTRUSTED = /^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE|INVALID_CA)$/;

export class SyslogOutput implements Output {
  readonly name: string;
  private readonly config: SyslogConfig;
  private readonly log: OutputContext['log'];
  private readonly truncatedRecords: { inc(n: number): void };
  private readonly encoder: Rfc5424Encoder;
  private readonly transport: SyslogTransport;
  private truncationLogged = false;

  constructor(config: SyslogConfig, ctx: OutputContext) {
    this.name = ctx.name;
    this.config = config;
    this.log = ctx.log;
    this.truncatedRecords = ctx.metrics.outputTruncatedRecords.labels({ output: ctx.name });
    const endpoint = parseEndpoint(config.endpoint) as SyslogEndpoint; // validated by the schema
    this.encoder = new Rfc5424Encoder({
      facility: config.facility,
      appName: config.app_name,
      procId: config.proc_id,
      msgId: config.msg_id,
      // HOSTNAME is the record's k8s.node.name (else host.name); this host's name only when it has neither.
      hostname: hostname(),
      sdId: config.sd_id,
      structuredData: config.structured_data,
      maxMessageBytes: config.max_message_bytes,
    });
    const { tls } = config;
    this.transport = new SyslogTransport({
      host: endpoint.host,
      port: endpoint.port,
      tls:
        endpoint.protocol === 'tls'
          ? { caFile: tls.ca_file, certFile: tls.cert_file, keyFile: tls.key_file, serverName: tls.server_name, rejectUnauthorized: !tls.insecure_skip_verify }
          : undefined,
      connectTimeoutMs: config.connect_timeout,
      // The pipeline's retry backoff paces the attempts; a second one here would only add to it.
      backoff: { initialMs: 0, maxMs: 0 },
      replay: { maxBytes: config.replay.max_bytes, maxAgeMs: config.replay.max_age },
      log: (level, msg) => this.log(level, `output ${this.name}: ${msg}`),
    });
  }

  async send(records: readonly LogRecord[], signal: AbortSignal): Promise<SendResult> {
    const messages = new Array<string>(records.length);
    const truncated = this.encoder.truncated;
    for (let i = 0; i < records.length; i++) messages[i] = this.encoder.encode(records[i]!);
    if (this.encoder.truncated > truncated) this.truncatedRecords.inc(this.encoder.truncated - truncated);
    if (this.encoder.truncated > truncated && !this.truncationLogged) {
      this.truncationLogged = true;
      this.log('warn', `output ${this.name}: a record's body was cut to fit max_message_bytes (${this.config.max_message_bytes}); further cuts are not logged (telemetry_agent_output_truncated_records_total counts them)`);
    }
    try {
      return { bytes: await this.transport.send(messages, signal) };
    } catch (err) {
      if (err instanceof SyslogTransportError) throw new RetryableError(`output ${this.name}: ${err.message}${this.hint(err)}`);
      throw err;
    }
  }

  /** What to change in the config, for the failures that are the config's doing. */
  private hint(err: SyslogTransportError): string {
    if (err.kind !== 'tls') return '';
    const { tls } = this.config;
    if (err.code !== undefined && UNTRUSTED.test(err.code)) {
      return tls.ca_file !== undefined ? `; it is not signed by the CA in tls.ca_file (${tls.ca_file})` : '; set tls.ca_file to the CA that signed it';
    }
    if (err.code === 'ERR_TLS_CERT_ALTNAME_INVALID') return '; use a host name the certificate lists in endpoint, or set tls.server_name to one';
    if (err.message.includes('right after the TLS handshake')) {
      return tls.cert_file !== undefined ? '; check tls.cert_file and tls.key_file' : '; if it requires a client certificate, set tls.cert_file and tls.key_file';
    }
    return '';
  }

  /** Nothing to make durable: TCP has no acknowledgement to wait for (close() comes closest). */
  async flush(): Promise<void> {}

  async close(): Promise<void> {
    await this.transport.close();
  }
}

export function createSyslogOutput(config: SyslogConfig, ctx: OutputContext): Output {
  return new SyslogOutput(config, ctx);
}
