import type { IncomingMessage } from 'node:http';
import type { KubeRequester, RequestInit } from '../kube/connection.ts';
import { RateLimitedLog, type Logger } from '../log.ts';
import type { Leadership } from './observation.ts';

/**
 * Leader election with a coordination.k8s.io/v1 Lease, the protocol of client-go's leaderelection:
 *
 * - Every `retryPeriodMs` each candidate GETs the Lease. A Lease held by someone else is taken over
 *   only after it has not changed for `leaseDurationMs` *by this process's clock* (the time the
 *   record was first seen unchanged, not the holder's `renewTime`: agents' clocks may disagree).
 * - Writes carry the resourceVersion that was read: a 409 Conflict means someone else wrote first,
 *   and this candidate did not win. The Lease is the truth: two agents never both succeed.
 * - The leader renews every `retryPeriodMs`; if no renewal succeeded for `renewDeadlineMs` it stops
 *   leading (before others may take over at `leaseDurationMs`), then competes again like anyone.
 * - `stop()` releases a held Lease (holder cleared) so a successor takes over at its next retry.
 * - State for a successor rides on the Lease's annotations (`commit`): prepared before each renewal
 *   by the leader and confirmed once the write succeeded, so what the leader then reports is always
 *   covered by what the Lease says. Acquiring the Lease carries the annotations found on it forward
 *   unchanged: until the new leader commits its own, the predecessor's are the truth.
 */

export interface LeaderElectionOptions {
  connection: KubeRequester;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  log: Logger;
  /** Called with 1 / 0 as leadership starts and ends (telemetry_agent_leader). */
  setGauge?: (value: number) => void;
  /**
   * State a successor needs, written with every renewal and with the release: `prepare` builds the
   * annotations, then exactly one of `committed` (the write succeeded) or `abandoned` is called.
   */
  commit?: () => { annotations: Record<string, string>; committed(): void; abandoned(): void };
  now?: () => number;
}

interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

/** The Lease as found when this agent started to lead. */
export interface AcquiredLease {
  /** The previous holder ('' when released or created now). */
  holder: string;
  annotations: Record<string, string>;
  /** The previous holder's last renewal (its clock), when the Lease said. */
  renewTimeMs?: number;
  /** The Lease did not exist: this agent created it. */
  created: boolean;
}

interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; annotations?: Record<string, string> };
  spec?: LeaseSpec;
}

type Attempt = 'won' | 'lost' | 'failed';
const ABSENT = '(no lease)';

export class LeaderElector implements Leadership {
  private readonly o: Required<LeaderElectionOptions>;
  private readonly listeners = new Set<(leading: boolean) => void>();
  private readonly warnings: RateLimitedLog;
  private leading = false;
  private stopped = true;
  private lastRenewMs = 0;
  /** The Lease record as last read, and when (local clock) it was first seen with that content. */
  private observed: { key: string; atMs: number } | undefined;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The Lease has been seen to exist: a later 404 means it was deleted, not that nobody ever led. */
  private created = false;
  /** Why the last attempt on the Lease failed (refused, unreachable), until one succeeds: for readiness. */
  problem: string | undefined;
  /** Set each time this agent starts to lead: the Lease as it found it. */
  acquired: AcquiredLease | undefined;

