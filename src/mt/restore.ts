import type { BlockDevice } from '../replication/disk.js';
import { DiskStore } from '../replication/disk-store.js';
import { BoomerangError, errorMessage } from '../replication/errors.js';
import type { JournalIndex } from './journal-index.js';
import { removeIntent, type RestoreIntent } from './layout.js';
import { encodeState } from './records.js';
import type { RecordRef, SegmentStore } from './segments.js';
import { rollBack } from './undo.js';

/**
 * Materialising a recovery point: into a new disk (copy the target, then undo the batches after
 * the point on the copy), or in place on the target itself. The target and the copy may be local
 * files or page blobs (see disk-store.ts).
 */

/**
 * Copies the target to a new disk: a reflink or plain copy between files, a server-side copy
 * between blobs. Both are disk locations (paths or page blobs) that `store` resolves.
 */
export async function copyTarget(targetPath: string, outPath: string, store: DiskStore = DiskStore.local()): Promise<void> {
  const target = store.locate(targetPath);
  const out = store.locate(outPath);
  try {
    await store.copy(target, out);
  } catch (err) {
    if ((err as BoomerangError).code !== 'DISK_EXISTS') await store.remove(out, { breakLease: true }).catch(() => undefined);
    throw new BoomerangError('RESTORE_COPY', `cannot copy ${target.text} to ${out.text}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Rolls a copy made by copyTarget back through `refs` (newest first); removes the copy if that fails. */
export async function rollBackCopy(outPath: string, size: number, segments: SegmentStore, refs: readonly RecordRef[], store: DiskStore = DiskStore.local()): Promise<void> {
  const out = store.locate(outPath);
  try {
    const copy = await store.open(out, { size });
    try {
      await rollBack(copy, segments, refs);
    } finally {
      await copy.close();
    }
  } catch (err) {
    await store.remove(out, { breakLease: true }).catch(() => undefined);
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
