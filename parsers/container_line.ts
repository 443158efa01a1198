/**
 * One physical line of a container log file, whatever the runtime's format (CRI text or docker
 * json-file): what the P/F merger needs and nothing more.
 */
export interface ContainerLine {
  /** Normalised: UTC, 9 fraction digits (see timestamp.ts). */
  time: string;
  stream: 'stdout' | 'stderr';
  /** A chunk of a longer line: the runtime split it or the writer has not finished it yet. */
  partial: boolean;
  /** The line's text without its terminator; a full line's trailing CR is already removed. */
  content: string;
}

/** A line that could not be parsed: count it, log it (rate-limited) and go on with the next. */
export interface ParseFailure {
  error: string;
}

export type ContainerLineResult = ContainerLine | ParseFailure;

export function isParseFailure(r: ContainerLineResult): r is ParseFailure {
  return (r as Partial<ParseFailure>).error !== undefined;
}

const QUOTE_MAX = 64;

/**
 * Quotes input for an error message. Cut to 64 characters because the input may be a 16 KiB line
 * and the message ends up in logs; JSON quoting makes control characters and CRs visible.
 */
export function quoteInput(text: string): string {
  return text.length <= QUOTE_MAX ? JSON.stringify(text) : JSON.stringify(text.slice(0, QUOTE_MAX)) + '…';
}
