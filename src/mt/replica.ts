import { mkdir } from 'node:fs/promises';
import type { Batch } from '../replication/batch.js';
import type { BlockDevice } from '../replication/disk.js';
import { DiskStore } from '../replication/disk-store.js';
import { BoomerangError, ConfigError, RemoteError } from '../replication/errors.js';
import { isDiskId, type LineageId } from '../replication/position.js';
import type { PointsChange } from './blob-points.js';
import { isNoSpace, RetentionFullError } from './errors.js';
import { framedLength, RECORD_HEADER_BYTES } from './frame.js';
import type { JournalIndex, RecoveryPoint } from './journal-index.js';
import { journalDir, prepareRetentionDir, readFence, readIntent, removeFence, writeFence, writeIntent, type FenceRecord, type RestoreIntent } from './layout.js';
import { DiskLock } from './lock.js';
import { Mutex } from './mutex.js';
import { encodeCommit, encodeState, encodeUndo, type CommitRecord } from './records.js';
import { copyTarget, finishRestoreInPlace, rollBackCopy } from './restore.js';
import { scanJournal, type ScanTail } from './scan.js';
import { SegmentStore, type RecordRef } from './segments.js';
import { classifyBatch, consistentAfter, stateToRecord, type ApplyStatus } from './state.js';
import { coverage, readBeforeImages, rollBack, UNDO_PART_BYTES, undoBytesBound, writeExtents, type Range } from './undo.js';

export const DEFAULT_RETENTION_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;

/**
 * Fault-injection points for tests: the steps of an apply (undo, target, commit) and of an
 * in-place restore (rollback of the target, then cutting the journal).
 */
export type FaultStep = 'undo' | 'target' | 'commit' | 'rollback' | 'cut';

export interface ReplicaDiskOptions {
  diskId: string;
  /** The replica disk's location (a path or a page blob, see disk-location.ts); created sparse with `size` bytes when the journal is new. */
  targetPath: string;
  /** Opens the target and restore copies. @default local files only */
  store?: DiskStore;
  /** This disk's own directory on the retention volume. */
  retentionDir: string;
  size: number;
  /** Undo records older than this may be pruned. @default 24 h */
  retentionMs?: number;
  /** Most bytes the journal may take; the oldest segments are pruned to stay under it. @default unlimited */
  maxJournalBytes?: number;
  /** A new segment starts once the newest would grow past this. @default 64 MiB */
  segmentBytes?: number;
  /** Clock for record times and retention. @default Date.now */
  now?: () => number;
  /** Tests: called before each step; what it throws is handled as that step's I/O error. */
  faultHook?: (step: FaultStep) => void;
  /**
   * Called with the disk's lock held once its recovery points changed: after a batch that made
   * points (the target flushed at exactly their state, `added`), after pruning dropped points,
   * after an in-place restore. It must not throw (blob-points.ts keeps snapshots through it).
   */
  onPointsChanged?: (change: PointsChange) => Promise<void>;
}

export interface ApplyResult {
  status: ApplyStatus;
  /** The batch's own lineage and last sequence: what the sender may now forget. */
  lineage: LineageId;
  lastSeq: number;
}

export interface ReplicaPosition {
  lineage: LineageId;
  lastSeq: number;
  consistent: boolean;
  /** An in-place restore closed the lineage: only a new lineage can continue. */
  closed: boolean;
}

export interface ReplicaHealth {
  diskId: string;
  journalBytes: number;
  segments: number;
  points: number;
  oldestPointTime: number | undefined;
  newestPointTime: number | undefined;
  /** Apply is refused until the retention volume has room again. */
  paused: boolean;
  pausedReason: string | undefined;
  /** Bookmarks received while the replica was inconsistent (not recovery points). */
  ignoredBookmarks: number;
  position: ReplicaPosition | undefined;
}

export interface OpenReport {
  /** Undo records of an unfinished batch that were rolled back onto the target. */
  rolledBackRecords: number;
  /** Bytes of torn or unfinished records cut off the journal's tail. */
  truncatedBytes: number;
  /** An in-place restore interrupted by a crash was finished. */
  finishedRestoreInPlace: boolean;
}

