/**
 * A process that fills a disk buffer (fsync: always, when_full: block) as fast as it can while a
 * slower reader drains it, for a test to `kill -9` at a random moment. Its stdout (a pipe: written
 * synchronously) says what it was told:
 *   `durable N`  records 0..N were made durable (onAccepted fired)
 *   `acking N`   about to acknowledge the chunk ending with record N (a kill may come during ack())
 *   `acked N`    records 0..N were acknowledged (read and given back to ack)
 *   `blocked`    a push was still waiting for room an event-loop turn later: the buffer is full
 * Usage: node disk_buffer_child.ts DATA_DIR MAX_SIZE SEGMENT_BYTES
 */
import { DiskBuffer } from '../../agent/buffers/disk_buffer.ts';
import { createLogger } from '../../agent/log.ts';
import { SelfMetrics } from '../../agent/metrics.ts';
import { id, recs } from './buffer_fixtures.ts';

const [dataDir, maxSize, segmentBytes] = process.argv.slice(2);
const buffer = DiskBuffer.open({
  output: 'crash',
  dataDir: dataDir!,
  maxSize: Number(maxSize),
  segmentBytes: Number(segmentBytes),
  whenFull: 'block',
  fsync: 'always',
  metrics: new SelfMetrics('child'),
  log: createLogger('warn'),
});
const say = (line: string) => process.stdout.write(`${line}\n`);

void (async () => {
  for (;;) {
    const chunk = await buffer.read(20, 1 << 20);
    if (!chunk) return;
    await new Promise((r) => setTimeout(r, 1 + Math.random() * 3));
    const last = id(chunk.records.at(-1)!);
    say(`acking ${last}`);
    buffer.ack(chunk);
    say(`acked ${last}`);
  }
})();

let next = 0;
for (;;) {
  const batch = recs(next, 50, 40);
  const last = next + batch.length - 1;
  next += batch.length;
  const taken = buffer.push(batch, 0, () => say(`durable ${last}`)).then(() => 'taken');
  const turn = new Promise((resolve) => setImmediate(() => resolve('waiting')));
  if ((await Promise.race([taken, turn])) === 'waiting') {
    say('blocked');
    await taken;
  }
}
