import { link, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BoomerangError } from '../replication/errors.js';
import { readFileIfPresent } from '../runtime/durable.js';

/**
 * The "in use" mark of a retention directory: a file holding the owner's pid. It is created
 * complete and atomically (written aside, then hard-linked into place), so a reader never sees a
 * half-written pid. A lock whose process is gone (kill -9, power loss) is taken over.
 */
export const LOCK_FILE = 'LOCK';

export class DiskLock {
  private constructor(readonly path: string) {}

  static async acquire(dir: string): Promise<DiskLock> {
    const path = join(dir, LOCK_FILE);
    const aside = `${path}.${process.pid}`;
    await writeFile(aside, `${process.pid}\n`);
    try {
      // Two attempts: the second follows the removal of a stale lock.
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          await link(aside, path);
          return new DiskLock(path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        const holder = await lockHolder(dir);
        if (holder !== undefined) throw inUse(dir, holder);
        await rm(path, { force: true });
      }
      throw new BoomerangError('DISK_IN_USE', `retention directory ${dir} is being locked by another process`, { retryable: true });
    } finally {
      await rm(aside, { force: true });
    }
  }

  async release(): Promise<void> {
    await rm(this.path, { force: true });
  }
}

function inUse(dir: string, pid: number): BoomerangError {
  return new BoomerangError('DISK_IN_USE', `retention directory ${dir} is in use by process ${pid}`, { retryable: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

/** The pid of the live process holding the directory's lock, if any (this process included). */
export async function lockHolder(dir: string): Promise<number | undefined> {
  const text = await readFileIfPresent(join(dir, LOCK_FILE));
  if (text === undefined) return undefined;
  const pid = Number.parseInt(text, 10);
  return Number.isSafeInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined;
}
