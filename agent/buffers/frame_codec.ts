import { crc32 } from 'node:zlib';

/**
 * The on-disk frame of the disk buffer, one per record:
 *
 *   [u32 LE payload length][u32 LE CRC-32 of the payload][payload: the record's JSON, UTF-8]
 *
 * A frame is valid when its length is non-zero, it ends inside the file, and the CRC matches. A
 * torn write (a crash mid-append), a zero-filled tail (a node crash on some filesystems) or flipped
 * bytes all fail one of those checks, so recovery can cut back to the last good frame.
 */
export const FRAME_HEADER_BYTES = 8;

/** Frames for `payloads` back to back in one buffer (one write(2) for a whole push). */
export function encodeFrames(payloads: readonly string[]): Buffer {
  const lengths = new Array<number>(payloads.length);
  let total = 0;
  for (let i = 0; i < payloads.length; i++) {
    const n = Buffer.byteLength(payloads[i]!, 'utf8');
    lengths[i] = n;
    total += FRAME_HEADER_BYTES + n;
  }
  const buf = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < payloads.length; i++) {
    const n = lengths[i]!;
    const start = at + FRAME_HEADER_BYTES;
    buf.write(payloads[i]!, start, n, 'utf8');
    buf.writeUInt32LE(n, at);
    buf.writeUInt32LE(crc32(buf.subarray(start, start + n)), at + 4);
    at = start + n;
  }
  return buf;
}

export type FrameCheck =
  | { readonly ok: true; readonly length: number }
  | { readonly ok: false; readonly reason: string };

/** Checks the header at `view[0..8)` of a frame with `available` (at least 8) bytes of the file from its start on. */
export function checkHeader(view: Buffer, available: number): FrameCheck {
  const length = view.readUInt32LE(0);
  if (length === 0) return { ok: false, reason: 'zero frame length' };
  if (length > available - FRAME_HEADER_BYTES) return { ok: false, reason: `frame length ${length} runs past the end` };
  return { ok: true, length };
}

export function checkPayload(view: Buffer, length: number): FrameCheck {
  const payload = view.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
  if (payload.length < length) return { ok: false, reason: 'short read' };
  if (crc32(payload) !== view.readUInt32LE(4)) return { ok: false, reason: 'CRC mismatch' };
  return { ok: true, length };
}
