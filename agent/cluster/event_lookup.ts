import type { KubeRequester } from '../kube/connection.ts';
import type { KubeObject } from '../kube/types.ts';

/**
 * The few object reads event metrics need (a pod's owner and volumes, a claim's storage class),
 * done once per object when a matching Event arrives. undefined when the object is gone (404) or
 * the read failed: the metric is then labelled `unknown`, never dropped.
 */
export interface ObjectLookup {
  get(kind: 'Pod' | 'PersistentVolumeClaim', namespace: string, name: string): Promise<KubeObject | undefined>;
}

const PATHS = { Pod: 'pods', PersistentVolumeClaim: 'persistentvolumeclaims' } as const;
const CACHE = 4096;

export class ApiObjectLookup implements ObjectLookup {
  private readonly connection: () => Promise<KubeRequester | undefined>;
  private readonly cache = new Map<string, Promise<KubeObject | undefined>>();

  constructor(connection: () => Promise<KubeRequester | undefined>) {
    this.connection = connection;
  }

  get(kind: 'Pod' | 'PersistentVolumeClaim', namespace: string, name: string): Promise<KubeObject | undefined> {
    const key = `${kind}/${namespace}/${name}`;
    let hit = this.cache.get(key);
    if (!hit) {
      hit = this.fetch(`/api/v1/namespaces/${encodeURIComponent(namespace)}/${PATHS[kind]}/${encodeURIComponent(name)}`);
      this.cache.set(key, hit);
      if (this.cache.size > CACHE) this.cache.delete(this.cache.keys().next().value!);
    }
    return hit;
  }

  private async fetch(path: string): Promise<KubeObject | undefined> {
    try {
      const c = await this.connection();
      if (!c) return undefined;
      const res = await c.request(path, { signal: AbortSignal.timeout(10_000) });
      const chunks: Buffer[] = [];
      for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
      if (res.statusCode !== 200) return undefined;
      return JSON.parse(Buffer.concat(chunks).toString('utf8')) as KubeObject;
    } catch {
      return undefined;
    }
  }
}
