import { z } from 'zod';
import { duration, size } from '../../config/types.ts';
import { regexProblem } from '../../../parsers/regex_body.ts';
import { MULTILINE_DEFAULT_MAX_BYTES, MULTILINE_DEFAULT_MAX_LINES, type MultilineMode } from '../../../parsers/multiline.ts';

/**
 * The `multiline` key of a container_logs source: `~` (off), `{ mode: auto }` (stack traces of
 * Java, Python, Go, Node.js), `{ mode: indented }`, or `{ start_pattern: '<regex>' }`, plus the
 * bounds of one group. The pattern is checked here, so a bad one is a config error naming
 * `sources.<name>.multiline.start_pattern`; it is compiled again where the source starts.
 */
export const multilineConfig = z
  .strictObject({
    mode: z.enum(['auto', 'indented', 'start_pattern']).optional(),
    start_pattern: z
      .string()
      .min(1)
      .superRefine((pattern, ctx) => {
        const problem = regexProblem(pattern);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    /** A group with no new line for this long is emitted as it is. */
    timeout: duration('1s').default(1000),
    max_lines: z.number().int().min(1).default(MULTILINE_DEFAULT_MAX_LINES),
    max_bytes: size('1MiB')
      .pipe(z.number().min(1, { error: 'expected a size above 0, like 1MiB' }))
      .default(MULTILINE_DEFAULT_MAX_BYTES),
  })
  .superRefine((c, ctx) => {
    if (c.start_pattern !== undefined && c.mode !== undefined && c.mode !== 'start_pattern') {
      ctx.addIssue({ code: 'custom', path: ['start_pattern'], message: `start_pattern goes with mode start_pattern (or no mode), not mode ${c.mode}` });
    } else if (c.start_pattern === undefined && (c.mode === undefined || c.mode === 'start_pattern')) {
      ctx.addIssue({ code: 'custom', message: 'give mode: auto, mode: indented, or a start_pattern' });
    }
  })
  .transform(({ mode, start_pattern, ...bounds }) => ({
    mode: (start_pattern === undefined ? mode : 'start_pattern') as MultilineMode,
    ...(start_pattern === undefined ? {} : { start_pattern }),
    ...bounds,
  }))
  .nullable()
  .default(null);
export type MultilineConfig = z.infer<typeof multilineConfig>;