type Settings = Required<Omit<ReplicaDiskOptions, 'faultHook' | 'onPointsChanged'>> & Pick<ReplicaDiskOptions, 'faultHook' | 'onPointsChanged'>;

function settings(o: ReplicaDiskOptions): Settings {
  if (!isDiskId(o.diskId)) throw new ConfigError('BAD_DISK_ID', `disk id ${JSON.stringify(o.diskId)} is not valid`);
  if (!Number.isSafeInteger(o.size) || o.size <= 0 || o.size % 512 !== 0) throw new ConfigError('BAD_DISK_SIZE', `disk size ${o.size} is not a positive multiple of 512`);
  const s: Settings = {
    ...o,
    retentionMs: o.retentionMs ?? DEFAULT_RETENTION_MS,
    maxJournalBytes: o.maxJournalBytes ?? Number.POSITIVE_INFINITY,
    segmentBytes: o.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
    now: o.now ?? Date.now,
    store: o.store ?? DiskStore.local(),
  };
  for (const k of ['retentionMs', 'maxJournalBytes', 'segmentBytes'] as const)
    if (!(s[k] > 0)) throw new ConfigError('BAD_RETENTION_OPTION', `${k} must be positive, got ${s[k]}`);
  return s;
}

/** Size of a commit record with `bookmarks` bookmarks. */
function commitBytes(bookmarks: number): number {
  return RECORD_HEADER_BYTES + 64 + 88 * bookmarks;
}

/**
 * One replica disk on the master target: the target disk kept at the newest applied batch, and a
 * journal of undo records on the retention volume from which any recovery point in the retention
 * window can be materialised.
 *
 * Apply is write-ahead: undo record durable, then the target written and flushed, then the commit
 * record durable, then the caller is answered. Operations are serialised; a restore to a new file
 * holds the lock only while it copies the target.
 */
export class ReplicaDisk {
  private readonly mutex = new Mutex();
  private readonly restores = new Set<Promise<void>>();
  private readonly pins = new Map<symbol, number>();
  private pausedReason: string | undefined;
  private failure: unknown;
  private closed = false;
  /** Pruning dropped points the onPointsChanged hook has not been told about. */
  private pointsDropped = false;
  /** Batches dropped by the fence (obsolete), for status and tests. */
  fencedBatches = 0;

  private constructor(
    private readonly o: Settings,
    private readonly target: BlockDevice,
    private readonly store: SegmentStore,
    private index: JournalIndex,
    private readonly lock: DiskLock,
    readonly openReport: OpenReport,
    private fenceRecord: FenceRecord | undefined,
  ) {}

  /**
   * Opens (or creates) the replica. Recovers from a crash: an unfinished batch is rolled back off
   * the target, a torn tail is cut off, an interrupted in-place restore is finished.
   */
  static async open(options: ReplicaDiskOptions): Promise<ReplicaDisk> {
    const o = settings(options);
    await mkdir(o.retentionDir, { recursive: true });
    const lock = await DiskLock.acquire(o.retentionDir);
    let store: SegmentStore | undefined;
    let target: BlockDevice | undefined;
    try {
      const location = o.store.locate(o.targetPath);
      await prepareRetentionDir(o.retentionDir, { diskId: o.diskId, targetPath: o.targetPath, size: o.size });
      store = await SegmentStore.open(journalDir(o.retentionDir), { readOnly: false });
      const fresh = store.list().length === 0;
      if (!fresh && !(await o.store.stat(location)))
        throw new BoomerangError('TARGET_MISSING', `target ${o.targetPath} is missing but its journal in ${o.retentionDir} is not new`);
      // The MT owns its targets: a page-blob lease a crashed MT left behind is taken over.
      target = await o.store.open(location, { size: o.size, create: true, takeOver: true });
      if (fresh) {
        await store.create(0, encodeState({ lineage: undefined, lastSeq: 0, time: o.now(), consistent: false, closed: false, bookmarks: [], retired: [] }));
      }
      const scanned = await scanJournal(store);
      let index = scanned.index;
      const { tail } = scanned;
      const report: OpenReport = { rolledBackRecords: tail.uncommitted.length, truncatedBytes: 0, finishedRestoreInPlace: false };
      report.truncatedBytes = await recoverTail(target, store, tail);
      const intent = await readIntent(o.retentionDir);
      if (intent) {
        await finishRestoreInPlace(o.retentionDir, target, store, index, intent, o.faultHook);
        ({ index } = await scanJournal(store));
        report.finishedRestoreInPlace = true;
      }
      let fence = await readFence(o.retentionDir);
      if (fence && (index.state.lineage === fence.lineage || index.state.retired.has(fence.lineage))) {
        // Its lineage started before the crash: the fence had done its work.
        await removeFence(o.retentionDir);
        fence = undefined;
      }
      return new ReplicaDisk(o, target, store, index, lock, report, fence);
    } catch (err) {
      await store?.close();
      await target?.close();
      await lock.release();
      throw err;
    }
  }

