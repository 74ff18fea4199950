import { execFile } from 'node:child_process';
import { open, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { Prng } from './prng.js';

/** Disk images for benchmarks and tests: seeded content, seeded changes, a cold page cache. */

const MiB = 1024 * 1024;

/** Writes `size` bytes of seeded random data; about `zeroPercent` % of its MiB pieces are zero instead. */
export async function writeSeededImage(path: string, size: number, seed: number, zeroPercent = 0): Promise<void> {
  const prng = new Prng(seed);
  const fh = await open(path, 'w');
  try {
    const buf = Buffer.allocUnsafe(MiB);
    for (let at = 0; at < size; at += MiB) {
      const chunk = buf.subarray(0, Math.min(MiB, size - at));
      if (zeroPercent > 0 && prng.next() * 100 < zeroPercent) chunk.fill(0);
      else prng.fill(chunk);
      await fh.write(chunk, 0, chunk.length, at);
    }
    if (size === 0) await fh.truncate(0);
  } finally {
    await fh.close();
  }
}

/** Overwrites `percent` % of the blocks, distinct and chosen at random (seeded); returns what changed. */
export async function changeRandomBlocks(path: string, size: number, percent: number, seed: number, blockBytes = 4096): Promise<{ blocks: number; bytes: number }> {
  const total = Math.floor(size / blockBytes);
  const count = Math.round((total * percent) / 100);
  const prng = new Prng(seed);
  const order = new Uint32Array(total);
  for (let i = 0; i < total; i++) order[i] = i;
  const fh = await open(path, 'r+');
  try {
    const data = Buffer.allocUnsafe(blockBytes);
    for (let i = 0; i < count; i++) {
      const j = i + prng.int(total - i); // partial Fisher–Yates: distinct blocks
      const b = order[j]!;
      order[j] = order[i]!;
      order[i] = b;
      await fh.write(prng.fill(data), 0, blockBytes, b * blockBytes);
    }
  } finally {
    await fh.close();
  }
  return { blocks: count, bytes: count * blockBytes };
}

/** sync, then drop the page cache if we may (root): a timed run then starts with nothing cached. */
export async function coldCache(): Promise<boolean> {
  await promisify(execFile)('sync');
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}
