import { readFileSync } from 'node:fs';

/** The status page: one self-contained HTML file (no external scripts or fonts: it works air-gapped). */
export const STATUS_PAGE = readFileSync(new URL('./page.html', import.meta.url), 'utf8');
