import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../config/load.ts';
import { journalDirectories, type JournaldConfig } from './config.ts';

const config = (journal: string) =>
  `sources:\n  journal:\n    type: journald\n${journal}outputs:\n  out:\n    type: stdout\n    inputs: [journal]\n`;
const journalOf = (text: string) => parseConfig(config(text), 'test.yaml', {}).sources.journal as JournaldConfig;

describe('journald config', () => {
  it("takes design.md's single `directory`, a list of `directories`, or the host's two journals by default", () => {
    expect(journalDirectories(journalOf('    directory: /var/log/journal\n'))).toEqual(['/var/log/journal']);
    expect(journalDirectories(journalOf('    directories: [/a, /b]\n'))).toEqual(['/a', '/b']);
    expect(journalDirectories(journalOf(''))).toEqual(['/var/log/journal', '/run/log/journal']);
  });

  it('refuses both at once, naming the key', () => {
    expect(() => journalOf('    directory: /a\n    directories: [/b]\n')).toThrow(
      'sources.journal.directories: give either directory or directories, not both',
    );
  });
});