  get diskId(): string {
    return this.o.diskId;
  }

  /** Applies the next batch; answers duplicates and obsolete batches without changing anything. */
  apply(batch: Batch): Promise<ApplyResult> {
    return this.mutex.run(() => this.applyLocked(batch));
  }

  /**
   * The fence of a resync session (see the resync protocol's `open`): from now on a batch of any
   * lineage other than `lineage` that was sealed before `time` (the source's clock) is obsolete —
   * acknowledged as such and never applied, so the process server drops it. Those are batches of
   * older lineages still in a spool; applied after the compare found a range equal, they would
   * silently make the replica diverge. Durable before it resolves, and taken after any apply
   * under way. The fence ends once `lineage` has started here (every older batch was ahead of its
   * first one in the stream), or once a batch of another lineage sealed at or after `time`
   * arrives (a lineage the source began after the fence; the source keeps its batch clock at or
   * above `time` from then on).
   */
  fence(lineage: LineageId, time: number): Promise<void> {
    return this.mutex.run(async () => {
      this.usable();
      await writeFence(this.o.retentionDir, { lineage, time });
      this.fenceRecord = { lineage, time };
    });
  }

  /** The fence in force, if any. */
  get currentFence(): FenceRecord | undefined {
    return this.fenceRecord;
  }

  /** Whether `lineage` was superseded here: its batches can no longer be applied. */
  isRetired(lineage: LineageId): boolean {
    return this.index.state.retired.has(lineage);
  }

  /** Resolves once every operation called before it (an apply under way, say) has settled. */
  idle(): Promise<void> {
    return this.mutex.run(async () => undefined);
  }

  position(): ReplicaPosition | undefined {
    const s = this.index.state;
    return s.lineage === undefined ? undefined : { lineage: s.lineage, lastSeq: s.lastSeq, consistent: s.consistent, closed: s.closed };
  }

  /** Recovery points, oldest first. */
  recoveryPoints(): RecoveryPoint[] {
    return this.index.list();
  }

  /** Writes the disk as it was at `pointId` (or the newest state, 'latest') into the new disk at location `outPath`. */
  async restore(pointId: string, outPath: string): Promise<void> {
    const { job } = await this.mutex.run(async () => {
      this.usable();
      const refs = this.index.undoAfter(this.index.resolve(pointId));
      const unpin = this.pin(refs.at(-1)?.segment);
      try {
        await copyTarget(this.o.targetPath, outPath, this.o.store);
      } catch (err) {
        unpin();
        throw err;
      }
      const job = rollBackCopy(outPath, this.o.size, this.store, refs, this.o.store).finally(unpin);
      this.restores.add(job);
      const forget = () => this.restores.delete(job);
      job.then(forget, forget);
      return { job };
    });
    await job;
  }

