import type { Bookmark, BookmarkKind } from '../replication/batch.js';
import { BoomerangError } from '../replication/errors.js';
import type { LineageId } from '../replication/position.js';
import type { CommitRecord, StateRecord } from './records.js';
import type { RecordRef } from './segments.js';
import { advance, stateFromRecord, type DiskState } from './state.js';

/**
 * What the journal holds, in memory: segments, committed batches (with where their undo records
 * are) and recovery points. Built by scanning the journal on open and kept current as batches are
 * committed and segments pruned; the journal stays the single source of truth.
 *
 * Batches get ordinals (0, 1, 2… in journal order, renumbered at every scan). A position in the
 * history is named by `after`: the ordinal of the first batch *not* included, so restoring to it
 * means undoing every batch with ordinal ≥ after, newest first.
 */
export interface RecoveryPoint {
  /**
   * Stable across restarts: `<lineage>/<seq>/<kind>`. Bookmarks of one batch name one state, so
   * one point per kind is kept (the first bookmark's id and time).
   */
  id: string;
  kind: BookmarkKind;
  /** When the bookmark was taken (source clock, ms since the epoch). */
  time: number;
  lineage: LineageId;
  /** Last sequence number of the batch that carried the bookmark: the state restored. */
  seq: number;
  bookmarkId: string;
}

export interface SegmentEntry {
  index: number;
  /** Ordinal of the first batch committed in this segment. */
  firstOrdinal: number;
  /** Master-target time of the newest commit in it (or of its checkpoint). */
  lastTime: number;
}

interface BatchEntry {
  ordinal: number;
  segment: number;
  /** Offset of the batch's first record (undo, or its commit if it has no extents). */
  start: number;
  undo: RecordRef[];
  lineage: LineageId;
}

interface PointEntry {
  point: RecoveryPoint;
  after: number;
}

/** A point's position in the journal, or where the journal ends for the newest state. */
export interface JournalPosition {
  segment: number;
  offset: number;
}

export class JournalIndex {
  state: DiskState = { lineage: undefined, lastSeq: 0, consistent: false, closed: false, time: 0, bookmarks: [], retired: new Set() };
  readonly segments: SegmentEntry[] = [];
  ignoredBookmarks = 0;
  private nextOrdinal = 0;
  private readonly batches: BatchEntry[] = [];
  private readonly points: PointEntry[] = [];
  private readonly byId = new Map<string, PointEntry>();

  /** The ordinal the next committed batch will get: `after` of the newest state. */
  get end(): number {
    return this.nextOrdinal;
  }

  /** The segment starts with this checkpoint. The oldest segment's checkpoint also names a point. */
  addSegment(index: number, checkpoint: StateRecord): void {
    const oldest = this.segments.length === 0;
    this.segments.push({ index, firstOrdinal: this.nextOrdinal, lastTime: checkpoint.time });
    this.setState(checkpoint);
    if (oldest && checkpoint.consistent && checkpoint.lineage !== undefined)
      this.addPoints(checkpoint.lineage, checkpoint.lastSeq, checkpoint.bookmarks, this.nextOrdinal);
  }

  setState(r: StateRecord): void {
    this.state = stateFromRecord(r);
  }

  addCommit(segment: number, start: number, undo: RecordRef[], c: CommitRecord): void {
    const seg = this.segments.at(-1);
    if (seg?.index !== segment) throw new BoomerangError('JOURNAL_INDEX', `commit in segment ${segment} is not in the newest segment`);
    const ordinal = this.nextOrdinal++;
    this.batches.push({ ordinal, segment, start, undo, lineage: c.lineage });
    this.state = advance(this.state, c);
    seg.lastTime = c.time;
    if (c.consistent) this.addPoints(c.lineage, c.lastSeq, c.bookmarks, ordinal + 1);
    else this.ignoredBookmarks += c.bookmarks.length;
  }

  private addPoints(lineage: LineageId, seq: number, bookmarks: readonly Bookmark[], after: number): void {
    for (const b of bookmarks) {
      const id = `${lineage}/${seq}/${b.kind}`;
      if (this.byId.has(id)) continue;
      const entry: PointEntry = { point: { id, kind: b.kind, time: b.time, lineage, seq, bookmarkId: b.id }, after };
      this.points.push(entry);
      this.byId.set(id, entry);
    }
  }

  /** Forgets the oldest segment (its file was deleted) and the points that needed its undo records. */
  dropOldestSegment(): void {
    this.segments.shift();
    const base = this.segments[0]?.firstOrdinal ?? this.nextOrdinal;
    let n = 0;
    while (n < this.batches.length && (this.batches[n] as BatchEntry).ordinal < base) n++;
    this.batches.splice(0, n);
    let p = 0;
    while (p < this.points.length && (this.points[p] as PointEntry).after < base) this.byId.delete((this.points[p++] as PointEntry).point.id);
    this.points.splice(0, p);
  }

  list(): RecoveryPoint[] {
    return this.points.map((e) => ({ ...e.point }));
  }

  /** `after` of a point id, or of the newest state for 'latest'. */
  resolve(pointId: string): number {
    if (pointId === 'latest') return this.nextOrdinal;
    const e = this.byId.get(pointId);
    if (!e) throw new BoomerangError('RECOVERY_POINT_NOT_FOUND', `recovery point ${pointId} does not exist (pruned, discarded or never taken)`);
    return e.after;
  }

  private from(after: number): BatchEntry[] {
    const first = this.batches[0]?.ordinal ?? this.nextOrdinal;
    return this.batches.slice(Math.max(0, after - first));
  }

  /** Undo records that take the newest state back to `after`, newest first. */
  undoAfter(after: number): RecordRef[] {
    return this.from(after)
      .flatMap((b) => b.undo)
      .reverse();
  }

  /** `after` of a journal position: the first batch that starts at or after it. */
  afterPosition(pos: JournalPosition): number {
    const b = this.batches.find((x) => x.segment > pos.segment || (x.segment === pos.segment && x.start >= pos.offset));
    return b?.ordinal ?? this.nextOrdinal;
  }

  /** Where the journal must be cut to end at `after`; undefined when `after` is the newest state. */
  positionOf(after: number): JournalPosition | undefined {
    const b = this.from(after)[0];
    return b && { segment: b.segment, offset: b.start };
  }

  /**
   * The state an in-place restore to `after` leaves: the position of that point with its
   * lineage closed, and every other lineage seen (those of the discarded batches too) retired.
   */
  closedStateAt(after: number, time: number): StateRecord {
    const s = this.state;
    const here = this.points.filter((e) => e.after === after).map((e) => e.point);
    const point = here[0];
    const lineage = point?.lineage ?? s.lineage;
    const retired = new Set([...s.retired, ...this.from(after).map((b) => b.lineage)]);
    if (s.lineage !== undefined) retired.add(s.lineage);
    if (lineage !== undefined) retired.delete(lineage);
    return {
      lineage,
      lastSeq: point?.seq ?? s.lastSeq,
      time,
      consistent: point ? true : s.consistent,
      closed: true,
      bookmarks: point ? here.map((p) => ({ id: p.bookmarkId, kind: p.kind, time: p.time, seq: p.seq })) : s.bookmarks,
      retired: [...retired],
    };
  }
}
