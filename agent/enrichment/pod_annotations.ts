import { PARSER_NAMES, type ParserName } from './config.ts';

/**
 * Pod annotations with which a pod's owner steers the agent (README "Pod annotations"):
 *
 *   telemetry-agent.io/exclude: "true"              drop every container's logs of the pod
 *   telemetry-agent.io/exclude-<container>: "true"  drop one container's logs
 *   telemetry-agent.io/parser: json|logfmt|none     body parser for the pod's containers
 *   telemetry-agent.io/parser-<container>: ...      for one container (wins over the pod's)
 *
 * A container's own annotation wins over the pod's, so `exclude: "true"` with
 * `exclude-sidecar: "false"` keeps only the sidecar. Values other than these are ignored (the
 * source's own setting applies) and reported once per pod by the caller.
 */
export const ANNOTATION_PREFIX = 'telemetry-agent.io/';

export interface Steering {
  exclude: boolean;
  /** undefined: the source's own `parser`. */
  parser: ParserName | undefined;
  /** Annotations of ours whose value means nothing, for a warning. */
  invalid: string[];
}

const NO_STEERING: Steering = { exclude: false, parser: undefined, invalid: [] };

export function steeringFor(annotations: Readonly<Record<string, string>> | undefined, container: string | undefined): Steering {
  if (!annotations) return NO_STEERING;
  const invalid: string[] = [];
  const flag = (key: string): boolean | undefined => {
    const v = annotations[key];
    if (v === undefined) return undefined;
    const lower = v.trim().toLowerCase();
    if (lower === 'true') return true;
    if (lower === 'false') return false;
    invalid.push(`${key}=${JSON.stringify(v)}`);
    return undefined;
  };
  const parser = (key: string): ParserName | undefined => {
    const v = annotations[key];
    if (v === undefined) return undefined;
    const lower = v.trim().toLowerCase();
    if ((PARSER_NAMES as readonly string[]).includes(lower)) return lower as ParserName;
    invalid.push(`${key}=${JSON.stringify(v)}`);
    return undefined;
  };
  const own = container === undefined ? undefined : flag(`${ANNOTATION_PREFIX}exclude-${container}`);
  const exclude = own ?? flag(`${ANNOTATION_PREFIX}exclude`) ?? false;
  const ownParser = container === undefined ? undefined : parser(`${ANNOTATION_PREFIX}parser-${container}`);
  const podParser = parser(`${ANNOTATION_PREFIX}parser`);
  if (!exclude && ownParser === undefined && podParser === undefined && invalid.length === 0) return NO_STEERING;
  return { exclude, parser: ownParser ?? podParser, invalid };
}
