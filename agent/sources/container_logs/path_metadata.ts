/**
 * Resource attributes of a container log file from its file names alone (log-formats.md §2.1), so
 * records carry pod identity even when the API server is unreachable. Runs once per file.
 */

export interface PathFacts {
  namespace?: string;
  pod?: string;
  uid?: string;
  container?: string;
  restart?: string;
  containerId?: string;
}

const HEX64 = /^[0-9a-f]{64}$/;
// Pod UIDs are UUIDs; static pods use their config hash (md5, 32 hex) instead.
const POD_UID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$/;
// `<restart>.log`, rotated `<restart>.log.20261121-100000` and its `.gz` twin.
const RESTART_FILE = /^(\d+)\.log(?:\.[^/]+)?$/;
// Kubelets before 1.14: `/var/log/pods/<uid>/<container>_<restart>.log`.
const OLD_CONTAINER_FILE = /^([^_/]+)_(\d+)\.log(?:\.[^/]+)?$/;
// dockershim-era targets: `/var/lib/docker/containers/<id>/<id>-json.log[.N][.gz]`.
const DOCKER_FILE = /^([0-9a-f]{64})-json\.log(?:\.[^/]+)?$/;

/** kubelet cuts the symlink's base name, `.log` included, to ext4's limit. */
const MAX_NAME_BYTES = 255;

function lastComponents(path: string): [string, string, string] {
  const parts = path.split('/');
  const n = parts.length;
  return [parts[n - 3] ?? '', parts[n - 2] ?? '', parts[n - 1] ?? ''];
}

/** `<root>/<ns>_<pod>_<uid>/<container>/<restart>.log` and the older uid-only layouts. */
export function parsePodsPath(path: string): PathFacts | undefined {
  const [podDir, dir, file] = lastComponents(path);
  const restart = RESTART_FILE.exec(file)?.[1];
  if (restart !== undefined && dir !== '') {
    const ids = podDir.split('_');
    if (ids.length === 3 && ids[0] !== '' && ids[1] !== '' && ids[2] !== '') {
      return { namespace: ids[0], pod: ids[1], uid: ids[2], container: dir, restart };
    }
    if (POD_UID.test(podDir)) return { uid: podDir, container: dir, restart };
    return undefined;
  }
  const old = OLD_CONTAINER_FILE.exec(file);
  if (old !== null && POD_UID.test(dir)) return { uid: dir, container: old[1], restart: old[2] };
  return undefined;
}

/**
 * `/var/log/containers/<pod>_<ns>_<container>-<id>.log`. When kubelet truncated the name, only
 * what precedes an `_` is known to be whole: the container name and id are dropped rather than
 * reported cut short.
 */
export function parseLinkName(path: string): PathFacts | undefined {
  const base = path.slice(path.lastIndexOf('/') + 1);
  if (!base.endsWith('.log')) return undefined;
  const stem = base.slice(0, -4);
  const dash = stem.lastIndexOf('-');
  const id = dash < 0 ? '' : stem.slice(dash + 1);
  // The id is last and 64 hex long, and no name segment between dashes reaches 64 characters
  // (DNS labels): a whole id means nothing was cut, even at exactly 255 bytes.
  const complete = HEX64.test(id) || Buffer.byteLength(base) < MAX_NAME_BYTES;
  if (complete) {
    if (dash < 0) return undefined;
    const names = stem.slice(0, dash).split('_');
    if (names.length !== 3 || names[0] === '' || names[1] === '' || names[2] === '') return undefined;
    return { pod: names[0], namespace: names[1], container: names[2], containerId: HEX64.test(id) ? id : undefined };
  }
  const names = stem.split('_');
  if (names.length < 2 || names[0] === '') return undefined;
  return { pod: names[0], namespace: names.length >= 3 && names[1] !== '' ? names[1] : undefined };
}

export function parseDockerPath(path: string): string | undefined {
  const [, dir, file] = lastComponents(path);
  const id = DOCKER_FILE.exec(file)?.[1];
  return id !== undefined && id === dir ? id : undefined;
}

/**
 * OpenTelemetry resource attributes for a container log file. `linkPath` is the path the file was
 * found under (normally the /var/log/containers symlink), `targetPath` what it resolves to. The
 * target names the pod unambiguously and survives symlink truncation, so it wins for identity; the
 * container id exists only in the symlink's name (or a docker target). Unknown keys are omitted.
 */
export function resourceFromPaths(linkPath: string, targetPath: string | undefined, nodeName: string): Record<string, string> {
  const pods = (targetPath !== undefined ? parsePodsPath(targetPath) : undefined) ?? parsePodsPath(linkPath);
  const link = parseLinkName(linkPath);
  const resource: Record<string, string> = {};
  const set = (key: string, value: string | undefined): void => {
    if (value !== undefined && value !== '') resource[key] = value;
  };
  set('k8s.node.name', nodeName);
  set('k8s.namespace.name', pods?.namespace ?? link?.namespace);
  set('k8s.pod.name', pods?.pod ?? link?.pod);
  set('k8s.pod.uid', pods?.uid);
  set('k8s.container.name', pods?.container ?? link?.container);
  set('k8s.container.restart_count', pods?.restart);
  set('container.id', link?.containerId ?? (targetPath !== undefined ? parseDockerPath(targetPath) : undefined));
  return resource;
}
