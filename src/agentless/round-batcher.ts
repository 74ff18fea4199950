import { BatchFlags, type Extent } from '../replication/batch.js';
import type { LineageId } from '../replication/position.js';
import { sealBatch, type BatchContent, type SealedBatch } from '../agent/capture.js';

/** Extents per batch, as the agent's capture seals them. */
const MAX_EXTENTS_PER_BATCH = 4096;

/** Where a round's events go in the disk's lineage and how they are cut into batches. */
export interface RoundBatcherOptions {
  diskId: string;
  lineage: LineageId;
  /** Sequence number of the round's first event. */
  firstSeq: number;
  /** The round is part of a resync (the lineage has not reached resyncDone): every batch is flagged `resync`. */
  resync: boolean;
  /** A batch is sealed at this many data bytes. */
  maxBatchBytes: number;
  now?: () => number;
}


/**
 * Cuts one round's extents into batches of the disk's lineage, numbered as the agent's capture
 * numbers writes (one sequence number per extent, one for the bookmark that ends the round), in
 * the same sealed form the agent's sender takes. The first batch of a new lineage (seq 1) has
 * `lineageStart`; the last batch of the round carries the round's crash-consistent bookmark and,
 * on a resync round, `resyncDone`.
 */
export class RoundBatcher {
  private nextSeq: number;
  private open: BatchContent | undefined;
  private floorTime = 0;
  private readonly clock: () => number;

  constructor(private readonly o: RoundBatcherOptions) {
    this.nextSeq = o.firstSeq;
    this.clock = o.now ?? Date.now;
  }

  /** Sequence number of the last event added. */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** Adds the next extent; returns a batch when this one filled it. */
  add(extent: Extent): SealedBatch | undefined {
    const b = this.ensureOpen();
    b.extents.push(extent);
    if (extent.data) b.dataBytes += extent.length;
    this.nextSeq++;
    return b.dataBytes >= this.o.maxBatchBytes || b.extents.length >= MAX_EXTENTS_PER_BATCH ? this.seal(0) : undefined;
  }

  /** Ends the round: the bookmark is its last event, in the last batch. */
  finish(bookmark: { id: string; time: number }): SealedBatch {
    const b = this.ensureOpen();
    b.bookmarks.push({ id: bookmark.id, kind: 'crash', time: bookmark.time, seq: this.nextSeq++ });
    return this.seal(this.o.resync ? BatchFlags.resyncDone : 0);
  }

  private now(): number {
    this.floorTime = Math.max(this.floorTime, this.clock());
    return this.floorTime;
  }

  private ensureOpen(): BatchContent {
    this.open ??= { firstSeq: this.nextSeq, firstTime: this.now(), extents: [], bookmarks: [], dataBytes: 0 };
    return this.open;
  }

  private seal(extraFlags: number): SealedBatch {
    const b = this.open!;
    this.open = undefined;
    const lastSeq = this.nextSeq - 1;
    const flags = (b.firstSeq === 1 ? BatchFlags.lineageStart : 0) | (this.o.resync ? BatchFlags.resync : 0) | extraFlags;
    const lastTime = this.now();
    return sealBatch({ diskId: this.o.diskId, lineage: this.o.lineage, lastSeq, lastTime, flags }, b);
  }
}
