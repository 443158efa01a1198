/**
 * Development aid: starts the real control plane once and keeps it running until SIGINT/SIGTERM,
 * so suite files can be run one at a time against it without paying its start each time:
 *
 *   node test/realk8s/serve.ts /tmp/kta-realk8s.json &
 *   REALK8S_ATTACH=/tmp/kta-realk8s.json npx vitest run test/realk8s/events.test.ts
 *
 * Tests that restart the API server or etcd need their own control plane and skip in this mode.
 */
import { ControlPlane, findBinaries } from './control_plane.ts';

const stateFile = process.argv[2] ?? '/tmp/kta-realk8s.json';
const found = findBinaries();
if (!found.ok) {
  console.error(found.why);
  process.exit(2);
}
const cp = await ControlPlane.start(found.bin, { nodeMonitorGracePeriod: '8s', nodeMonitorPeriod: '2s' });
cp.save(stateFile);
console.log(`control plane ready: ${cp.server}, state ${cp.dir}, attach with REALK8S_ATTACH=${stateFile}`);
const stop = () => {
  void cp.stop().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
