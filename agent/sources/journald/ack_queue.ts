interface InFlight {
  readonly cursor: string;
  readonly bytes: number;
  acked: boolean;
}

/**
 * Batches handed to the pipeline, in order. The commit point (what the checkpoint may hold) moves
 * over the acknowledged prefix only: a later batch accepted first waits for the earlier ones.
 */
export class AckQueue {
  private queue: InFlight[] = [];
  private head = 0;
  private readonly onCommit: (cursor: string) => void;
  /** Bytes handed over and not yet acknowledged. */
  unackedBytes = 0;

  constructor(onCommit: (cursor: string) => void) {
    this.onCommit = onCommit;
  }

  get empty(): boolean {
    return this.head === this.queue.length;
  }

  /** Registers a batch ending at `cursor`; call the returned function when it is accepted (extra calls are ignored). */
  track(cursor: string, bytes: number): () => void {
    const item: InFlight = { cursor, bytes, acked: false };
    this.queue.push(item);
    this.unackedBytes += bytes;
    return () => {
      if (item.acked) return;
      item.acked = true;
      this.unackedBytes -= bytes;
      let last: InFlight | undefined;
      while (this.head < this.queue.length && this.queue[this.head]!.acked) last = this.queue[this.head++];
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      if (last) this.onCommit(last.cursor);
    };
  }
}
