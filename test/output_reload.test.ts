import { appendFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent.ts';
import { parseConfig } from '../agent/config/load.ts';
import { createLogger } from '../agent/log.ts';
import { NdjsonReceiver } from './fakes/ndjson_receiver.ts';
import { criLines, NodeTree, requireNode24 } from './helpers/agent_harness.ts';
import { waitFor } from './helpers/child_agent.ts';

/**
 * Reloads that take a disk-buffered output away and bring it back: the returning output opens its
 * buffer folder only once the removed one has closed it, and everything either of them held is
 * delivered once.
 */
describe('a disk-buffered output removed and added back by reloads', () => {
  requireNode24();
  const tree = new NodeTree('kta-output-reload-');
  afterAll(() => tree.remove());

  it('waits for the removed output to close its buffer, then delivers every line', async () => {
    const receiver = await NdjsonReceiver.start();
    const log = tree.container({ namespace: 'shop', pod: 'web-0', container: 'app', content: '' });
    const config = (withDisk: boolean) =>
      parseConfig(
        `node_name: n1
data_dir: ${tree.dataDir}
shutdown_timeout: 5s
server: { listen: "127.0.0.1:0" }
kubernetes: { mode: disabled }
sources:
  containers: { type: container_logs, include: ["${tree.containersDir}/*.log"], glob_interval: 100ms, poll_interval: 100ms }
outputs:
  local: { type: file, inputs: [containers], path: "${tree.outputPath}" }
${withDisk ? `  shipped: { type: http, inputs: [containers], endpoint: "${receiver.url}/", buffer: { type: disk, max_size: 8MiB }, batch: { max_events: 50, timeout: 50ms } }\n` : ''}`,
        'agent.yaml',
        {},
      );
    const logs: string[] = [];
    const agent = new Agent(config(true), createLogger('info', (l) => logs.push(l)));
    await agent.start();
    try {
      const bodies = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `line ${from + i}`);
      appendFileSync(log.logPath, criLines(bodies(200)));
      await waitFor('the first lines shipped', () => receiver.records.length >= 50, 10_000);
      // The next request hangs 1.5 s: the removed output is still sending when it is named again.
      receiver.server.inject({ delayMs: 1500 });
      appendFileSync(log.logPath, criLines(bodies(200, 200)));
      const pendingFaults = () => (receiver.server['faults'] as unknown[]).length;
      await waitFor('the slow request to arrive', () => pendingFaults() === 0, 10_000, 5);
      const arrived = Date.now();
      await agent.reload(config(false));
      await agent.reload(config(true));
      // The second reload opened the buffer folder only after the removed output's request ended
      // and its buffer closed.
      expect(Date.now() - arrived).toBeGreaterThanOrEqual(1300);
      appendFileSync(log.logPath, criLines(bodies(200, 400)));
      await waitFor('every line shipped', () => new Set(receiver.records.map((r) => r.body)).size >= 600, 20_000);
      const got = receiver.records.map((r) => String(r.body));
      expect([...new Set(got)].sort()).toEqual(bodies(600).sort());
      // Duplicates: at most the batch the removed output had in flight.
      expect(got.length - 600).toBeLessThanOrEqual(50);
      expect(logs.some((l) => /output shipped removed/.test(l))).toBe(true);
      expect(logs.filter((l) => /ERROR/.test(l))).toEqual([]);
    } finally {
      await agent.stop();
      await receiver.close();
    }
  }, 60_000);
});
