import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

/** sha256 of a whole disk file, read in 4 MiB pieces: how every data test compares disks. */
export async function hashFile(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    return h.digest('hex');
  } finally {
    await fh.close();
  }
}
