import { describe, expect, it } from 'vitest';
import { AckQueue } from './ack_queue.ts';
import { Backoff } from '../../backoff.ts';
import { journalctlArgs } from './journalctl_process.ts';

describe('journalctlArgs', () => {
  const base = ['--directory=/var/log/journal', '--follow', '--merge', '--all', '--output=export', '--no-pager'];

  it('reads everything without a checkpoint', () => {
    expect(journalctlArgs({ directory: '/var/log/journal', units: [], priority: 7 })).toEqual([...base, '--no-tail']);
  });

  it('starts at the checkpoint cursor (printed again, so the caller can see whether it still exists)', () => {
    expect(journalctlArgs({ directory: '/var/log/journal', cursor: 's=1;i=2', units: [], priority: 7 })).toEqual([
      ...base,
      '--cursor=s=1;i=2',
      '--no-tail',
    ]);
  });

  it('starts at a time for read_from: end, and adds unit and priority filters', () => {
    expect(journalctlArgs({ directory: '/var/log/journal', sinceMicros: 1700000000000042, units: ['kubelet', 'containerd.service'], priority: 4 })).toEqual([
      ...base,
      '--since=@1700000000.000042',
      '--no-tail',
      '--unit=kubelet',
      '--unit=containerd.service',
      '--priority=4',
    ]);
  });
});

describe('AckQueue', () => {
  it('commits only over the acknowledged prefix, in order', () => {
    const commits: string[] = [];
    const q = new AckQueue((c) => commits.push(c));
    const a = q.track('a', 10);
    const b = q.track('b', 20);
    const c = q.track('c', 30);
    expect(q.unackedBytes).toBe(60);
    c();
    expect(commits).toEqual([]);
    b();
    b();
    expect(commits).toEqual([]);
    expect(q.unackedBytes).toBe(10);
    a();
    expect(commits).toEqual(['c']);
    expect(q.empty).toBe(true);
    expect(q.unackedBytes).toBe(0);
    const d = q.track('d', 1);
    d();
    expect(commits).toEqual(['c', 'd']);
  });
});

describe('Backoff', () => {
  it('doubles up to the maximum, with ±20% jitter, and starts over after reset', () => {
    const mid = new Backoff(1000, 8000, () => 0.5);
    expect([1, 2, 3, 4, 5].map(() => mid.next())).toEqual([1000, 2000, 4000, 8000, 8000]);
    mid.reset();
    expect(mid.next()).toBe(1000);
    expect(new Backoff(1000, 8000, () => 0).next()).toBe(800);
    expect(new Backoff(1000, 8000, () => 0.999999).next()).toBe(1200);
  });
});
