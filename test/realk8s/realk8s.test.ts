import { describe } from 'vitest';
import { countingScenarios } from './counting.ts';
import { badInputScenarios } from './bad_input.ts';
import { deployChecks } from './deploy_checks.ts';
import { enrichmentScenarios } from './enrichment.ts';
import { leastPrivilegeChecks } from './least_privilege.ts';
import { killAndFailoverScenarios } from './scenarios.ts';
import { suiteControlPlane } from './suite.ts';

/**
 * The real-control-plane suite (issue 10): one control plane for every scenario, run one after the
 * other (several at once would share the Events, nodes and the Lease, and 2 cores). Each scenario
 * lives in its own module; `-t` picks one while working on it.
 */
const plane = suiteControlPlane({ nodeMonitorGracePeriod: '8s', nodeMonitorPeriod: '2s' });

describe.skipIf(!plane.available)('against a real Kubernetes control plane (v1.20.2)', () => {
  deployChecks(plane);
  countingScenarios(plane);
  killAndFailoverScenarios(plane);
  enrichmentScenarios(plane);
  badInputScenarios(plane);
  leastPrivilegeChecks(plane);
});
