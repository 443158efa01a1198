import { describe, it, expect } from 'vitest';
import { detectFormat } from './format_picker.ts';

describe('detectFormat', () => {
  it.each([
    ['docker JSON', '{"log":"x\\n","stream":"stdout","time":"2026-11-21T10:00:00Z"}', 'docker'],
    ['containerd', '2026-11-21T10:00:00.1Z stdout F x', 'cri'],
    ['CRI-O', '2026-11-21T10:00:00.123456789+00:00 stderr P x', 'cri'],
    ['empty CRI record', '2026-11-21T10:00:01Z stdout F ', 'cri'],
    ['empty line', '', undefined],
    ['CRI line without tag space', '2026-11-21T10:00:03Z stdout F', undefined],
    ['digits that are not CRI', '12345 hello', undefined],
    ['plain text', 'hello', undefined],
    ['leading space', ' {"log":"x"}', undefined],
  ])('%s', (_name, line, expected) => {
    expect(detectFormat(line)).toBe(expected);
  });
});
