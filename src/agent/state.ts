import { readFile, writeFile, rename, open } from 'node:fs/promises';
import { isLineage, type LineageId } from '../replication/position.js';

/**
 * What the agent remembers of a disk between runs. `clean` is true only after a shutdown that
 * drained every event to the process server: only then may the next run continue the lineage.
 */
export interface DiskState {
  lineage: LineageId;
  lastSeq: number;
  clean: boolean;
}

export async function readDiskState(path: string): Promise<DiskState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const v = JSON.parse(text) as Partial<DiskState>;
    if (typeof v.lineage === 'string' && isLineage(v.lineage) && Number.isSafeInteger(v.lastSeq) && typeof v.clean === 'boolean') {
      return { lineage: v.lineage, lastSeq: v.lastSeq!, clean: v.clean };
    }
  } catch {
    // fall through: an unreadable state proves nothing, so it is treated as a dirty one
  }
  return undefined;
}

/** tmp, fsync, rename: the state file is either the old or the new one, never torn. */
export async function writeDiskState(path: string, state: DiskState): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, JSON.stringify(state), { mode: 0o600 });
  const fh = await open(tmp, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}
