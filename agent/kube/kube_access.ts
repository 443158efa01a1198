import type { Logger } from '../log.ts';
import { resolveConnection, type ConnectionOptions, type KubeConnection } from './connection.ts';

export type KubeAccessOptions = Omit<ConnectionOptions, 'log'>;

/**
 * The agent's one way to the Kubernetes API: the connection is resolved on first use (so an agent
 * that reads no API never loads the client) and shared by every source and stage, so the agent
 * holds one set of credentials and one keep-alive pool. `connection()` resolves undefined when the
 * API is off (`mode: disabled`, or `auto` with no cluster; logged once by resolveConnection) and
 * rejects with a KubeConnectionError when an explicit mode cannot work.
 */
export class KubeAccess {
  private readonly options: ConnectionOptions;
  private resolving: Promise<KubeConnection | undefined> | undefined;
  private closed = false;

  constructor(options: KubeAccessOptions, log: Logger) {
    this.options = { ...options, log };
  }

  get enabled(): boolean {
    return this.options.mode !== 'disabled';
  }

  connection(): Promise<KubeConnection | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    this.resolving ??= resolveConnection(this.options);
    return this.resolving;
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = await this.resolving?.catch(() => undefined);
    c?.close();
  }
}
