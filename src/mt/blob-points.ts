import { join } from 'node:path';
import type { PageBlobClient } from '@azure/storage-blob';
import { PageBlobDisk } from '../fabrics/azure/page-blob-disk.js';
import { withRetry } from '../fabrics/azure/retry.js';
import { isNotFound, storageError } from '../fabrics/azure/storage-errors.js';
import type { DiskLocation } from '../replication/disk-location.js';
import type { DiskStore } from '../replication/disk-store.js';
import { BoomerangError, CorruptionError, errorMessage } from '../replication/errors.js';
import type { Logger } from '../runtime/log.js';
import type { RecoveryPoint } from './journal-index.js';
import { writeDurably } from './layout.js';
import { Mutex } from './mutex.js';
import { readFileIfPresent } from '../runtime/durable.js';

/**
 * Recovery points kept as blob snapshots of a page-blob replica (when the disk's option asks for
 * it): once a batch that ends at a bookmark is applied and the target flushed, the replica blob
 * is snapshotted, so the point can later be materialised by a server-side copy of the snapshot
 * instead of a copy of the target and a replay of the undo journal.
 *
 * The journal stays the source of truth for which points exist: a snapshot lives as long as at
 * least one point it names does (pruned with them, dropped by an in-place restore). The snapshots
 * taken are recorded in `<disk retention dir>/blob-points.json` after Azure acknowledged them; a
 * crash in between leaves a snapshot nobody lists, which goes with the blob when the disk is
 * released (the release deletes the blob with its snapshots). A recorded snapshot found missing
 * is forgotten and the journal used instead.
 *
 *   { "version": 1, "snapshots": [ { "snapshot": "<Azure snapshot time>", "pointIds": ["<lineage>/<seq>/<kind>"],
 *                                    "lineage": "…", "seq": 12, "time": 1700000000000, "takenAt": 1700000000100 } ] }
 */
export const BLOB_POINTS_FILE = 'blob-points.json';

/** Polling interval of the server-side copy of a snapshot. */
const COPY_POLL_MS = 250;

/** One snapshot of the replica blob and the recovery points (one state) it holds. */
export interface BlobPointSnapshot {
  /** Azure's snapshot id (a timestamp) of the replica blob. */
  snapshot: string;
  /** The points naming the state it holds (one per bookmark kind of the batch). */
  pointIds: string[];
  lineage: string;
  seq: number;
  /** The bookmark's time (source clock). */
  time: number;
  /** When the snapshot was taken (MT clock). */
  takenAt: number;
}

/** What changed in a disk's recovery points (see ReplicaDiskOptions.onPointsChanged). */
export interface PointsChange {
  /** Points naming the state the target was just flushed at; empty when points were only dropped. */
  added: RecoveryPoint[];
  /** Every point the journal holds now. */
  points: RecoveryPoint[];
}

export interface BlobPointsOptions {
  diskId: string;
  /** The disk's retention directory (where the record is kept). */
  dir: string;
  store: DiskStore;
  /** The replica's location; only a page blob can be snapshotted. */
  target: DiskLocation;
  /** Take snapshots of new points (existing ones are kept and pruned either way). */
  enabled: boolean;
  log: Logger;
  /** MT clock. @default Date.now */
  now?: () => number;
}

/** The blob snapshots of one replica disk's recovery points. */
export class BlobPoints {
  /** Snapshots taken, deleted and restored from, and operations that failed (the point is still in the journal). */
  readonly stats = { taken: 0, deleted: 0, restored: 0, failures: 0 };
  private readonly pins = new Map<string, number>();
  /** A restore (outside the replica's lock) may forget a snapshot while an apply records one. */
  private readonly saving = new Mutex();

  private constructor(
    private readonly o: BlobPointsOptions,
    /** The replica blob opened read-only (no lease): the client its snapshots are made through. */
    private readonly base: PageBlobDisk | undefined,
    private snapshots: BlobPointSnapshot[],
  ) {}

  /**
   * Reads the record and drops the snapshots of points `points` no longer holds (pruned while
   * the record was not current, or discarded). A file target has no snapshots: an enabled
   * option is reported and ignored.
   */
  static async open(o: BlobPointsOptions, points: readonly RecoveryPoint[]): Promise<BlobPoints> {
    const snapshots = await readRecord(o.dir);
    let base: PageBlobDisk | undefined;
    if (o.target.kind === 'blob') {
      const disk = await o.store.open(o.target, { readOnly: true });
      if (!(disk instanceof PageBlobDisk)) throw new BoomerangError('DISK_NOT_PAGE_BLOB', `replica ${o.target.text} of disk ${o.diskId} did not open as a page blob`);
      base = disk;
    } else if (o.enabled) {
      o.log.warn({ disk: o.diskId, target: o.target.text }, 'blob snapshots asked for a replica that is not a page blob: recovery points stay in the journal only');
    }
    const bp = new BlobPoints({ ...o }, base, snapshots);
    await bp.prune(points);
    return bp;
  }

