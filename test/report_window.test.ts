import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ClusterMetrics } from '../agent/cluster/cluster_metrics.ts';
import { readHandover, writeHandover, HANDOVER_ANNOTATION } from '../agent/cluster/handover.ts';
import { NodeReadinessTracker, type Node } from '../agent/cluster/node_readiness_tracker.ts';
import { ReportWindow, type ReportMark } from '../agent/cluster/report_window.ts';
import { RolloutTracker, type Deployment } from '../agent/cluster/rollout_tracker.ts';
import { SpanExport } from '../agent/cluster/span_export.ts';
import { deployment, deploymentStatus, node } from '../agent/demo/cluster_objects.ts';

/**
 * The trackers' observation window (issue 10, defect 2): it starts where the previous reporter
 * stopped (the mark on the Lease), not where this process started — a standby usually starts long
 * before it leads — and reports become visible only after the mark that covers them is written.
 */

const T = Date.parse('2026-12-05T10:00:00Z');
const S = 1000;

function rig(window: ReportWindow) {
  const exporter = new InMemorySpanExporter();
  const registry = new Registry();
  const metrics = new ClusterMetrics(registry, false);
  const spans = new SpanExport({ clusterName: 'c', clusterUid: 'u', processor: new SimpleSpanProcessor(exporter) });
  const rollouts = new RolloutTracker({ metrics, spans, window, timeoutGraceMs: 60 * S });
  const nodes = new NodeReadinessTracker({ metrics, spans, window });
  const rolloutCount = async () => ((await registry.getSingleMetric('k8s_deployment_rollouts_total')!.get()).values as { value: number }[]).reduce((n, v) => n + v.value, 0);
  return { exporter, rollouts, nodes, rolloutCount, names: () => exporter.getFinishedSpans().map((s) => `${s.name} ${String(s.attributes['kta.result'])}`) };
}

/** A Deployment at revision 1 whose rollout passed its deadline at T+8 s (ProgressDeadlineExceeded). */
function pastDeadline(): Deployment {
  const d = deployment({ namespace: 'shop', name: 'web', uid: 'd-uid', replicas: 2, revision: 1, progressDeadlineSeconds: 5 }) as unknown as Deployment;
  d.metadata.generation = 1;
  d.status = deploymentStatus(1, { replicas: 2, updated: 2, available: 0, progressing: { reason: 'ProgressDeadlineExceeded', status: 'False', at: T + 8 * S, since: T + 8 * S } }) as Deployment['status'];
  return d;
}

/** The same Deployment after a scale set it progressing again, then superseded by revision 2 (kubectl's view). */
function progressingAgain(revision: number): Deployment {
  const d = pastDeadline();
  d.metadata.annotations!['deployment.kubernetes.io/revision'] = String(revision);
  d.status = deploymentStatus(1, { replicas: 3, updated: 3, available: 0, progressing: { reason: 'ReplicaSetUpdated', at: T + 20 * S, since: T + 20 * S } }) as Deployment['status'];
  return d;
}

describe('ReportWindow: trackers report a transition once across restarts and takeovers', () => {
  it('a standby that started before the deadline passed, and leads after it, does not report the rollout its predecessor reported', async () => {
    // the leader: reports the deadline and hands over its mark
    const leaderWindow = new ReportWindow(ReportWindow.startingAt(T), { hold: false });
    const leader = rig(leaderWindow);
    leader.rollouts.onDeployment(pastDeadline());
    expect(leader.names()).toEqual(['deployment.rollout progress_deadline_exceeded']);
    const handed = readHandover({ [HANDOVER_ANNOTATION]: writeHandover({ signals: leaderWindow.mark }) }).handover!.signals!;

    // before the fix, the standby's window began at its own start (T), before the deadline (T+8 s)
    const processStart = new ReportWindow(ReportWindow.startingAt(T), { hold: false });
    const before = rig(processStart);
    before.rollouts.onDeployment(pastDeadline());
    expect(before.names()).toEqual(['deployment.rollout progress_deadline_exceeded']); // the double report the issue saw

    // now it starts at the mark the leader left on the Lease
    const standbyWindow = new ReportWindow(ReportWindow.startingAt(T), { hold: false });
    const standby = rig(standbyWindow);
    standbyWindow.reset(handed);
    standby.rollouts.onDeployment(pastDeadline());
    // a scale sets the same revision progressing again, then revision 2 supersedes it: still the same span
    standby.rollouts.onDeployment(progressingAgain(1));
    standby.rollouts.onDeployment(progressingAgain(2));
    expect(standby.names()).toEqual([]);
    expect(await standby.rolloutCount()).toBe(0);
  });

  it('reports are held until the mark covering them is persisted; a failed write keeps them for the next', () => {
    const w = new ReportWindow(ReportWindow.startingAt(T));
    const ran: string[] = [];
    w.report('a', T + S, () => ran.push('a'));
    const first = w.prepare();
    expect(first.mark.throughMs).toBe(T + S);
    w.report('b', T + 2 * S, () => ran.push('b'));
    first.abandon(); // the Lease write failed: nothing reported
    expect(ran).toEqual([]);
    const second = w.prepare();
    expect(second.mark).toEqual({ throughMs: T + 2 * S, keys: ['a', 'b'] });
    second.release();
    expect(ran).toEqual(['a', 'b']);
    // a key already reported is never reported again, whatever its time
    w.report('a', T + 9 * S, () => ran.push('a again'));
    w.prepare().release();
    expect(ran).toEqual(['a', 'b']);
  });

  it('work open at the handover (a node NotReady) that ends while nobody leads is reported by the next leader', () => {
    const leaderWindow = new ReportWindow(ReportWindow.startingAt(T), { hold: false });
    const leader = rig(leaderWindow);
    const down = node({ name: 'n1', uid: 'n-uid', created: T - 3600 * S, ready: false, since: T + 10 * S }) as unknown as Node;
    leader.nodes.onNode(down);
    const handed: ReportMark = readHandover({ [HANDOVER_ANNOTATION]: writeHandover({ signals: leaderWindow.mark }) }).handover!.signals!;
    expect(handed.open).toEqual([['node/n-uid', T + 10 * S]]);

    // the leader dies; the node comes back before anyone leads: the new leader's LIST shows it Ready
    const nextWindow = new ReportWindow(ReportWindow.startingAt(T + 60 * S), { hold: false });
    const next = rig(nextWindow);
    nextWindow.reset(handed);
    next.nodes.onNode(node({ name: 'n1', uid: 'n-uid', created: T - 3600 * S, ready: true, since: T + 40 * S }) as unknown as Node);
    const spans = next.exporter.getFinishedSpans();
    expect(spans.map((s) => s.name)).toEqual(['node.not_ready']);
    expect(spans[0]!.startTime[0]).toBe((T + 10 * S) / 1000);
    expect(spans[0]!.endTime[0]).toBe((T + 40 * S) / 1000);
  });
});