  /**
   * Rolls the target itself back to `pointId` and discards the journal after it. The lineage is
   * closed: its later batches are obsolete, and the next data must come with a new lineage.
   */
  restoreInPlace(pointId: string): Promise<void> {
    return this.mutex.run(async () => {
      this.usable();
      await Promise.allSettled(this.restores);
      const after = this.index.resolve(pointId);
      const newest = this.store.newest();
      const pos = this.index.positionOf(after) ?? { segment: newest.index, offset: newest.size };
      const intent: RestoreIntent = { ...pos, state: this.index.closedStateAt(after, this.o.now()) };
      try {
        await writeIntent(this.o.retentionDir, intent);
      } catch (err) {
        throw this.failed(err);
      }
      try {
        await finishRestoreInPlace(this.o.retentionDir, this.target, this.store, this.index, intent, this.o.faultHook);
        ({ index: this.index } = await scanJournal(this.store));
      } catch (err) {
        this.failure = err; // the intent stays: reopening finishes the restore
        throw err;
      }
      this.pointsDropped = true;
      await this.pointsChanged([]);
    });
  }

  /** Prunes what the retention window and the size cap allow. */
  prune(): Promise<{ segmentsRemoved: number; bytesFreed: number }> {
    return this.mutex.run(async () => {
      this.usable();
      const pruned = await this.pruneSegments(0);
      await this.pointsChanged([]);
      return pruned;
    });
  }

  health(): ReplicaHealth {
    const points = this.index.list();
    let oldest: number | undefined;
    let newest: number | undefined;
    for (const p of points) {
      if (oldest === undefined || p.time < oldest) oldest = p.time;
      if (newest === undefined || p.time > newest) newest = p.time;
    }
    return {
      diskId: this.o.diskId,
      journalBytes: this.store.totalBytes(),
      segments: this.store.list().length,
      points: points.length,
      oldestPointTime: oldest,
      newestPointTime: newest,
      paused: this.pausedReason !== undefined,
      pausedReason: this.pausedReason,
      ignoredBookmarks: this.index.ignoredBookmarks,
      position: this.position(),
    };
  }

  /** Waits for running operations and restores, then releases the disk. */
  close(): Promise<void> {
    return this.mutex.run(async () => {
      if (this.closed) return;
      this.closed = true;
      await Promise.allSettled(this.restores);
      await this.store.close();
      await this.target.close();
      await this.lock.release();
    });
  }

  private usable(): void {
    if (this.closed) throw new BoomerangError('REPLICA_CLOSED', `replica disk ${this.o.diskId} is closed`);
    if (this.failure !== undefined)
      throw new BoomerangError('REPLICA_FAILED', `replica disk ${this.o.diskId} hit an I/O error and must be reopened`, { cause: this.failure });
  }

  /** Keeps segments from `segment` on while a restore reads them. */
  private pin(segment: number | undefined): () => void {
    if (segment === undefined) return () => undefined;
    const token = Symbol('pin');
    this.pins.set(token, segment);
    return () => this.pins.delete(token);
  }

  /**
   * Maps an I/O error: no space pauses apply (retryable RETENTION_FULL); anything else leaves the
   * state unknown, so the disk refuses work until it is reopened and recovered from the journal.
   */
  private failed(err: unknown): unknown {
    if (err instanceof RetentionFullError || isNoSpace(err)) {
      const full = err instanceof RetentionFullError ? err : new RetentionFullError(`retention volume for disk ${this.o.diskId} is full`, err);
      this.pausedReason = full.message;
      return full;
    }
    this.failure ??= err;
    return err;
  }

