/**
 * A source reads from the node and hands records to the pipeline through its Emitter; it moves its
 * checkpoint only when the pipeline reports a batch accepted by every output.
 */
export interface Source {
  readonly name: string;
  start(): Promise<void>;
  /** Stop reading and hand over everything held (partial lines, open groups). */
  stopReading(): Promise<void>;
  /** Write the final checkpoint (acknowledged positions only) and release files. */
  close(): Promise<void>;
  /** Ready for /readyz: started and not stopping. */
  readonly ready: boolean;
}
