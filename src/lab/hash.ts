import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { BlockDevice } from '../replication/disk.js';

const PIECE = 4 * 1024 * 1024;

/** sha256 of a whole disk file, read in 4 MiB pieces: how every data test compares disks. */
export async function hashFile(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(PIECE);
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

/** sha256 of a whole disk read through the disk interface (a page blob, a file), in 4 MiB pieces. */
export async function hashDevice(disk: BlockDevice): Promise<string> {
  const h = createHash('sha256');
  for (let at = 0; at < disk.size; at += PIECE) h.update(await disk.read(at, Math.min(PIECE, disk.size - at)));
  return h.digest('hex');
}