  private async applyLocked(batch: Batch): Promise<ApplyResult> {
    this.usable();
    const answer = (status: ApplyStatus): ApplyResult => ({ status, lineage: batch.lineage, lastSeq: batch.lastSeq });
    if (batch.diskId !== this.o.diskId) throw new RemoteError('WRONG_DISK', `batch for disk ${batch.diskId} sent to replica ${this.o.diskId}`);
    const fence = this.fenceRecord;
    if (fence && batch.lineage !== fence.lineage) {
      if (batch.lastTime < fence.time) {
        this.fencedBatches++;
        return answer('obsolete');
      }
      await this.endFence(); // a lineage begun after the fence
    }
    const status = classifyBatch(this.index.state, batch);
    if (status !== 'applied') return answer(status);
    for (const e of batch.extents) {
      if (e.offset + e.length > this.o.size)
        throw new RemoteError('EXTENT_OUT_OF_RANGE', `extent ${e.offset}+${e.length} lies beyond disk ${this.o.diskId} of ${this.o.size} bytes`);
    }

    const time = this.o.now();
    const { ranges, overlapping } = coverage(batch.extents);
    // Zero runs of the before-images: a zero extent over them needs no write (initial
    // replication of a sparse disk sends mostly such extents).
    const zeroBefore: Range[] = [];
    let ahead: Buffer[][] | undefined;
    try {
      // A batch that fits one undo record is read ahead, so the room it needs is exact (all-zero
      // before-images take none); a larger one is reserved for by an upper bound.
      if (ranges.reduce((n, [s, e]) => n + e - s, 0) <= UNDO_PART_BYTES) {
        ahead = [];
        for await (const rec of this.undoRecords(batch, ranges, time, zeroBefore)) ahead.push(rec);
      }
      const undoBytes = ahead ? ahead.reduce((n, rec) => n + framedLength(rec), 0) : undoBytesBound(ranges);
      await this.makeRoom(undoBytes + commitBytes(batch.bookmarks.length));
    } catch (err) {
      throw this.failed(err);
    }

    const { index: segment, size: tailStart } = this.store.newest();
    const undo: RecordRef[] = [];
    try {
      this.o.faultHook?.('undo');
      for await (const rec of ahead ?? this.undoRecords(batch, ranges, time, zeroBefore)) undo.push(await this.store.append(rec));
      if (undo.length > 0) await this.store.sync();
    } catch (err) {
      await this.resetTail(tailStart, []);
      throw this.failed(err);
    }

    const commit: CommitRecord = {
      lineage: batch.lineage,
      firstSeq: batch.firstSeq,
      lastSeq: batch.lastSeq,
      firstTime: batch.firstTime,
      lastTime: batch.lastTime,
      time,
      batchFlags: batch.flags,
      consistent: consistentAfter(this.index.state, batch),
      bookmarks: batch.bookmarks,
    };
    try {
      this.o.faultHook?.('target');
      await writeExtents(this.target, overlapping ? batch.extents : batch.extents.filter((e) => e.data || !within(zeroBefore, e.offset, e.offset + e.length)), overlapping);
      await this.target.flush();
      this.o.faultHook?.('commit');
      await this.store.append(encodeCommit(commit));
      await this.store.sync();
    } catch (err) {
      await this.resetTail(tailStart, undo);
      throw this.failed(err);
    }
    this.index.addCommit(segment, tailStart, undo, commit);
    this.pausedReason = undefined;
    if (fence && batch.lineage === fence.lineage) await this.endFence();
    const made = commit.consistent && commit.bookmarks.length > 0;
    await this.pointsChanged(made ? this.index.list().filter((p) => p.lineage === commit.lineage && p.seq === commit.lastSeq) : []);
    return answer('applied');
  }

  /** Tells the onPointsChanged hook about points just made (`added`) or dropped since it last heard. */
  private async pointsChanged(added: RecoveryPoint[]): Promise<void> {
    const hook = this.o.onPointsChanged;
    if (!hook || (added.length === 0 && !this.pointsDropped)) return;
    this.pointsDropped = false;
    await hook({ added, points: this.index.list() });
  }

  /** Drops the fence (its file first only if it is still ours; a crash before this is handled at open). */
  private async endFence(): Promise<void> {
    this.fenceRecord = undefined;
    try {
      await removeFence(this.o.retentionDir);
    } catch {
      // Harmless: at the next open the fence is dropped because its lineage has started, and a
      // stale one ends at the first batch sealed after it.
    }
  }

  /** The batch's undo records, each framed and ready to append. */
  private async *undoRecords(batch: Batch, ranges: readonly Range[], time: number, zeroBefore: Range[]): AsyncGenerator<Buffer[]> {
    for await (const part of readBeforeImages(this.target, ranges)) {
      for (const e of part.extents) if (e.zero) zeroBefore.push([e.offset, e.offset + e.length]);
      yield encodeUndo({ lineage: batch.lineage, firstSeq: batch.firstSeq, lastSeq: batch.lastSeq, time, extents: part.extents }, part.data);
    }
  }

