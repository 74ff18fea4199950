import type { PageBlobClient } from '@azure/storage-blob';
import { BATCH_LIMITS, type Extent } from '../../replication/batch.js';
import { isAllZero, type BlockDevice } from '../../replication/disk.js';
import { BoomerangError } from '../../replication/errors.js';
import { MAX_PAGE_WRITE, PageBlobDisk } from './page-blob-disk.js';
import { planRound, splitRanges, totalLength, type PageRangeItem, type RoundPlan } from './page-ranges.js';
import { DEFAULT_RETRY, withRetry, type RetryPolicy } from './retry.js';
import { isNotFound, storageError } from './storage-errors.js';

/**
 * The agentless change source of a cloud disk (a page blob no agent sits in front of): each round
 * takes a blob snapshot, asks the service which pages changed since the previous round's snapshot
 * (Get Page Ranges Diff, with cleared ranges) and reads those pages from the new snapshot. Every
 * extent of a round comes from one snapshot, so a round applied whole is a crash-consistent point
 * of the disk.
 *
 * The previous snapshot is deleted only when the caller commits the round (its extents are
 * durable downstream); a round abandoned or lost to a crash leaves the base in place and the next
 * round diffs from it again. The caller persists `base` between runs.
 */

/** How a change source diffs and reads. */
export interface ChangeSourceOptions {
  /** Snapshot (its timestamp id) of the last committed round; none for a first, full round. */
  base?: string;
  /** Largest data extent read and emitted. Default 4 MiB. */
  maxReadBytes?: number;
  /** Largest zero extent emitted (a batch limit). Default BATCH_LIMITS.maxExtentLength. */
  maxZeroBytes?: number;
  /** Reads in flight. Default 8. */
  maxInFlight?: number;
  retry?: RetryPolicy;
  /**
   * The service's diff reports cleared ranges (Azure does). When false (the default, and what
   * Azurite needs: it ignores the previous snapshot and reports no clears), cleared pages are also
   * found by comparing the written ranges of both snapshots.
   */
  diffReportsClears?: boolean;
}

/** Rounds of changes of one page blob, each from a new snapshot diffed against the last committed one. */
export class PageBlobChangeSource {
  private baseSnapshot: string | undefined;
  private readonly retry: RetryPolicy;

  constructor(
    readonly client: PageBlobClient,
    private readonly options: ChangeSourceOptions = {},
  ) {
    this.baseSnapshot = options.base;
    this.retry = options.retry ?? DEFAULT_RETRY;
  }

  /** The snapshot the next round diffs from. */
  get base(): string | undefined {
    return this.baseSnapshot;
  }

  /** Takes a snapshot and plans the round's extents; nothing is read yet. */
  async nextRound(): Promise<ChangeRound> {
    const what = `page blob ${this.client.name}`;
    const snapshot = await this.call(`snapshot ${what}`, async () => {
      const res = await this.client.createSnapshot();
      if (res.snapshot === undefined) throw new BoomerangError('AZURE_STORAGE', 'the snapshot answer has no snapshot id');
      return res.snapshot;
    });
    try {
      const at = this.client.withSnapshot(snapshot);
      const size = await this.call(`size of ${what}`, async () => (await at.getProperties()).contentLength ?? 0);
      const base = this.baseSnapshot;
      let plan: RoundPlan;
      if (base === undefined) {
        plan = planRound({ size, diff: await this.list(() => at.listPageRanges(), what), full: true });
      } else {
        const diff = await this.list(() => at.listPageRangesDiff(0, size, base), what);
        plan = this.options.diffReportsClears
          ? planRound({ size, diff })
          : planRound({
              size,
              diff,
              previousWritten: await this.list(() => this.client.withSnapshot(base).listPageRanges(), what),
              currentWritten: await this.list(() => at.listPageRanges(), what),
            });
      }
      return new ChangeRound(this, snapshot, size, base === undefined, plan);
    } catch (err) {
      await this.deleteSnapshot(snapshot);
      throw err;
    }
  }

  /** Options a round reads with. */
  get readOptions(): { maxReadBytes: number; maxZeroBytes: number; maxInFlight: number; retry: RetryPolicy } {
    return {
      maxReadBytes: this.options.maxReadBytes ?? MAX_PAGE_WRITE,
      maxZeroBytes: this.options.maxZeroBytes ?? BATCH_LIMITS.maxExtentLength,
      maxInFlight: this.options.maxInFlight ?? 8,
      retry: this.retry,
    };
  }

