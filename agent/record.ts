/**
 * The record every stage passes on: the OpenTelemetry log data model, in the shape design.md fixes
 * for NDJSON outputs. Attribute and resource objects are shared between records of one file and
 * stream, so stages must treat them as immutable and replace, never mutate, them.
 */
/** A list is how a field given several times keeps every value (journal fields, say). */
export type AttributeValue = string | number | boolean | readonly string[];
export type Attributes = Readonly<Record<string, AttributeValue>>;

export type Body = string | { readonly [key: string]: unknown } | readonly unknown[];

export interface LogRecord {
  /** Time the line carries, RFC 3339 UTC with 9 fraction digits. */
  timestamp: string;
  /** Time the agent read it, same format. */
  observedTimestamp: string;
  severityText?: string;
  severityNumber?: number;
  body: Body;
  attributes: Attributes;
  resource: Attributes;
}

/**
 * Fires once every output a batch was routed to has accepted it (disk buffer: durably written;
 * memory: delivered; dropped on purpose: counted). The source then may move its checkpoint.
 */
export interface Acknowledger {
  accept(): void;
}

/** Counts down one acceptance per output; calls `done` on the last. Extra calls are ignored. */
export class BatchAck implements Acknowledger {
  private remaining: number;
  private readonly done: () => void;

  constructor(outputs: number, done: () => void) {
    this.remaining = outputs;
    this.done = done;
    if (outputs === 0) done();
  }

  accept(): void {
    if (this.remaining <= 0) return;
    if (--this.remaining === 0) this.done();
  }
}

const NO_ACK: Acknowledger = { accept() {} };
export function noAck(): Acknowledger {
  return NO_ACK;
}