  /** Undoes a failed apply: the target gets its before-images back and the journal its old end. */
  private async resetTail(tailStart: number, undo: RecordRef[]): Promise<void> {
    try {
      if (undo.length > 0) await rollBack(this.target, this.store, [...undo].reverse());
      await this.store.truncateNewest(tailStart);
      await this.store.sync();
    } catch (err) {
      this.failure ??= err;
    }
  }

  /**
   * Before a batch: prune what the window allows, start a new segment if the newest is full (or
   * is what stands over the cap), then prune to the cap. If even pruning everything it may could
   * not make room for `need` bytes, refuse with RETENTION_FULL before changing anything.
   */
  private async makeRoom(need: number): Promise<void> {
    await this.pruneSegments(0);
    const newest = this.store.newest();
    const cap = this.o.maxJournalBytes;
    const newestHasBatches = (this.index.segments.at(-1)?.firstOrdinal ?? this.index.end) < this.index.end;
    const roll = newestHasBatches && (newest.size + need > this.o.segmentBytes || this.store.totalBytes() + need > cap);
    const checkpoint = encodeState(stateToRecord(this.index.state));
    const total = this.store.totalBytes() + (roll ? framedLength(checkpoint) : 0);
    if (total + need > cap) {
      // Pruning removes the oldest segments, up to (not including) the newest and any a restore reads.
      const pinned = this.pinnedFrom();
      let freeable = 0;
      for (const f of roll ? this.store.list() : this.store.list().slice(0, -1)) {
        if (f.index >= pinned) break;
        freeable += f.size;
      }
      if (total - freeable + need > cap)
        throw new RetentionFullError(`journal of disk ${this.o.diskId} cannot fit ${need} more bytes under its cap of ${cap} bytes, even after pruning`);
    }
    if (roll) {
      await this.store.create(newest.index + 1, checkpoint);
      this.index.addSegment(newest.index + 1, stateToRecord(this.index.state));
    }
    await this.pruneSegments(need);
  }

  private pinnedFrom(): number {
    return Math.min(...this.pins.values());
  }

  /**
   * Removes oldest segments, never the newest nor one a restore reads: those whose newest undo
   * record is older than the retention window, then more while `reserve` bytes would exceed the cap.
   */
  private async pruneSegments(reserve: number): Promise<{ segmentsRemoved: number; bytesFreed: number }> {
    const cutoff = this.o.now() - this.o.retentionMs;
    const pinned = this.pinnedFrom();
    let segmentsRemoved = 0;
    let bytesFreed = 0;
    for (;;) {
      const oldest = this.index.segments[0];
      if (!oldest || this.index.segments.length < 2 || oldest.index >= pinned) break;
      if (oldest.lastTime >= cutoff && this.store.totalBytes() + reserve <= this.o.maxJournalBytes) break;
      const bytes = this.store.list()[0]?.size ?? 0;
      await this.store.remove(oldest.index);
      this.index.dropOldestSegment();
      this.pointsDropped = true;
      segmentsRemoved++;
      bytesFreed += bytes;
    }
    return { segmentsRemoved, bytesFreed };
  }
}

/** Rolls an unfinished batch back off the target and cuts the journal back to its last commit. */
async function recoverTail(target: BlockDevice, store: SegmentStore, tail: ScanTail): Promise<number> {
  if (tail.uncommitted.length > 0) await rollBack(target, store, [...tail.uncommitted].reverse());
  const cut = store.newest().size - tail.end;
  if (cut > 0) {
    await store.truncateNewest(tail.end);
    await store.sync();
  }
  return cut;
}

/** Whether [start, end) lies inside the union of `ranges` (sorted, as the before-images come). */
function within(ranges: readonly Range[], start: number, end: number): boolean {
  let at = start;
  for (const [s, e] of ranges) {
    if (s > at) break;
    if (e > at) at = e;
    if (at >= end) return true;
  }
  return at >= end;
}