  /** Makes `snapshot` the base and deletes the previous one (called by ChangeRound.commit). */
  async advance(snapshot: string): Promise<void> {
    const previous = this.baseSnapshot;
    this.baseSnapshot = snapshot;
    if (previous !== undefined) await this.deleteSnapshot(previous);
  }

  /** Deletes one snapshot; one already gone is fine. */
  async deleteSnapshot(snapshot: string): Promise<void> {
    try {
      await withRetry(() => this.client.withSnapshot(snapshot).delete(), this.retry);
    } catch (err) {
      if (!isNotFound(err)) throw storageError(err, `delete snapshot ${snapshot} of page blob ${this.client.name}`);
    }
  }

  private async list(pages: () => AsyncIterable<PageRangeItem>, what: string): Promise<PageRangeItem[]> {
    // The whole listing is retried: a continuation cannot be resumed after some failures.
    return this.call(`list page ranges of ${what}`, async () => {
      const out: PageRangeItem[] = [];
      for await (const r of pages()) out.push({ start: r.start, end: r.end, isClear: r.isClear });
      return out;
    });
  }

  private async call<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await withRetry(op, this.retry);
    } catch (err) {
      throw storageError(err, what);
    }
  }
}

/** One round: a snapshot and the extents that bring a replica of the base up to it. */
export class ChangeRound {
  private finished = false;

  constructor(
    private readonly source: PageBlobChangeSource,
    /** The snapshot every extent is read from. */
    readonly snapshot: string,
    /** Disk size at the snapshot. */
    readonly size: number,
    /** No base: the extents describe the whole disk (zero extents for every unwritten page). */
    readonly full: boolean,
    readonly plan: RoundPlan,
  ) {}

  /** Bytes to read and send. */
  get dataBytes(): number {
    return totalLength(this.plan.data);
  }

  /** Bytes sent as zero extents. */
  get zeroBytes(): number {
    return totalLength(this.plan.zero);
  }

  /**
   * The round's extents in offset order within each kind: zero extents (no data) first, then data
   * read from the snapshot with up to `maxInFlight` reads ahead. Data pages that read as all zero
   * are emitted as zero extents.
   */
  async *extents(): AsyncGenerator<Extent> {
    const o = this.source.readOptions;
    for (const r of splitRanges(this.plan.zero, o.maxZeroBytes)) yield { offset: r.offset, length: r.length };
    const disk = await PageBlobDisk.open(this.source.client.withSnapshot(this.snapshot), { readOnly: true, maxInFlight: o.maxInFlight, retry: o.retry });
    const window: Promise<Extent>[] = [];
    try {
      const pieces = splitRanges(this.plan.data, o.maxReadBytes);
      const readNext = (): boolean => {
        const next = pieces.next();
        if (next.done) return false;
        const { offset, length } = next.value;
        const read = disk.read(offset, length).then((data): Extent => (isAllZero(data) ? { offset, length } : { offset, length, data }));
        read.catch(() => undefined); // observed when its turn comes; a consumer that stops early must not leave it unhandled
        window.push(read);
        return true;
      };
      while (window.length < o.maxInFlight && readNext());
      while (window.length > 0) {
        const extent = await window.shift()!;
        readNext();
        yield extent;
      }
    } finally {
      await Promise.allSettled(window);
      await disk.close();
    }
  }

  /** The round's extents are durable downstream: the snapshot becomes the base of the next round. */
  async commit(): Promise<void> {
    this.finish();
    await this.source.advance(this.snapshot);
  }

  /** The round was not delivered: its snapshot is deleted and the base stays. */
  async abandon(): Promise<void> {
    this.finish();
    await this.source.deleteSnapshot(this.snapshot);
  }

  private finish(): void {
    if (this.finished) throw new BoomerangError('ROUND_FINISHED', `the round of snapshot ${this.snapshot} is already committed or abandoned`);
    this.finished = true;
  }
}

/**
 * Applies a round to a replica disk (zero extents as writeZeroes) and flushes; the caller then
 * commits the round. The replica must have the round's size.
 */
export async function applyRound(round: ChangeRound, replica: BlockDevice): Promise<{ dataBytes: number; zeroBytes: number }> {
  if (replica.size !== round.size) throw new BoomerangError('DISK_SIZE', `the replica has ${replica.size} bytes, the snapshot ${round.size}`);
  let dataBytes = 0;
  let zeroBytes = 0;
  for await (const e of round.extents()) {
    if (e.data) {
      await replica.write(e.offset, e.data);
      dataBytes += e.length;
    } else {
      await replica.writeZeroes(e.offset, e.length);
      zeroBytes += e.length;
    }
  }
  await replica.flush();
  return { dataBytes, zeroBytes };
}
