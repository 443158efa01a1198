/**
 * A config name (an output's, say) made safe as one path component: anything but letters, digits,
 * `.`, `_`, `-` (and a leading dot) becomes `%hh`, so two names never share a file.
 */
export function safeFileName(name: string): string {
  return name.replace(/^\.|[^A-Za-z0-9._-]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
