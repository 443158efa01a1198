import { isAscii } from 'node:buffer';

/** Receives one physical line (without its LF) and the file offset just past its LF. */
export type LineHandler = (line: string, lineStart: number, nextStart: number) => void;

/**
 * Cuts `buf[0, end)` — which must end just after an LF — into lines. Container logs are nearly
 * always ASCII: then one latin1 decode of the whole chunk serves every line as a cheap slice and
 * string index equals byte offset. Otherwise lines are decoded one by one as UTF-8 (invalid
 * sequences become U+FFFD) so byte offsets stay exact.
 */
export function splitLines(buf: Buffer, end: number, fileOffset: number, onLine: LineHandler): void {
  if (isAscii(buf.subarray(0, end))) {
    const text = buf.toString('latin1', 0, end);
    let start = 0;
    while (start < end) {
      const nl = text.indexOf('\n', start);
      onLine(text.slice(start, nl), fileOffset + start, fileOffset + nl + 1);
      start = nl + 1;
    }
    return;
  }
  let start = 0;
  while (start < end) {
    const nl = buf.indexOf(10, start);
    onLine(buf.toString('utf8', start, nl), fileOffset + start, fileOffset + nl + 1);
    start = nl + 1;
  }
}
