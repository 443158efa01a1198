import { realpathSync } from 'node:fs';
import { parseDockerPath, parseLinkName, parsePodsPath, type PathFacts } from './path_metadata.ts';

/**
 * Files are read only where kubelet puts them. A glob match is followed through every symlink; the
 * file it ends at is read only when it has kubelet's layout, `<root>/<ns>_<pod>_<uid>/<container>/<n>.log`
 * (or docker's `<root>/<id>/<id>-json.log`), and when the pod the path it was found under claims
 * (kubelet's symlink name `<pod>_<ns>_<container>-<id>.log`, or a pods path) is the pod of that file.
 * So a symlink to /etc/shadow, to a token, or to another pod's log under a name that claims this
 * one, is refused. `allowed_roots` narrows the roots further.
 */
export type LayoutRefusal = 'outside_layout' | 'name_mismatch' | 'outside_allowed_roots';

export interface LayoutProblem {
  reason: LayoutRefusal;
  message: string;
}

/** The ns/pod/uid/container of a path in kubelet's pods layout: n.log, or a rotated n.log.<suffix>. */
const LIVE_OR_ROTATED = /^\d+\.log(?:\.[^/]+)?$/;

function podsLayout(path: string): PathFacts | undefined {
  const facts = parsePodsPath(path);
  const file = path.slice(path.lastIndexOf('/') + 1);
  // The uid-only layouts of kubelets before 1.14 are not kubelet's today: not trusted.
  return facts?.namespace !== undefined && LIVE_OR_ROTATED.test(file) ? facts : undefined;
}

export class LayoutCheck {
  private readonly roots: readonly string[] | undefined;

  /** `allowedRoots`: folders (resolved through symlinks here, once) the files must lie under. */
  constructor(allowedRoots: readonly string[] | undefined) {
    this.roots = allowedRoots?.map((r) => {
      let real = r;
      try {
        real = realpathSync(r);
      } catch {
        // not there (yet): compared as written
      }
      return real.endsWith('/') ? real : `${real}/`;
    });
  }

  /** Why `realPath` (found as `foundPath`) must not be read; undefined when it may. */
  problem(foundPath: string, realPath: string): LayoutProblem | undefined {
    if (this.roots && !this.roots.some((root) => realPath.startsWith(root))) {
      return { reason: 'outside_allowed_roots', message: `resolves to ${realPath}, outside allowed_roots (${this.roots.join(', ')})` };
    }
    const pods = podsLayout(realPath);
    const dockerId = pods ? undefined : parseDockerPath(realPath);
    if (!pods && dockerId === undefined) {
      return {
        reason: 'outside_layout',
        message: `resolves to ${realPath}, which is not in kubelet's layout (<root>/<namespace>_<pod>_<uid>/<container>/<n>.log or <root>/<id>/<id>-json.log)`,
      };
    }
    if (foundPath === realPath) return undefined;
    // What the name it was found under claims: kubelet's symlink name, or a pods path (a folder on
    // the way is a symlink).
    const claim = podsLayout(foundPath) ?? parseLinkName(foundPath);
    if (!claim) return undefined; // claims no pod: the file's own path names it
    const mismatch = (what: string, claimed: string | undefined, actual: string | undefined) =>
      claimed !== undefined && actual !== undefined && claimed !== actual ? `${what} ${JSON.stringify(claimed)} vs ${JSON.stringify(actual)}` : undefined;
    let why: string | undefined;
    if (pods) {
      why = mismatch('namespace', claim.namespace, pods.namespace) ?? mismatch('pod', claim.pod, pods.pod) ?? mismatch('container', claim.container, pods.container);
      if (!why && claim.uid !== undefined) why = mismatch('pod uid', claim.uid, pods.uid);
    } else if (claim.containerId !== dockerId) {
      why = `container id ${JSON.stringify(claim.containerId ?? '(none in the name)')} vs ${JSON.stringify(dockerId)}`;
    }
    return why ? { reason: 'name_mismatch', message: `its name claims another container than ${realPath} holds (${why})` } : undefined;
  }
}
