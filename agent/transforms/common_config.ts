import { z } from 'zod';
import { inputs } from '../config/types.ts';

/** Keys every transform takes. */
export const transformCommon = {
  inputs,
  /**
   * What happens to a record on which an expression fails at run time (a missing field, a type
   * mismatch): `keep` passes it on as if the expression did not apply, `drop` drops it (counted).
   * Either way it is counted in telemetry_agent_transform_errors_total.
   */
  on_error: z.enum(['keep', 'drop']).default('keep'),
};