  constructor(options: LeaderElectionOptions) {
    if (!(options.renewDeadlineMs < options.leaseDurationMs)) throw new Error('renew_deadline must be shorter than lease_duration');
    if (!(options.retryPeriodMs < options.renewDeadlineMs)) throw new Error('retry_period must be shorter than renew_deadline');
    this.o = { setGauge: () => {}, commit: () => ({ annotations: {}, committed: () => {}, abandoned: () => {} }), now: Date.now, ...options };
    this.warnings = new RateLimitedLog(this.o.log);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  get identity(): string {
    return this.o.identity;
  }

  onChange(listener: (leading: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  /** Stops competing; a leader releases the Lease first so the next one takes over at once. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.wake?.();
    await this.loop;
    if (this.leading) {
      // the last commit goes with the release, while this agent still leads
      await this.release().catch((e: Error) => this.o.log.warn(`leader election: releasing lease ${this.path()} failed: ${e.message}`));
      this.setLeading(false);
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let result: Attempt;
      try {
        result = await this.tryAcquireOrRenew();
      } catch (e) {
        result = 'failed';
        this.problem = `lease ${this.path()}: ${(e as Error).message}`;
        this.o.log.debug(`leader election: ${this.path()}: ${(e as Error).message}`);
      }
      if (result !== 'failed') this.problem = undefined;
      if (this.stopped) break;
      const now = this.o.now();
      if (result === 'won') {
        this.lastRenewMs = now;
        if (!this.leading) {
          this.o.log.info(`leader election: ${this.o.identity} now leads (lease ${this.path()})`);
          this.setLeading(true);
        }
      } else if (this.leading && (result === 'lost' || now - this.lastRenewMs >= this.o.renewDeadlineMs)) {
        this.o.log.warn(
          `leader election: ${this.o.identity} stops leading: ${result === 'lost' ? 'another holder wrote the lease' : `no renewal for ${now - this.lastRenewMs} ms`}`,
        );
        this.setLeading(false);
      }
      await this.sleep(this.o.retryPeriodMs);
    }
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    this.o.setGauge(leading ? 1 : 0);
    for (const l of this.listeners) {
      try {
        l(leading);
      } catch (e) {
        this.o.log.warn(`leader election: a listener failed: ${(e as Error).message}`);
      }
    }
  }

  private async tryAcquireOrRenew(): Promise<Attempt> {
    const now = this.o.now();
    const got = await this.call('GET', this.path());
    if (got.status === 404) {
      if (!this.leading) {
        // A Lease deleted under its holder: the holder recreates it at its next renewal. Others wait
        // a lease duration as for an expired one, so there are never two leaders.
        if (this.observed?.key !== ABSENT) this.observed = { key: ABSENT, atMs: now };
        if (this.created && this.observed.atMs + this.o.leaseDurationMs > now) return 'lost';
      }
      const commit = this.leading ? this.o.commit() : undefined;
      const created = await this.call('POST', this.collection(), this.lease(undefined, now, 0, now, commit?.annotations ?? {})).catch((e: unknown) => {
        commit?.abandoned();
        throw e;
      });
      if (created.status === 201 || created.status === 200) {
        this.created = true;
        this.observed = undefined;
        if (!this.leading) this.acquired = { holder: '', annotations: {}, created: true };
        commit?.committed();
        return 'won';
      }
      commit?.abandoned();
      return created.status === 409 ? 'lost' : 'failed';
    }
    this.created = true;
    if (got.status !== 200) return 'failed';
    const lease = got.body as Lease;
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const key = JSON.stringify([holder, spec.renewTime, spec.acquireTime, spec.leaseDurationSeconds]);
    if (this.observed?.key !== key) this.observed = { key, atMs: now };
    const durationMs = (spec.leaseDurationSeconds ?? this.o.leaseDurationMs / 1000) * 1000;
    const mine = holder === this.o.identity;
    if (!mine && holder !== '' && this.observed.atMs + durationMs > now) return 'lost';
    const transitions = (spec.leaseTransitions ?? 0) + (mine ? 0 : 1);
    const acquire = mine && spec.acquireTime ? Date.parse(spec.acquireTime) : now;
    const found = stringAnnotations(lease.metadata.annotations);
    // a leader commits its state; a new leader (or this one restarted) carries the Lease's forward
    const commit = this.leading ? this.o.commit() : undefined;
    const put = await this.call('PUT', this.path(), this.lease(lease.metadata.resourceVersion, acquire, transitions, now, commit?.annotations ?? found)).catch((e: unknown) => {
      commit?.abandoned();
      throw e;
    });
    if (put.status === 200) {
      this.observed = undefined;
      if (!this.leading) {
        const renew = spec.renewTime ? Date.parse(spec.renewTime) : NaN;
        this.acquired = { holder, annotations: found, created: false, ...(Number.isFinite(renew) ? { renewTimeMs: renew } : {}) };
      }
      commit?.committed();
      return 'won';
    }
    commit?.abandoned();
    return put.status === 409 ? 'lost' : 'failed';
  }

  private async release(): Promise<void> {
    const got = await this.call('GET', this.path());
    if (got.status !== 200) return;
    const lease = got.body as Lease;
    if (lease.spec?.holderIdentity !== this.o.identity) return;
    const commit = this.o.commit();
    const body: Lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.o.name,
        namespace: this.o.namespace,
        resourceVersion: lease.metadata.resourceVersion,
        annotations: { ...stringAnnotations(lease.metadata.annotations), ...commit.annotations },
      },
      spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: micro(this.o.now()) },
    };
    const put = await this.call('PUT', this.path(), body).catch((e: unknown) => {
      commit.abandoned();
      throw e;
    });
    if (put.status === 200) {
      commit.committed();
      this.o.log.info(`leader election: ${this.o.identity} released lease ${this.path()}`);
    } else {
      commit.abandoned();
    }
  }

  private lease(resourceVersion: string | undefined, acquireMs: number, transitions: number, now: number, annotations: Record<string, string>): Lease {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.o.name, namespace: this.o.namespace, annotations, ...(resourceVersion ? { resourceVersion } : {}) },
      spec: {
        holderIdentity: this.o.identity,
        leaseDurationSeconds: Math.max(1, Math.round(this.o.leaseDurationMs / 1000)),
        acquireTime: micro(acquireMs),
        renewTime: micro(now),
        leaseTransitions: transitions,
      },
    };
  }

  private collection(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.o.namespace)}/leases`;
  }

  private path(): string {
    return `${this.collection()}/${encodeURIComponent(this.o.name)}`;
  }

  /** One request bounded by the renew deadline, so a hung API server cannot keep a leader leading. */
  private async call(method: RequestInit['method'], path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const signal = AbortSignal.timeout(Math.max(500, this.o.renewDeadlineMs - this.o.retryPeriodMs));
    const res: IncomingMessage = await this.o.connection.request(path, { method, body, signal });
    const chunks: Buffer[] = [];
    for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
    const text = Buffer.concat(chunks).toString('utf8');
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (res.statusCode === 401) this.o.connection.credentialsRejected?.();
    const status = res.statusCode ?? 0;
    if (status === 401 || status === 403 || status >= 500) {
      const message = (parsed as { message?: string } | undefined)?.message;
      this.problem = `${method} lease ${this.path()}: HTTP ${status}${message ? `: ${message}` : ''}`;
      this.warnings.warn(`lease:${status}`, `leader election: ${this.problem}`);
    }
    return { status, body: parsed };
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(this.timer);
        this.wake = undefined;
        resolve();
      };
    });
  }
}

/** Only string values: the Lease is input anyone with `update` on it can write. */
function stringAnnotations(a: unknown): Record<string, string> {
  if (!a || typeof a !== 'object') return {};
  return Object.fromEntries(Object.entries(a).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
}

/** Lease times are MicroTime: RFC 3339 with 6 fraction digits. */
function micro(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}

/** Leadership for the single-replica Deployment (`leader_election: false`): always the leader. */
export class AlwaysLeader implements Leadership {
  readonly isLeader = true;
  onChange(): () => void {
    return () => {};
  }
}