  /** Whether new points of this disk get a snapshot. */
  get enabled(): boolean {
    return this.o.enabled && this.base !== undefined;
  }

  /** Turns taking snapshots of new points on or off (existing snapshots stay until their points go). */
  setEnabled(enabled: boolean): void {
    if (enabled !== this.o.enabled) this.o.log.info({ disk: this.o.diskId, blobSnapshots: enabled }, 'blob snapshots of recovery points switched');
    this.o.enabled = enabled;
  }

  /** The recorded snapshots, oldest first. */
  list(): BlobPointSnapshot[] {
    return this.snapshots.map((s) => ({ ...s, pointIds: [...s.pointIds] }));
  }

  /** The snapshot holding point `pointId`, if one was taken. */
  snapshotOf(pointId: string): string | undefined {
    return this.snapshots.find((s) => s.pointIds.includes(pointId))?.snapshot;
  }

  /**
   * Called with the replica's lock held, the target flushed at the state `added` names: takes
   * its snapshot, then deletes the snapshots whose points are all gone. Never throws — a failure
   * is logged and counted, the points stay restorable through the journal.
   */
  async changed(change: PointsChange): Promise<void> {
    try {
      const first = change.added[0];
      if (first && this.enabled && !this.snapshots.some((s) => s.lineage === first.lineage && s.seq === first.seq)) await this.take(first.lineage, first.seq, change.added);
    } catch (err) {
      this.stats.failures++;
      this.o.log.warn({ disk: this.o.diskId, points: change.added.map((p) => p.id), error: errorMessage(err) }, 'blob snapshot of a recovery point not taken: the point stays restorable through the journal');
    }
    try {
      await this.prune(change.points);
    } catch (err) {
      this.stats.failures++;
      this.o.log.warn({ disk: this.o.diskId, error: errorMessage(err) }, 'blob snapshots of dropped recovery points not deleted yet');
    }
  }

  /**
   * Materialises point `pointId` at `dest` (a new page blob of `size` bytes in the replica's
   * account) by a server-side copy of its snapshot. False when there is no usable snapshot for it
   * (none taken, another account, the snapshot gone): the caller replays the journal instead.
   */
  async restore(pointId: string, dest: DiskLocation, size: number): Promise<boolean> {
    const snap = this.snapshots.find((s) => s.pointIds.includes(pointId));
    if (!snap || !this.base || dest.kind !== 'blob' || this.o.target.kind !== 'blob' || dest.account !== this.o.target.account) return false;
    this.pins.set(snap.snapshot, (this.pins.get(snap.snapshot) ?? 0) + 1);
    try {
      await this.o.store.create(dest, size);
      const out = await this.o.store.open(dest, { readOnly: true });
      try {
        if (!(out instanceof PageBlobDisk)) throw new BoomerangError('DISK_NOT_PAGE_BLOB', `${dest.text} did not open as a page blob`);
        await copySnapshot(this.base.client.withSnapshot(snap.snapshot).url, out.client, `copy snapshot ${snap.snapshot} of ${this.o.target.text} to ${dest.text}`);
      } finally {
        await out.close();
      }
      this.stats.restored++;
      return true;
    } catch (err) {
      if (!isNotFound(err) && (err as BoomerangError).code !== 'DISK_NOT_FOUND') throw err;
      await this.o.store.remove(dest, { breakLease: true });
      this.o.log.warn({ disk: this.o.diskId, point: pointId, snapshot: snap.snapshot }, 'the snapshot of a recovery point is gone: restoring through the journal');
      await this.forget(snap);
      return false;
    } finally {
      const n = (this.pins.get(snap.snapshot) ?? 1) - 1;
      if (n > 0) this.pins.set(snap.snapshot, n);
      else this.pins.delete(snap.snapshot);
    }
  }

  /** Releases the read-only handle on the replica blob. */
  async close(): Promise<void> {
    await this.base?.close();
  }

