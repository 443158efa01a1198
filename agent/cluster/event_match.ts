import { matchesGlob } from 'node:path';

/** Shell-style glob on a label value (`rook-*`, `Failed*`); `*` also matches the empty string. */
export function globMatch(value: string, pattern: string): boolean {
  return pattern === '*' || matchesGlob(value, pattern);
}

/**
 * The reporting component as a bounded label value (span-and-metric-model.md §1.2): CSI
 * provisioners report `<driver>_<host>_<uuid>`, a new value after every restart, so only the part
 * before the first `_` is kept; an empty component is `other`.
 */
export function normalizeComponent(component: string): string {
  if (!component) return 'other';
  const cut = component.indexOf('_');
  return cut > 0 ? component.slice(0, cut) : component;
}

/** `Normal` / `Warning`; anything else (core/v1 writes do not enforce it) is `other`. */
export function clampType(type: string): string {
  return type === 'Normal' || type === 'Warning' ? type : 'other';
}
