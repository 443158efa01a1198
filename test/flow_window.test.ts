import { describe, expect, it } from 'vitest';
import { parseConfig } from '../agent/config/load.ts';
import { autoUnackedWindow, DISK_WINDOW_BYTES, LOCAL_WINDOW_BYTES } from '../agent/flow_window.ts';

const outputs = (yaml: string) =>
  Object.values(
    parseConfig(`node_name: n\ndata_dir: /tmp/x\nsources:\n  c: { type: container_logs, include: [/x/*.log] }\noutputs:\n${yaml}`, 'agent.yaml', {}).outputs,
  );

describe('the unacknowledged window a source gets when max_unacked_bytes is absent', () => {
  it('stays small for local outputs: their batches do not wait to fill, and records then die young', () => {
    expect(autoUnackedWindow(outputs('  f: { type: file, inputs: [c], path: /tmp/o }\n  s: { type: stdout, inputs: [c] }\n'))).toBe(LOCAL_WINDOW_BYTES);
  });

  it('holds two full batches of a memory-buffered network output, or batches would be cut by batch.timeout', () => {
    const got = autoUnackedWindow(outputs('  h: { type: http, inputs: [c], endpoint: "http://r/", batch: { max_bytes: 3MiB } }\n  f: { type: file, inputs: [c], path: /tmp/o }\n'));
    expect(got).toBe(6 * 1024 * 1024);
  });

  it('covers a disk buffer’s fsync wait (its records are on disk, not in memory)', () => {
    expect(autoUnackedWindow(outputs('  h: { type: http, inputs: [c], endpoint: "http://r/", buffer: { type: disk } }\n'))).toBe(DISK_WINDOW_BYTES);
  });

  it('honours a floor (journald: journalctl writes in pipe-sized pieces)', () => {
    expect(autoUnackedWindow([], 1024 * 1024)).toBe(1024 * 1024);
  });
});
