import type { ContainerLineResult } from './container_line.ts';
import { quoteInput } from './container_line.ts';
import { normalizeRfc3339 } from './timestamp.ts';

/**
 * Parses one CRI log line, `<time> SP <stream> SP <tags> SP <content>`, given without its LF
 * (log-formats.md §1.1). Only the first three spaces separate fields: content keeps its spaces,
 * tabs, CRs and whatever the reader decoded invalid UTF-8 to.
 */
export function parseCriLine(line: string): ContainerLineResult {
  if (line.length === 0) return { error: 'cri: empty line' };
  const s1 = line.indexOf(' ');
  // Check the timestamp before complaining about missing separators: a line that is not CRI at all
  // (docker JSON, a stray text line) is then reported as what it is.
  const time = normalizeRfc3339(s1 < 0 ? line : line.slice(0, s1));
  if (time === undefined) return { error: `cri: invalid timestamp ${quoteInput(s1 < 0 ? line : line.slice(0, s1))}` };
  if (s1 < 0) return { error: 'cri: stream not found' };

  const s2 = line.indexOf(' ', s1 + 1);
  const streamEnd = s2 < 0 ? line.length : s2;
  let stream: 'stdout' | 'stderr';
  if (streamEnd - s1 === 7 && line.startsWith('stdout', s1 + 1)) stream = 'stdout';
  else if (streamEnd - s1 === 7 && line.startsWith('stderr', s1 + 1)) stream = 'stderr';
  else return { error: `cri: invalid stream ${quoteInput(line.slice(s1 + 1, streamEnd))}` };
  if (s2 < 0) return { error: 'cri: log tag not found' };

  // kubelet rejects a line without the space after the tags (`... stdout F`), so do we.
  const s3 = line.indexOf(' ', s2 + 1);
  if (s3 < 0) return { error: 'cri: log tag not found' };
  // Tags are `:`-separated and only the first is defined (P or F); later ones are ignored.
  const tag = line.charCodeAt(s2 + 1);
  const partial = tag === 80; /* P */
  if ((!partial && tag !== 70) /* F */ || (s2 + 2 !== s3 && line.charCodeAt(s2 + 2) !== 58) /* : */) {
    return { error: `cri: invalid log tag ${quoteInput(line.slice(s2 + 1, s3))}` };
  }

  // CRI-O keeps the CR of CRLF output, containerd drops it; records look like containerd's. A P
  // chunk keeps its CR: it is not a line end.
  const end = line.length;
  const content = !partial && line.charCodeAt(end - 1) === 13 ? line.slice(s3 + 1, end - 1) : line.slice(s3 + 1);
  return { time, stream, partial, content };
}
