import { BoomerangError } from '../replication/errors.js';
import type { JournalIndex, RecoveryPoint } from './journal-index.js';
import { journalDir, readIntent, readMeta, type DiskMeta } from './layout.js';
import { DiskLock, lockHolder } from './lock.js';
import type { ReplicaPosition } from './replica.js';
import { copyTarget, rollBackCopy } from './restore.js';
import { scanJournal, type ScanTail } from './scan.js';
import { SegmentStore, type RecordRef } from './segments.js';

/**
 * Recovery points of a retention directory without a running master target (it crashed, or its
 * machine is being recovered). Nothing is written: the journal is read as it is; an unfinished
 * batch is undone on the restored copy, not on the target, and a torn tail is only reported.
 */
export interface RetentionReport {
  disk: DiskMeta;
  /** Pid of the live process using the directory, if any (its answers may change meanwhile). */
  inUseBy: number | undefined;
  position: ReplicaPosition | undefined;
  points: RecoveryPoint[];
  /** Bytes at the journal's end that are not committed records (a torn write). */
  tornBytes: number;
  /** Undo records of a batch that was being applied: the target may hold part of it. */
  unfinishedUndoRecords: number;
  /** An in-place restore was interrupted: the target is partly rolled back; later points are gone. */
  restoreInPlacePending: boolean;
}

interface OfflineView {
  report: RetentionReport;
  store: SegmentStore;
  index: JournalIndex;
  tail: ScanTail;
  /** `after` of the newest state the target can be brought to. */
  latest: number;
}

async function load(retentionDir: string): Promise<OfflineView> {
  const disk = await readMeta(retentionDir);
  if (!disk) throw new BoomerangError('NOT_A_RETENTION_DIR', `${retentionDir} holds no disk.json: not a disk's retention directory`);
  const inUseBy = await lockHolder(retentionDir);
  const store = await SegmentStore.open(journalDir(retentionDir), { readOnly: true });
  try {
    const { index, tail } = await scanJournal(store);
    const intent = await readIntent(retentionDir);
    // An interrupted in-place restore already discarded everything after its point.
    const latest = intent ? index.afterPosition(intent) : index.end;
    const s = intent ? intent.state : index.state;
    const points = index.list().filter((p) => index.resolve(p.id) <= latest);
    return {
      report: {
        disk,
        inUseBy,
        position: s.lineage === undefined ? undefined : { lineage: s.lineage, lastSeq: s.lastSeq, consistent: s.consistent, closed: s.closed },
        points,
        tornBytes: tail.tornBytes,
        unfinishedUndoRecords: tail.uncommitted.length,
        restoreInPlacePending: intent !== undefined,
      },
      store,
      index,
      tail,
      latest,
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

export async function inspectRetention(retentionDir: string): Promise<RetentionReport> {
  const view = await load(retentionDir);
  await view.store.close();
  return view.report;
}

/** Recovery points of a retention directory, oldest first. */
export async function listRecoveryPointsOffline(retentionDir: string): Promise<RecoveryPoint[]> {
  return (await inspectRetention(retentionDir)).points;
}

/**
 * Writes the disk at `pointId` (or 'latest') into the new file `outPath`. Refused while a live
 * process holds the directory; the lock is held meanwhile so a master target cannot start and
 * change the journal underneath.
 */
export async function restoreOffline(retentionDir: string, pointId: string, outPath: string, options: { targetPath?: string } = {}): Promise<void> {
  const lock = await DiskLock.acquire(retentionDir);
  try {
    const view = await load(retentionDir);
    try {
      const after = pointId === 'latest' ? view.latest : view.index.resolve(pointId);
      if (after > view.latest) throw new BoomerangError('RECOVERY_POINT_NOT_FOUND', `recovery point ${pointId} was discarded by an in-place restore`);
      // The unfinished batch (if intact) is undone first: it is the newest change on the target.
      const refs: RecordRef[] = [...[...view.tail.uncommitted].reverse(), ...view.index.undoAfter(after)];
      await copyTarget(options.targetPath ?? view.report.disk.targetPath, outPath);
      await rollBackCopy(outPath, view.report.disk.size, view.store, refs);
    } finally {
      await view.store.close();
    }
  } finally {
    await lock.release();
  }
}