  private async take(lineage: string, seq: number, points: readonly RecoveryPoint[]): Promise<void> {
    const base = this.base!;
    const first = points[0]!;
    const metadata = {
      boomerangdisk: this.o.diskId,
      boomerangpoints: points.map((p) => p.id).join(' '),
      boomeranglineage: lineage,
      boomerangseq: String(seq),
      boomerangtime: new Date(first.time).toISOString(),
    };
    let snapshot: string | undefined;
    try {
      snapshot = (await withRetry(() => base.client.createSnapshot({ metadata }))).snapshot;
    } catch (err) {
      throw storageError(err, `snapshot ${this.o.target.text}`);
    }
    if (!snapshot) throw new BoomerangError('AZURE_STORAGE', `the snapshot of ${this.o.target.text} came back without its id`);
    this.snapshots = [...this.snapshots, { snapshot, pointIds: points.map((p) => p.id), lineage, seq, time: first.time, takenAt: (this.o.now ?? Date.now)() }];
    await this.save();
    this.stats.taken++;
  }

  /** Deletes the snapshots (not pinned by a restore) none of whose points `points` holds. */
  private async prune(points: readonly RecoveryPoint[]): Promise<void> {
    if (this.snapshots.length === 0) return;
    const live = new Set(points.map((p) => p.id));
    for (const s of this.snapshots) {
      if (s.pointIds.some((id) => live.has(id)) || this.pins.has(s.snapshot)) continue;
      if (this.base) await deleteSnapshot(this.base.client.withSnapshot(s.snapshot) as PageBlobClient, `delete snapshot ${s.snapshot} of ${this.o.target.text}`);
      await this.forget(s);
      this.stats.deleted++;
    }
  }

  private async forget(s: BlobPointSnapshot): Promise<void> {
    this.snapshots = this.snapshots.filter((x) => x !== s);
    await this.save();
  }

  /** Writes the record as it is when the write starts (so the last write carries every change). */
  private save(): Promise<void> {
    return this.saving.run(() => writeDurably(this.o.dir, BLOB_POINTS_FILE, `${JSON.stringify({ version: 1, snapshots: this.snapshots })}\n`));
  }
}

/** A snapshot already gone counts as deleted. */
async function deleteSnapshot(client: PageBlobClient, what: string): Promise<void> {
  try {
    await withRetry(() => client.deleteIfExists());
  } catch (err) {
    if (!isNotFound(err)) throw storageError(err, what);
  }
}

/** Server-side copy of a snapshot over the blob `dest`, waiting until it is done. */
async function copySnapshot(sourceUrl: string, dest: PageBlobClient, what: string): Promise<void> {
  try {
    await withRetry(async () => {
      const poller = await dest.beginCopyFromURL(sourceUrl, { intervalInMs: COPY_POLL_MS });
      const result = await poller.pollUntilDone();
      if (result.copyStatus !== undefined && result.copyStatus !== 'success') throw new BoomerangError('DISK_COPY', `${what} ended ${result.copyStatus}`, { retryable: true });
    });
  } catch (err) {
    if (isNotFound(err)) throw err;
    throw storageError(err, what);
  }
}

function bad(path: string, why: string): CorruptionError {
  return new CorruptionError('RETENTION_FILE', `${path}: ${why}`);
}

/** The record of a disk's snapshots; a missing file is none. A file that does not validate is refused. */
async function readRecord(dir: string): Promise<BlobPointSnapshot[]> {
  const path = join(dir, BLOB_POINTS_FILE);
  const text = await readFileIfPresent(path);
  if (text === undefined) return [];
  let v: { version?: unknown; snapshots?: unknown };
  try {
    v = JSON.parse(text) as typeof v;
  } catch (err) {
    throw new CorruptionError('RETENTION_FILE', `${path} is not valid JSON`, { cause: err });
  }
  if (!v || typeof v !== 'object' || v.version !== 1 || !Array.isArray(v.snapshots)) throw bad(path, 'not a version 1 record of snapshots');
  return v.snapshots.map((x: unknown) => {
    const s = x as Partial<BlobPointSnapshot> | null;
    const ok =
      s &&
      typeof s.snapshot === 'string' &&
      s.snapshot.length > 0 &&
      Array.isArray(s.pointIds) &&
      s.pointIds.every((id) => typeof id === 'string') &&
      typeof s.lineage === 'string' &&
      Number.isSafeInteger(s.seq) &&
      Number.isFinite(s.time) &&
      Number.isFinite(s.takenAt);
    if (!ok) throw bad(path, `a snapshot entry is malformed: ${JSON.stringify(x).slice(0, 200)}`);
    return { snapshot: s.snapshot!, pointIds: [...s.pointIds!], lineage: s.lineage!, seq: s.seq!, time: s.time!, takenAt: s.takenAt! };
  });
}
