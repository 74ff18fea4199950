import { BatchFlags, hasFlag, type Batch, type Bookmark } from '../replication/batch.js';
import { RemoteError } from '../replication/errors.js';
import type { LineageId } from '../replication/position.js';
import { SequenceGapError } from './errors.js';
import type { CommitRecord, StateRecord } from './records.js';

/**
 * The replica's position in its source's history and the rules that decide what a batch does to
 * it. Pure: the journal is where this state is made durable.
 */
export interface DiskState {
  lineage: LineageId | undefined;
  lastSeq: number;
  /** Every lineage starts inconsistent (mid-resync) and becomes consistent with `resyncDone`. */
  consistent: boolean;
  /** An in-place restore closed the lineage: its later batches are obsolete. */
  closed: boolean;
  /** Master-target time of the last change. */
  time: number;
  /** Bookmarks of the batch that produced this position. */
  bookmarks: Bookmark[];
  /** Lineages superseded by a later one. */
  retired: Set<LineageId>;
}

export type ApplyStatus = 'applied' | 'duplicate' | 'obsolete';

export function stateFromRecord(r: StateRecord): DiskState {
  return { ...r, bookmarks: [...r.bookmarks], retired: new Set(r.retired) };
}

export function stateToRecord(s: DiskState): StateRecord {
  return { ...s, retired: [...s.retired] };
}

/**
 * What applying `b` would do: 'applied' means it is the next batch and must be applied.
 * Throws SEQUENCE_GAP when it does not continue its lineage, LINEAGE_START_REQUIRED when a
 * lineage we have never seen does not start at its beginning.
 */
export function classifyBatch(s: DiskState, b: Pick<Batch, 'lineage' | 'firstSeq' | 'lastSeq' | 'flags'>): ApplyStatus {
  if (b.lineage === s.lineage) {
    if (b.lastSeq <= s.lastSeq) return 'duplicate';
    if (s.closed) return 'obsolete';
    if (b.firstSeq !== s.lastSeq + 1) throw new SequenceGapError(b.lineage, s.lastSeq + 1, b.firstSeq);
    return 'applied';
  }
  if (s.retired.has(b.lineage)) return 'obsolete';
  if (!hasFlag(b, BatchFlags.lineageStart) || b.firstSeq !== 1)
    throw new RemoteError(
      'LINEAGE_START_REQUIRED',
      `lineage ${b.lineage} is new here: its first batch must start at seq 1 with the lineageStart flag (got seq ${b.firstSeq}, flags ${b.flags})`,
    );
  return 'applied';
}

/** Whether the replica is consistent once `b` is applied. */
export function consistentAfter(s: DiskState, b: Pick<Batch, 'lineage' | 'flags'>): boolean {
  return hasFlag(b, BatchFlags.resyncDone) || (b.lineage === s.lineage && s.consistent);
}

/** The state after a committed batch (mutates `s.retired`, which the state owns). */
export function advance(s: DiskState, c: CommitRecord): DiskState {
  if (s.lineage !== undefined && s.lineage !== c.lineage) s.retired.add(s.lineage);
  return { lineage: c.lineage, lastSeq: c.lastSeq, consistent: c.consistent, closed: false, time: c.time, bookmarks: c.bookmarks, retired: s.retired };
}
