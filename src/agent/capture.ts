import { randomUUID } from 'node:crypto';
import { BatchFlags, encodeBatchParts, type Bookmark, type BookmarkKind, type Extent } from '../replication/batch.js';
import type { BlockDevice } from '../replication/disk.js';
import { isAllZero } from '../replication/disk.js';
import { BoomerangError } from '../replication/errors.js';
import { newLineage, type LineageId } from '../replication/position.js';
import type { BufferBudget } from './budget.js';
import type { DirtyMap } from './dirty-map.js';
import { RangeLock } from './range-lock.js';

/** A batch ready to send: its encoding plus what to release when the PS acknowledges it. */
export interface SealedBatch {
  diskId: string;
  lineage: LineageId;
  firstSeq: number;
  lastSeq: number;
  /** The encoded batch as buffers to write in order (see encodeBatchParts). */
  parts: Buffer[];
  length: number;
  /** Budget bytes held until acknowledged. */
  held: number;
  /** Extents (offset, length) whose dirty-map regions are released on acknowledgement. */
  ranges: [number, number][];
  firstTime: number;
  bookmarks: Bookmark[];
}

export type CaptureMode = 'replicating' | 'resyncing' | 'overflow';

export interface CaptureOptions {
  diskId: string;
  backing: BlockDevice;
  dirty: DirtyMap;
  budget: BufferBudget;
  /** A batch is sealed once it holds this many data bytes… */
  maxBatchBytes: number;
  /** …or this long after its first event. */
  maxBatchDelayMs: number;
  /** Where sealed batches go (the sender). */
  onSealed(batch: SealedBatch): void;
  /** Told when the disk needs a resync (overflow) so the agent can schedule one. */
  onResyncNeeded(diskId: string): void;
  now?: () => number;
}

interface OpenBatch {
  firstSeq: number;
  firstTime: number;
  flags: number;
  extents: Extent[];
  bookmarks: Bookmark[];
  dataBytes: number;
}

const MAX_EXTENTS_PER_BATCH = 4096;

/**
 * Captures one disk: the export the NBD server serves. Every write passes through here, takes
 * its range, gets the next sequence number of the lineage, is added to the open batch and is
 * written through to the backing disk. Resync reads enter the same stream, so the replica sees
 * captured writes and resync data in one order.
 */
export class DiskCapture {
  readonly name: string;
  readonly size: number;
  private readonly lock = new RangeLock();
  private lineageId: LineageId;
  private nextSeq: number;
  private open: OpenBatch | undefined;
  private sealTimer: NodeJS.Timeout | undefined;
  private modeValue: CaptureMode = 'replicating';
  private pendingFlags = 0;
  private readonly now: () => number;
  /** Counters for status and benchmarks. */
  readonly stats = { writes: 0, bytesWritten: 0, resyncBytesRead: 0, resyncBytesSent: 0, overflows: 0, bookmarks: 0 };

  constructor(
    private readonly o: CaptureOptions,
    start: { lineage: LineageId; lastSeq: number },
  ) {
    this.name = o.diskId;
    this.size = o.backing.size;
    this.lineageId = start.lineage;
    this.nextSeq = start.lastSeq + 1;
    this.now = o.now ?? Date.now;
  }

  get lineage(): LineageId {
    return this.lineageId;
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  get mode(): CaptureMode {
    return this.modeValue;
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.o.backing.read(offset, length);
  }

  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return this.capture(offset, data.length, data, fua);
  }

  writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    return this.capture(offset, length, undefined, fua);
  }

  /** A trim reads back as zeroes here, so the replica is given zeroes too. */
  trim(offset: number, length: number): Promise<void> {
    return this.capture(offset, length, undefined, false);
  }

  flush(): Promise<void> {
    return this.o.backing.flush();
  }

  private async capture(offset: number, length: number, data: Buffer | undefined, fua: boolean): Promise<void> {
    const release = await this.lock.acquire(offset, length);
    try {
      const cost = data ? data.length : 0;
      if (this.modeValue !== 'overflow' && !this.o.budget.fits(cost)) this.enterOverflow();
      if (this.modeValue === 'overflow') {
        await this.o.dirty.markNeedsResync(offset, length);
      } else {
        await this.o.dirty.retain(offset, length);
        this.o.budget.take(cost);
        this.addEvent({ offset, length, ...(data ? { data } : {}) }, cost);
      }
      try {
        if (data) await this.o.backing.write(offset, data);
        else await this.o.backing.writeZeroes(offset, length);
        if (fua) await this.o.backing.flush();
      } catch (err) {
        // The event may already be on its way while the source kept its old bytes: only a
        // resync of the region can make the replica trustworthy again.
        await this.o.dirty.markNeedsResync(offset, length);
        this.enterOverflow();
        throw err;
      }
      this.stats.writes++;
      this.stats.bytesWritten += length;
    } finally {
      release();
    }
  }

  /**
   * Takes a bookmark: the next sequence number marks "the disk after every event before it".
   * Refused while the replica cannot be consistent (resync or overflow pending).
   */
  bookmark(kind: BookmarkKind, id: string = randomUUID()): Bookmark {
    if (this.modeValue !== 'replicating' || this.o.dirty.needsResync() > 0) {
      throw new BoomerangError('RESYNC_IN_PROGRESS', `disk ${this.name} is ${this.modeValue === 'replicating' ? 'waiting for a resync' : this.modeValue}; a bookmark now would not be a consistent recovery point`, { retryable: true });
    }
    const open = this.ensureOpen(); // before taking the seq: the batch starts at or before it
    const b: Bookmark = { id, kind, time: this.now(), seq: this.nextSeq++ };
    open.bookmarks.push(b);
    this.stats.bookmarks++;
    this.seal();
    return b;
  }

  /** Seals whatever is open (used at shutdown and by the delay timer). */
  seal(): void {
    if (this.sealTimer) {
      clearTimeout(this.sealTimer);
      this.sealTimer = undefined;
    }
    const b = this.open;
    if (!b) return;
    this.open = undefined;
    const lastSeq = this.nextSeq - 1;
    const { parts, length } = encodeBatchParts({
      diskId: this.name,
      lineage: this.lineageId,
      firstSeq: b.firstSeq,
      lastSeq,
      firstTime: b.firstTime,
      lastTime: Math.max(b.firstTime, this.now()),
      flags: b.flags,
      extents: b.extents,
      bookmarks: b.bookmarks,
    });
    this.o.onSealed({
      diskId: this.name,
      lineage: this.lineageId,
      firstSeq: b.firstSeq,
      lastSeq,
      parts,
      length,
      held: b.dataBytes,
      ranges: b.extents.map((e) => [e.offset, e.length]),
      firstTime: b.firstTime,
      bookmarks: b.bookmarks,
    });
  }

  private ensureOpen(): OpenBatch {
    if (!this.open) {
      const flags = this.pendingFlags | (this.modeValue === 'resyncing' ? BatchFlags.resync : 0);
      this.open = { firstSeq: this.nextSeq, firstTime: this.now(), flags, extents: [], bookmarks: [], dataBytes: 0 };
      this.pendingFlags = 0;
      this.sealTimer = setTimeout(() => this.seal(), this.o.maxBatchDelayMs);
    }
    return this.open;
  }

  private addEvent(extent: Extent, cost: number): void {
    const b = this.ensureOpen();
    b.extents.push(extent);
    b.dataBytes += cost;
    this.nextSeq++;
    if (b.dataBytes >= this.o.maxBatchBytes || b.extents.length >= MAX_EXTENTS_PER_BATCH) this.seal();
  }

  private enterOverflow(): void {
    if (this.modeValue === 'overflow') return;
    this.modeValue = 'overflow';
    this.stats.overflows++;
    this.seal();
    this.o.onResyncNeeded(this.name);
  }

  /**
   * Starts a new lineage and copies every region that needs a resync into it, region by region,
   * while live writes continue. The range lock orders each region's read against writes to it.
   * All-zero regions travel as zero extents (no payload). Resolves when the last resync event
   * is sealed; the replica is consistent once that batch is applied.
   */
  async resync(options: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {}): Promise<'done' | 'aborted'> {
    this.seal();
    this.lineageId = newLineage();
    this.nextSeq = 1;
    this.pendingFlags = BatchFlags.lineageStart;
    this.modeValue = 'resyncing';
    const regions = this.o.dirty.regionsNeedingResync();
    const R = this.o.dirty.regionBytes;
    const lowWater = Math.floor(this.o.budget.limitBytes / 2);
    let done = 0;
    for (const r of regions) {
      if (options.signal?.aborted || this.isOverflowing()) return 'aborted';
      await this.o.budget.waitBelow(Math.max(0, lowWater - R));
      const offset = r * R;
      const length = Math.min(R, this.size - offset);
      const release = await this.lock.acquire(offset, length);
      try {
        if (this.isOverflowing()) return 'aborted';
        const data = await this.o.backing.read(offset, length);
        this.stats.resyncBytesRead += length;
        this.o.dirty.startResync(r);
        if (isAllZero(data)) this.addEvent({ offset, length }, 0);
        else {
          this.o.budget.take(length);
          this.stats.resyncBytesSent += length;
          this.addEvent({ offset, length, data }, length);
        }
      } finally {
        release();
      }
      done++;
      options.onProgress?.(done, regions.length);
    }
    // The batch that completes the resync also carries the lineage's first recovery point.
    this.modeValue = 'replicating';
    const b = this.ensureOpen();
    b.flags |= BatchFlags.resyncDone;
    b.bookmarks.push({ id: randomUUID(), kind: 'crash', time: this.now(), seq: this.nextSeq++ });
    this.stats.bookmarks++;
    this.seal();
    return 'done';
  }

  private isOverflowing(): boolean {
    return this.modeValue === 'overflow';
  }

  close(): void {
    if (this.sealTimer) clearTimeout(this.sealTimer);
    this.sealTimer = undefined;
  }
}
