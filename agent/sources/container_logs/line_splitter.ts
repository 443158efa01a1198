import { isAscii } from 'node:buffer';

/**
 * Receives one physical line (without its LF), where it starts, and whether it is a binary string:
 * in `bytes` mode a chunk that is not pure ASCII arrives as latin1, one char per byte.
 */
export type LineHandler = (line: string, lineStart: number, binary: boolean) => void;

/**
 * Cuts `buf[0, end)` — which must end just after an LF — into lines. Container logs are nearly
 * always ASCII: then one latin1 decode of the whole chunk serves every line as a cheap slice and
 * string index equals byte offset. Otherwise, `bytes` mode keeps the same single decode (the caller
 * turns bytes into UTF-8 after joining P/F chunks, which may split a character), and `utf8` mode
 * decodes line by line (invalid sequences become U+FFFD).
 */
export function splitLines(buf: Buffer, end: number, fileOffset: number, mode: 'bytes' | 'utf8', onLine: LineHandler): void {
  const ascii = isAscii(buf.subarray(0, end));
  if (ascii || mode === 'bytes') {
    const text = buf.toString('latin1', 0, end);
    let start = 0;
    while (start < end) {
      const nl = text.indexOf('\n', start);
      onLine(text.slice(start, nl), fileOffset + start, !ascii);
      start = nl + 1;
    }
    return;
  }
  let start = 0;
  while (start < end) {
    const nl = buf.indexOf(10, start);
    onLine(buf.toString('utf8', start, nl), fileOffset + start, false);
    start = nl + 1;
  }
}

/** A binary (latin1) string holding UTF-8 bytes, as text. */
export function utf8FromBinary(binary: string): string {
  return Buffer.from(binary, 'latin1').toString('utf8');
}
