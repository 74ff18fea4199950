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

/**
 * - replicating: every write is captured; bookmarks are allowed once no region needs a resync.
 * - resyncing: a resync (or the protection of a disk) is under way; writes are captured.
 * - overflow: the buffer is full; writes only mark their regions "needs resync".
 * - passthrough: the disk is not protected; writes go straight to the backing disk, nothing is
 *   captured, no budget, no sequence numbers, no write-intent bits.
 */
export type CaptureMode = 'replicating' | 'resyncing' | 'overflow' | 'passthrough';

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

/** What a batch collects until it is sealed (the agent's capture, an agentless round). */
export interface BatchContent {
  firstSeq: number;
  firstTime: number;
  extents: Extent[];
  bookmarks: Bookmark[];
  dataBytes: number;
}

interface OpenBatch extends BatchContent {
  flags: number;
}

/** Encodes a batch of a disk's lineage into what the sender sends and the buffer budget holds until acknowledged. */
export function sealBatch(o: { diskId: string; lineage: LineageId; lastSeq: number; lastTime: number; flags: number }, b: BatchContent): SealedBatch {
  const { parts, length } = encodeBatchParts({ diskId: o.diskId, lineage: o.lineage, firstSeq: b.firstSeq, lastSeq: o.lastSeq, firstTime: b.firstTime, lastTime: o.lastTime, flags: o.flags, extents: b.extents, bookmarks: b.bookmarks });
  return {
    diskId: o.diskId,
    lineage: o.lineage,
    firstSeq: b.firstSeq,
    lastSeq: o.lastSeq,
    parts,
    length,
    held: b.dataBytes,
    ranges: b.extents.map((e) => [e.offset, e.length]),
    firstTime: b.firstTime,
    bookmarks: b.bookmarks,
  };
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
  /** protect() started the current lineage for the resync that follows: it continues it. */
  private resyncContinuesLineage = false;
  /** Bumped by protect() and unprotect(): a resync pass started before either must stop. */
  private epoch = 0;
  /** Aborted when the pass under way must stop (overflow, unprotect, protect). */
  private passAbort: AbortController | undefined;
  private readonly wallClock: () => number;
  /** Batch times never go below this (see fenceTime). */
  private floorTime = 0;
  /** lastTime of the newest sealed batch. */
  private lastSealTime = 0;
  /** Counters for status and benchmarks. */
  readonly stats = { writes: 0, bytesWritten: 0, resyncBytesRead: 0, resyncBytesSent: 0, overflows: 0, bookmarks: 0 };

  constructor(
    private readonly o: CaptureOptions,
    start: { lineage: LineageId; lastSeq: number },
    options: { passthrough?: boolean } = {},
  ) {
    this.name = o.diskId;
    this.size = o.backing.size;
    this.lineageId = start.lineage;
    this.nextSeq = start.lastSeq + 1;
    this.wallClock = o.now ?? Date.now;
    if (options.passthrough) this.modeValue = 'passthrough';
  }

  /** The batch clock: wall time, but never below a fence time handed out. */
  private now(): number {
    return Math.max(this.wallClock(), this.floorTime);
  }

  /**
   * A time for a resync session's fence (see ReplicaDisk.fence): later than every batch sealed so
   * far, and no batch sealed from now on is older. Call after the old lineage's last batch is sealed.
   */
  fenceTime(): number {
    const t = Math.max(this.wallClock(), this.lastSealTime + 1);
    this.floorTime = Math.max(this.floorTime, t);
    return t;
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
    // Passthrough writes take the range lock too: a resync read that follows protect() waits for
    // a write that started before the switch, so the read sees its bytes.
    const release = await this.lock.acquire(offset, length);
    try {
      if (this.modeValue === 'passthrough') {
        await this.writeThrough(offset, length, data, fua);
        return;
      }
      const cost = data ? data.length : 0;
      if (this.modeValue !== 'overflow' && !this.o.budget.fits(cost)) this.enterOverflow();
      if (this.modeValue === 'overflow') {
        await this.o.dirty.markNeedsResync(offset, length);
      } else {
        await this.o.dirty.retain(offset, length);
        if ((this.modeValue as CaptureMode) === 'passthrough') {
          // unprotect() switched while the bit was being made durable: not captured any more.
          this.o.dirty.release(offset, length);
        } else {
          this.o.budget.take(cost);
          this.addEvent({ offset, length, ...(data ? { data } : {}) }, cost);
        }
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

  private async writeThrough(offset: number, length: number, data: Buffer | undefined, fua: boolean): Promise<void> {
    if (data) await this.o.backing.write(offset, data);
    else await this.o.backing.writeZeroes(offset, length);
    if (fua) await this.o.backing.flush();
    this.stats.writes++;
    this.stats.bytesWritten += length;
  }

  /**
   * Leaves passthrough: from now on every write is captured, in a new lineage that starts
   * inconsistent (first batch flagged lineageStart). The caller marks every region as needing a
   * resync first; the resync that follows continues this lineage, so the lineage returned is the
   * one whose resyncDone batch brings the first recovery point (unless an overflow forces yet
   * another lineage). A no-op returning the current lineage when the disk is not in passthrough,
   * unless `restart`: then a protected disk also starts over in a new lineage (a resync pass under
   * way stops at its next region).
   */
  protect(lineage: LineageId = newLineage(), options: { restart?: boolean } = {}): LineageId {
    if (this.modeValue !== 'passthrough' && !options.restart) return this.lineageId;
    this.seal(); // what is open belongs to the old lineage
    this.epoch++;
    this.passAbort?.abort();
    this.lineageId = lineage;
    this.nextSeq = 1;
    this.o.dirty.newLineage();
    this.pendingFlags = BatchFlags.lineageStart;
    this.modeValue = 'resyncing';
    this.resyncContinuesLineage = true;
    return this.lineageId;
  }

  /**
   * Enters passthrough: nothing is captured any more. Seals what is open so it can still be sent;
   * a resync under way stops at its next region. Idempotent.
   */
  unprotect(): void {
    if (this.modeValue === 'passthrough') return;
    this.epoch++;
    this.passAbort?.abort();
    this.modeValue = 'passthrough';
    this.resyncContinuesLineage = false;
    this.seal();
  }

  /**
   * Takes a bookmark: the next sequence number marks "the disk after every event before it".
   * Refused while the replica cannot be consistent (resync or overflow pending), and on a disk
   * that is not protected.
   */
  bookmark(kind: BookmarkKind, id: string = randomUUID()): Bookmark {
    if (this.modeValue === 'passthrough') {
      throw new BoomerangError('NOT_PROTECTED', `disk ${this.name} is not protected (passthrough): nothing is replicated, so a bookmark would name no recovery point`);
    }
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
    const lastTime = Math.max(b.firstTime, this.now());
    this.lastSealTime = Math.max(this.lastSealTime, lastTime);
    this.o.onSealed(sealBatch({ diskId: this.name, lineage: this.lineageId, lastSeq, lastTime, flags: b.flags }, b));
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
    this.o.dirty.noteEvent(extent.offset, extent.length, this.nextSeq);
    this.nextSeq++;
    if (b.dataBytes >= this.o.maxBatchBytes || b.extents.length >= MAX_EXTENTS_PER_BATCH) this.seal();
  }

  private enterOverflow(): void {
    if (this.modeValue === 'overflow' || this.modeValue === 'passthrough') return;
    this.modeValue = 'overflow';
    this.passAbort?.abort();
    this.stats.overflows++;
    this.seal();
    this.o.onResyncNeeded(this.name);
  }

  /**
   * Starts a new lineage (or continues the one protect() just started) and copies every region
   * that needs a resync into it, region by region, while live writes continue. The range lock
   * orders each region's read against writes to it. All-zero regions travel as zero extents (no
   * payload). Resolves when the last resync event is sealed; the replica is consistent once that
   * batch is applied. 'aborted' after an overflow, an unprotect or a new protect().
   */
  async resync(options: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {}): Promise<'done' | 'aborted'> {
    const pass = this.beginResyncPass();
    if (!pass) return 'aborted';
    const regions = this.o.dirty.regionsNeedingResync();
    const total = this.regionBytesOf(regions);
    let done = 0;
    const copied = await this.copyRegions(regions, pass.epoch, {
      ...(options.signal ? { signal: options.signal } : {}),
      onRegion: (bytes) => options.onProgress?.((done += bytes), total),
    });
    if (copied === 'aborted' || !this.finishResyncPass(pass.epoch)) return 'aborted';
    return 'done';
  }

  /**
   * The start of a resync pass: seals what is open, starts a new lineage unless protect() just
   * started one for it, and enters 'resyncing'. Undefined when the disk is not protected. The
   * pass must stop once `mustStop(epoch)` (its `signal` aborts then too).
   */
  beginResyncPass(): { epoch: number; signal: AbortSignal } | undefined {
    if (this.modeValue === 'passthrough') return undefined;
    this.seal();
    if (!this.resyncContinuesLineage) {
      this.lineageId = newLineage();
      this.nextSeq = 1;
      this.pendingFlags = BatchFlags.lineageStart;
      this.o.dirty.newLineage();
    }
    this.resyncContinuesLineage = false;
    this.modeValue = 'resyncing';
    this.passAbort?.abort();
    this.passAbort = new AbortController();
    return { epoch: this.epoch, signal: this.passAbort.signal };
  }

  /** Bytes of these dirty-map regions (the last one may be short). */
  regionBytesOf(regions: readonly number[]): number {
    const R = this.o.dirty.regionBytes;
    let n = 0;
    for (const r of regions) n += Math.max(0, Math.min(R, this.size - r * R));
    return n;
  }

  /** Copies whole regions into the pass's lineage (see resync()); 'aborted' when the pass must stop. */
  async copyRegions(regions: readonly number[], epoch: number, options: { signal?: AbortSignal; onRegion?: (bytes: number) => void } = {}): Promise<'done' | 'aborted'> {
    const R = this.o.dirty.regionBytes;
    const lowWater = Math.floor(this.o.budget.limitBytes / 2);
    for (const r of regions) {
      if (options.signal?.aborted || this.mustStop(epoch)) return 'aborted';
      await this.o.budget.waitBelow(Math.max(0, lowWater - R));
      const offset = r * R;
      const length = Math.min(R, this.size - offset);
      const release = await this.lock.acquire(offset, length);
      try {
        if (this.mustStop(epoch)) return 'aborted';
        const data = await this.o.backing.read(offset, length);
        this.stats.resyncBytesRead += length;
        if (this.mustStop(epoch)) return 'aborted';
        this.o.dirty.startResync(r);
        this.addResyncRead(offset, data);
      } finally {
        release();
      }
      options.onRegion?.(length);
    }
    return 'done';
  }

  /**
   * A range a delta resync found different: under the range lock, the source is read again (a
   * write may have landed since the engine read it) and what is read joins the stream as the next
   * event — a zero extent when it is all zero. A write captured after it is ordered after it on
   * the replica, one captured before is in the bytes read. Rejects with RESYNC_ABORTED when the
   * pass must stop: the extent is then not in the stream.
   */
  async captureResyncExtent(offset: number, length: number, epoch: number): Promise<void> {
    const stopped = () => new BoomerangError('RESYNC_ABORTED', `the resync pass of disk ${this.name} was stopped (overflow, unprotect or a new protection)`, { retryable: true });
    const lowWater = Math.floor(this.o.budget.limitBytes / 2);
    await this.o.budget.waitBelow(Math.max(0, lowWater - length));
    const release = await this.lock.acquire(offset, length);
    try {
      if (this.mustStop(epoch)) throw stopped();
      const data = await this.o.backing.read(offset, length);
      this.stats.resyncBytesRead += length;
      await this.o.dirty.retain(offset, length);
      if (this.mustStop(epoch)) {
        this.o.dirty.release(offset, length);
        throw stopped();
      }
      this.addResyncRead(offset, data);
    } finally {
      release();
    }
  }

  /** Source bytes read for a resync join the stream: as a zero extent when they are all zero. */
  private addResyncRead(offset: number, data: Buffer): void {
    const length = data.length;
    if (isAllZero(data)) this.addEvent({ offset, length }, 0);
    else {
      this.o.budget.take(length);
      this.stats.resyncBytesSent += length;
      this.addEvent({ offset, length, data }, length);
    }
  }

  /**
   * Seals what is open and returns the newest position of the pass's lineage: everything the pass
   * put in the stream so far is at or before it. Undefined when the pass must stop.
   */
  sealPosition(epoch: number): { lineage: LineageId; lastSeq: number } | undefined {
    if (this.mustStop(epoch)) return undefined;
    this.seal();
    return { lineage: this.lineageId, lastSeq: this.lastSeq };
  }

  /**
   * Ends a pass: back to 'replicating', and the batch that completes the resync carries the
   * lineage's first recovery point. False (nothing done) when the pass must stop.
   */
  finishResyncPass(epoch: number): boolean {
    if (this.mustStop(epoch)) return false;
    this.modeValue = 'replicating';
    const b = this.ensureOpen();
    b.flags |= BatchFlags.resyncDone;
    b.bookmarks.push({ id: randomUUID(), kind: 'crash', time: this.now(), seq: this.nextSeq++ });
    this.stats.bookmarks++;
    this.seal();
    return true;
  }

  /**
   * The resync pass must stop: an overflow needs a new one, or the disk was unprotected (and
   * perhaps protected again: its passthrough writes are covered only by a pass that starts after).
   */
  mustStop(epoch: number): boolean {
    return this.modeValue === 'overflow' || this.modeValue === 'passthrough' || epoch !== this.epoch;
  }

  /** A resync pass under way stops (at its next region or extent; its waits are aborted). */
  stopPass(): void {
    this.epoch++;
    this.passAbort?.abort();
  }

  close(): void {
    if (this.sealTimer) clearTimeout(this.sealTimer);
    this.sealTimer = undefined;
  }
}
