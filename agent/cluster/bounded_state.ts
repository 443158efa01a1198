/**
 * Per-object tracker state: a Map with a size cap (the oldest entry goes first) so a burst of
 * objects the watch never reports deleted cannot grow memory without bound. Trackers delete
 * entries when their object is deleted or its work is finished and expired.
 */
export class BoundedState<V> {
  private readonly map = new Map<string, V>();
  private readonly max: number;
  private evicted = 0;

  constructor(max: number) {
    this.max = max;
  }

  get(key: string): V | undefined {
    return this.map.get(key);
  }

  getOrCreate(key: string, create: () => V): V {
    let v = this.map.get(key);
    if (v === undefined) {
      v = create();
      this.map.set(key, v);
      if (this.map.size > this.max) {
        const oldest = this.map.keys().next().value as string;
        this.map.delete(oldest);
        this.evicted++;
      }
    }
    return v;
  }

  set(key: string, v: V): void {
    this.map.delete(key);
    this.getOrCreate(key, () => v);
  }

  delete(key: string): void {
    this.map.delete(key);
  }

  get size(): number {
    return this.map.size;
  }

  /** Entries dropped by the cap (not by delete). */
  get evictions(): number {
    return this.evicted;
  }

  entries(): IterableIterator<[string, V]> {
    return this.map.entries();
  }
}
