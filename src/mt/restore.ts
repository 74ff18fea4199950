import { copyFile, rm } from 'node:fs/promises';
import { constants } from 'node:fs';
import { FileDisk, type BlockDevice } from '../replication/disk.js';
import { BoomerangError } from '../replication/errors.js';
import type { JournalIndex } from './journal-index.js';
import { removeIntent, type RestoreIntent } from './layout.js';
import { encodeState } from './records.js';
import type { RecordRef, SegmentStore } from './segments.js';
import { rollBack } from './undo.js';

/**
 * Materialising a recovery point: into a new file (copy the target, then undo the batches after
 * the point on the copy), or in place on the target itself.
 */

/** Copies the target to a new file; a reflink where the filesystem can, a plain copy otherwise. */
export async function copyTarget(targetPath: string, outPath: string): Promise<void> {
  try {
    await copyFile(targetPath, outPath, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') await rm(outPath, { force: true });
    throw new BoomerangError('RESTORE_COPY', `cannot copy ${targetPath} to ${outPath}: ${(err as Error).message}`, { cause: err });
  }
}

/** Rolls a copy made by copyTarget back through `refs` (newest first); removes the copy if that fails. */
export async function rollBackCopy(outPath: string, size: number, store: SegmentStore, refs: readonly RecordRef[]): Promise<void> {
  try {
    const copy = await FileDisk.open(outPath, { size });
    try {
      await rollBack(copy, store, refs);
    } finally {
      await copy.close();
    }
  } catch (err) {
    await rm(outPath, { force: true });
    throw err;
  }
}

/**
 * Carries out (or, after a crash, finishes) an in-place restore whose intent is durable. Every
 * step can be repeated: undoing any contiguous run of batches that follows the point writes the
 * point's contents over the ranges they touched, whatever state the target is in between, and
 * segments are removed newest first so the remaining run stays contiguous.
 */
export async function finishRestoreInPlace(
  retentionDir: string,
  target: BlockDevice,
  store: SegmentStore,
  index: JournalIndex,
  intent: RestoreIntent,
  faultHook?: (step: 'rollback' | 'cut') => void,
): Promise<void> {
  faultHook?.('rollback');
  await rollBack(target, store, index.undoAfter(index.afterPosition(intent)));
  faultHook?.('cut');
  for (const seg of [...store.list()].reverse()) {
    if (seg.index > intent.segment) await store.remove(seg.index);
  }
  await store.truncateNewest(intent.offset);
  await store.append(encodeState(intent.state));
  await store.sync();
  await removeIntent(retentionDir);
}
