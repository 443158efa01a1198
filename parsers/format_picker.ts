import { isParseFailure } from './container_line.ts';
import { parseCriLine } from './cri.ts';

/**
 * Guesses a file's format from one of its lines, for `format: auto`. Returns undefined when the
 * line does not tell (empty, or neither shape): the caller tries the next line.
 */
export function detectFormat(line: string): 'cri' | 'docker' | undefined {
  if (line.length === 0) return undefined;
  const c = line.charCodeAt(0);
  // json-file lines are objects; CRI lines start with the year. Nothing else reaches these files.
  if (c === 123 /* { */) return 'docker';
  if (c >= 48 && c <= 57 && !isParseFailure(parseCriLine(line))) return 'cri';
  return undefined;
}
