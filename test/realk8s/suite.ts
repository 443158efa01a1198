import { afterAll, beforeAll } from 'vitest';
import { ControlPlane, controlPlaneOrSkip, type Binaries, type ControlPlaneOptions } from './control_plane.ts';

/**
 * One real control plane per suite file (started in beforeAll, stopped in afterAll), or the one a
 * developer keeps running (`node test/realk8s/serve.ts`, then REALK8S_ATTACH=<state file>).
 * `available` is false (and the file's describe blocks skip) on a machine without the binaries,
 * unless CI is set: then the file fails saying how to build them.
 */
export interface SuiteControlPlane {
  readonly available: boolean;
  /** Whether this suite owns the processes (false when attached): restarts of etcd or the API server need that. */
  readonly owned: boolean;
  readonly cp: ControlPlane;
  readonly bin: Binaries;
}

export function suiteControlPlane(options: ControlPlaneOptions = {}): SuiteControlPlane {
  const bin = controlPlaneOrSkip();
  let cp: ControlPlane | undefined;
  const attach = process.env.REALK8S_ATTACH;
  if (bin) {
    beforeAll(async () => {
      cp = attach ? ControlPlane.attach(bin, attach) : await ControlPlane.start(bin, options);
    }, 180_000);
    afterAll(async () => {
      await cp?.stop();
    }, 60_000);
  }
  return {
    available: bin !== undefined,
    owned: !attach,
    get cp() {
      if (!cp) throw new Error('the control plane is not running (beforeAll failed or the suite is skipped)');
      return cp;
    },
    get bin() {
      return bin!;
    },
  };
}

/** A short unique name for a scenario's namespace, Lease and nodes. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36).slice(-5)}${Math.floor(Math.random() * 36 ** 2).toString(36)}`;
}
