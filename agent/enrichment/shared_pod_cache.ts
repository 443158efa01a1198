import type { KubeAccess } from '../kube/kube_access.ts';
import type { WatchHandlers } from '../kube/list_watch.ts';
import { PodCache, type PodCacheOptions } from '../kube/pod_cache.ts';
import type { NodePods, Pod } from '../kube/types.ts';
import type { Logger } from '../log.ts';
import type { SelfMetrics } from '../metrics.ts';

/**
 * The node's one PodCache, started when the first source that enriches asks for it (an agent that
 * enriches nothing opens no watch) and shared by all of them. The connection resolves
 * asynchronously; until then, and when it fails, readers see `cache` undefined and `state` says
 * why, so the log path never waits for it.
 */
export type PodCacheState = 'idle' | 'resolving' | 'off' | 'failed' | 'running';

export interface SharedPodCacheOptions {
  kube: KubeAccess;
  nodeName: string;
  deletedGraceMs: number;
  namespaceMetadata: boolean;
  metrics: SelfMetrics;
  log: Logger;
  /** Watch timing (tests and the bench shorten it). */
  watch?: PodCacheOptions['watch'];
}

export class SharedPodCache implements NodePods {
  state: PodCacheState = 'idle';
  cache: PodCache | undefined;
  /**
   * When the first LIST of this node's pods went out (undefined while the client is still loading and
   * the connection resolving, which on a busy node takes seconds): records wait at most `wait_for_pod`
   * after it for that LIST, so the wait measures the API, not the agent's own start-up.
   */
  askedAt: number | undefined;
  private readonly o: SharedPodCacheOptions;
  private stopped = false;
  /** Readers besides enrichment (the pod startup tracker), with how to detach each from the watch. */
  private readonly followers = new Map<WatchHandlers<Pod>, (() => void) | undefined>();

  constructor(options: SharedPodCacheOptions) {
    this.o = options;
  }

  acquire(): void {
    if (this.state !== 'idle' || this.stopped) return;
    if (!this.o.kube.enabled) {
      this.state = 'off';
      return;
    }
    this.state = 'resolving';
    this.o.kube.connection().then(
      (connection) => {
        if (this.stopped) return;
        if (!connection) {
          this.state = 'off';
          return;
        }
        this.cache = new PodCache(
          {
            connection,
            nodeName: this.o.nodeName,
            log: this.o.log,
            deletedGraceMs: this.o.deletedGraceMs,
            namespaceMetadata: this.o.namespaceMetadata,
            watch: this.o.watch,
          },
          this.o.metrics,
        );
        for (const h of this.followers.keys()) this.attach(h);
        this.cache.start();
        this.askedAt = Date.now();
        this.state = 'running';
      },
      (err: Error) => {
        this.state = 'failed';
        this.o.log.error(`kubernetes: ${err.message}; container records go out without pod metadata (counted in telemetry_agent_unenriched_records_total)`);
      },
    );
  }

  /**
   * Follows this node's pods through the one LIST and WATCH enrichment uses (a node agent opens no
   * second pod watch): `handlers` get every pod already known as added, then each change. Starts the
   * cache if nothing has yet. Returns the function that stops following.
   */
  follow(handlers: WatchHandlers<Pod>): () => void {
    this.followers.set(handlers, undefined);
    if (this.cache) this.attach(handlers);
    else this.acquire();
    return () => {
      this.followers.get(handlers)?.();
      this.followers.delete(handlers);
    };
  }

  /** The pods known now (none before the cache runs). */
  values(): Iterable<Pod> {
    return this.cache?.pods.values() ?? [];
  }

  private attach(handlers: WatchHandlers<Pod>): void {
    const pods = this.cache!.pods;
    for (const pod of pods.values()) handlers.onAdd?.(pod, true);
    this.followers.set(handlers, pods.subscribe(handlers));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.cache?.stop();
  }
}
