import { closeSync, openSync, readSync } from 'node:fs';
import { ConfigError } from './config_error.ts';

/**
 * The largest config file read. A ConfigMap holds at most 1 MiB altogether; a bigger file is a
 * mistake (or an attack on the parser), refused before it is read into memory.
 */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** The file's text, read without ever holding more than MAX_CONFIG_BYTES (a FIFO or /dev/zero too). */
export function readConfigText(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new ConfigError(file, [`cannot read config file: ${why}`], 'cannot read config file');
  }
  try {
    const buf = Buffer.allocUnsafe(MAX_CONFIG_BYTES + 1);
    let n = 0;
    for (;;) {
      let got: number;
      try {
        got = readSync(fd, buf, n, buf.length - n, null);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new ConfigError(file, [`cannot read config file: ${e.code === 'EISDIR' ? 'it is a folder' : e.message}`], 'cannot read config file');
      }
      if (got === 0) break;
      n += got;
      if (n > MAX_CONFIG_BYTES) {
        throw new ConfigError(file, [`the config file is larger than ${MAX_CONFIG_BYTES / 1024 / 1024} MiB (a ConfigMap holds at most 1 MiB); is it the right file?`], 'config file too large');
      }
    }
    return buf.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
}
