import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { decodeBatch, peekBatchHeader } from '../replication/batch.js';
import { BoomerangError, CorruptionError, errorMessage } from '../replication/errors.js';
import { formatHex16, isDiskId, parseHex16 } from '../replication/position.js';
import { syncDir } from '../runtime/durable.js';

/**
 * The process server's durable spool. A batch is acknowledged to its agent only once it is here
 * (fsynced); it leaves only after the master target acknowledged it. Per disk, batches are kept
 * and handed out in arrival order.
 *
 * Layout: `<dir>/<diskId>/<16-hex arrival counter>.batch`. The quarantine directory starts with
 * '_' so that it can never be mistaken for a disk (disk ids start with a letter or digit).
 */

export interface SpoolEntry {
  readonly diskId: string;
  readonly lineage: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly bytes: number;
  /** Per-disk arrival counter; also the file name. */
  readonly id: number;
}

export interface QuarantinedFile {
  /** Where the file was found. */
  readonly from: string;
  /** Where it is now. */
  readonly path: string;
  readonly reason: string;
}

export type SpoolState = 'ok' | 'nearly-full' | 'full';

export interface SpoolUsage {
  bytes: number;
  maxBytes: number;
  batches: number;
  ratio: number;
  state: SpoolState;
}

export interface SpoolOptions {
  dir: string;
  maxBytes: number;
  /** usage().state turns 'nearly-full' at this fraction of maxBytes (default 0.8). */
  nearlyFullRatio?: number;
}

export const QUARANTINE_DIR = '_quarantine';
const BATCH_SUFFIX = '.batch';
const TMP_SUFFIX = '.tmp';

interface DiskIndex {
  readonly entries: SpoolEntry[];
  /** `${lineage}/${lastSeq}` → pending entry, for idempotent resends. */
  readonly byPosition: Map<string, SpoolEntry>;
  nextId: number;
  /** Tail of the chain that serialises this disk's puts. */
  tail: Promise<void>;
  /** The disk directory's entry in the spool directory is known to be durable. */
  dirDurable: boolean;
  /** Puts called and not yet settled. */
  storing: number;
}

function positionKey(lineage: string, lastSeq: number): string {
  return `${lineage}/${lastSeq}`;
}


async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

export class Spool {
  private readonly disksById = new Map<string, DiskIndex>();
  private readonly listeners = new Set<(e: SpoolEntry) => void>();
  /** Called when a disk may have become empty (see whenEmpty). */
  private readonly emptyWaiters = new Map<string, Set<() => void>>();
  private readonly quarantinedFiles: QuarantinedFile[] = [];
  private committedBytes = 0;
  /** Bytes of puts in flight: counted against maxBytes so parallel puts cannot overshoot it. */
  private reservedBytes = 0;
  private batches = 0;
  /** A put was refused and no batch has been stored or removed since: the spool is effectively full. */
  private refusing = false;

  private constructor(
    readonly dir: string,
    readonly maxBytes: number,
    private readonly nearlyFullRatio: number,
  ) {}

  static async open(o: SpoolOptions): Promise<Spool> {
    if (!Number.isSafeInteger(o.maxBytes) || o.maxBytes <= 0) throw new BoomerangError('SPOOL_CONFIG', `maxBytes ${o.maxBytes} must be a positive integer`);
    const ratio = o.nearlyFullRatio ?? 0.8;
    if (!(ratio > 0 && ratio <= 1)) throw new BoomerangError('SPOOL_CONFIG', `nearlyFullRatio ${ratio} must be in (0, 1]`);
    await mkdir(o.dir, { recursive: true });
    const spool = new Spool(o.dir, o.maxBytes, ratio);
    await spool.load();
    return spool;
  }

  /** Rebuilds the index from the files: the files are the truth, the index is only a cache. */
  private async load(): Promise<void> {
    const names = (await readdir(this.dir, { withFileTypes: true })).filter((d) => d.isDirectory() && isDiskId(d.name)).map((d) => d.name);
    // A disk directory may have been created just before a crash, before its parent was synced.
    await syncDir(this.dir);
    for (const diskId of names.sort()) {
      const disk = this.disk(diskId);
      disk.dirDurable = true;
      const diskDir = join(this.dir, diskId);
      for (const name of (await readdir(diskDir)).sort()) {
        const path = join(diskDir, name);
        if (name.endsWith(TMP_SUFFIX)) {
          // A put that never reached its rename: it was not acknowledged, the agent resends it.
          await unlinkIfPresent(path);
          continue;
        }
        const id = name.endsWith(BATCH_SUFFIX) ? parseHex16(name.slice(0, -BATCH_SUFFIX.length)) : undefined;
        if (id === undefined) continue; // not ours: leave it alone
        // Names must keep sorting after every file seen, quarantined ones included.
        disk.nextId = Math.max(disk.nextId, id + 1);
        const data = await readFile(path);
        const problem = this.verify(data, diskId);
        if (problem !== undefined) {
          await this.moveToQuarantine(diskId, path, problem);
          continue;
        }
        const head = peekBatchHeader(data);
        this.index(disk, { diskId, lineage: head.lineage, firstSeq: head.firstSeq, lastSeq: head.lastSeq, bytes: data.length, id });
      }
    }
  }

  /** Returns why `data` may not be forwarded as a batch of `diskId`, or undefined if it may. */
  private verify(data: Buffer, diskId: string, entry?: SpoolEntry): string | undefined {
    try {
      const b = decodeBatch(data);
      if (b.diskId !== diskId) return `batch of disk ${b.diskId} found in the directory of disk ${diskId}`;
      if (entry && (b.lineage !== entry.lineage || b.firstSeq !== entry.firstSeq || b.lastSeq !== entry.lastSeq))
        return `file holds ${b.lineage}/${b.firstSeq}..${b.lastSeq}, index expected ${entry.lineage}/${entry.firstSeq}..${entry.lastSeq}`;
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  }

  private async moveToQuarantine(diskId: string, from: string, reason: string): Promise<void> {
    const qdir = join(this.dir, QUARANTINE_DIR);
    await mkdir(qdir, { recursive: true });
    // The timestamp keeps names unique when a disk's counter restarts after its spool drained.
    const name = `${diskId}.${Date.now()}.${basename(from)}`;
    const path = join(qdir, name);
    await rename(from, path);
    await syncDir(qdir);
    this.quarantinedFiles.push({ from, path, reason });
  }

  private disk(diskId: string): DiskIndex {
    let d = this.disksById.get(diskId);
    if (!d) {
      d = { entries: [], byPosition: new Map(), nextId: 0, tail: Promise.resolve(), dirDurable: false, storing: 0 };
      this.disksById.set(diskId, d);
    }
    return d;
  }

  private index(disk: DiskIndex, entry: SpoolEntry): void {
    disk.entries.push(entry);
    const key = positionKey(entry.lineage, entry.lastSeq);
    if (!disk.byPosition.has(key)) disk.byPosition.set(key, entry);
    this.committedBytes += entry.bytes;
    this.batches += 1;
  }

  private path(entry: Pick<SpoolEntry, 'diskId' | 'id'>): string {
    return join(this.dir, entry.diskId, formatHex16(entry.id) + BATCH_SUFFIX);
  }

  /**
   * Stores a batch (already verified by the caller) durably. Resolves once the batch is on stable
   * storage; a batch whose (disk, lineage, lastSeq) is already pending resolves to the existing
   * entry without a second copy. Puts of one disk take effect in call order. `batch` must not be
   * modified until the promise settles.
   */
  put(batch: Buffer): Promise<SpoolEntry> {
    let head: ReturnType<typeof peekBatchHeader>;
    try {
      head = peekBatchHeader(batch);
    } catch (err) {
      return Promise.reject(err);
    }
    if (head.totalLength !== batch.length)
      return Promise.reject(new BoomerangError('SPOOL_BAD_BATCH', `batch header says ${head.totalLength} bytes, got ${batch.length}`));
    if (batch.length > this.maxBytes)
      return Promise.reject(new BoomerangError('SPOOL_BATCH_TOO_LARGE', `batch of ${batch.length} bytes can never fit a spool of ${this.maxBytes} bytes`));
    const disk = this.disk(head.diskId);
    disk.storing++;
    // Chained synchronously, so the position in the chain is the order of the put calls.
    const result = disk.tail.then(() => this.store(disk, head, batch));
    disk.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result.finally(() => {
      disk.storing--;
      this.checkEmpty(head.diskId);
    });
  }

  private async store(disk: DiskIndex, head: ReturnType<typeof peekBatchHeader>, batch: Buffer): Promise<SpoolEntry> {
    const existing = disk.byPosition.get(positionKey(head.lineage, head.lastSeq));
    if (existing) return existing;
    if (this.committedBytes + this.reservedBytes + batch.length > this.maxBytes) {
      this.refusing = true;
      throw new BoomerangError(
        'SPOOL_FULL',
        `spool full: ${this.committedBytes + this.reservedBytes} of ${this.maxBytes} bytes used, batch needs ${batch.length}`,
        { retryable: true },
      );
    }
    this.reservedBytes += batch.length;
    const entry: SpoolEntry = { diskId: head.diskId, lineage: head.lineage, firstSeq: head.firstSeq, lastSeq: head.lastSeq, bytes: batch.length, id: disk.nextId++ };
    const final = this.path(entry);
    const tmp = final + TMP_SUFFIX;
    try {
      const diskDir = join(this.dir, entry.diskId);
      if (!disk.dirDurable) {
        await mkdir(diskDir, { recursive: true });
        await syncDir(this.dir);
        disk.dirDurable = true;
      }
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(batch);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, final);
      await syncDir(diskDir);
    } catch (err) {
      // Leave no file the index does not know about; the id is not reused either way.
      await Promise.allSettled([unlinkIfPresent(tmp), unlinkIfPresent(final)]);
      throw new BoomerangError('SPOOL_IO', `cannot store batch ${entry.lineage}/${entry.lastSeq} of disk ${entry.diskId}: ${errorMessage(err)}`, {
        retryable: true,
        cause: err,
      });
    } finally {
      this.reservedBytes -= batch.length;
    }
    this.index(disk, entry);
    this.refusing = false;
    for (const listener of this.listeners) {
      try {
        listener(entry);
      } catch (err) {
        // The batch is durable whatever a listener does; its bug must not fail the put.
        process.emitWarning(`spool onPut listener threw: ${errorMessage(err)}`);
      }
    }
    return entry;
  }

  /** Disks that have at least one pending batch. */
  disks(): string[] {
    return [...this.disksById].filter(([, d]) => d.entries.length > 0).map(([id]) => id);
  }

  /** A snapshot of the disk's pending batches in arrival order. */
  pending(diskId: string): readonly SpoolEntry[] {
    return this.disksById.get(diskId)?.entries.slice() ?? [];
  }

  /**
   * Reads a pending batch and verifies it. A batch that fails its checks is quarantined (never
   * forwarded) and reported with a CorruptionError.
   */
  async read(entry: SpoolEntry): Promise<Buffer> {
    const path = this.path(entry);
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (err) {
      throw new BoomerangError('SPOOL_IO', `cannot read spooled batch ${path}: ${errorMessage(err)}`, { cause: err });
    }
    const problem = this.verify(data, entry.diskId, entry);
    if (problem === undefined) return data;
    this.unindex(entry);
    await this.moveToQuarantine(entry.diskId, path, problem);
    throw new CorruptionError('SPOOL_CORRUPT', `spooled batch ${path} quarantined: ${problem}`);
  }

  /**
   * Deletes a batch the master target acknowledged. Not fsynced: if a crash undoes the delete,
   * the batch is forwarded again, which every hop accepts.
   */
  async remove(entry: SpoolEntry): Promise<void> {
    if (!this.isIndexed(entry)) return;
    try {
      await unlinkIfPresent(this.path(entry));
    } catch (err) {
      throw new BoomerangError('SPOOL_IO', `cannot delete spooled batch ${this.path(entry)}: ${errorMessage(err)}`, { retryable: true, cause: err });
    }
    this.unindex(entry);
  }

  private isIndexed(entry: SpoolEntry): boolean {
    return this.disksById.get(entry.diskId)?.entries.some((e) => e.id === entry.id) ?? false;
  }

  private unindex(entry: SpoolEntry): void {
    const disk = this.disksById.get(entry.diskId);
    const at = disk?.entries.findIndex((e) => e.id === entry.id) ?? -1;
    if (!disk || at < 0) return;
    const [gone] = disk.entries.splice(at, 1);
    if (!gone) return;
    const key = positionKey(gone.lineage, gone.lastSeq);
    if (disk.byPosition.get(key) === gone) disk.byPosition.delete(key);
    this.committedBytes -= gone.bytes;
    this.batches -= 1;
    this.refusing = false;
    this.checkEmpty(entry.diskId);
  }

  /** Whether the spool holds (or is storing) any batch of the disk. */
  holds(diskId: string): boolean {
    const d = this.disksById.get(diskId);
    return d !== undefined && (d.entries.length > 0 || d.storing > 0);
  }

  /** Pending batches and bytes of the disk. */
  diskUsage(diskId: string): { batches: number; bytes: number } {
    const entries = this.disksById.get(diskId)?.entries ?? [];
    return { batches: entries.length, bytes: entries.reduce((n, e) => n + e.bytes, 0) };
  }

  /**
   * Resolves true once the spool holds no batch of the disk (none pending, none being stored),
   * false after `timeoutMs`. Woken by every removal, not by polling.
   */
  whenEmpty(diskId: string, timeoutMs: number): Promise<boolean> {
    if (!this.holds(diskId)) return Promise.resolve(true);
    return new Promise((resolve) => {
      let waiters = this.emptyWaiters.get(diskId);
      if (!waiters) {
        waiters = new Set();
        this.emptyWaiters.set(diskId, waiters);
      }
      const set = waiters;
      const done = (v: boolean) => {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0 && this.emptyWaiters.get(diskId) === set) this.emptyWaiters.delete(diskId);
        resolve(v);
      };
      const wake = () => {
        if (!this.holds(diskId)) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      set.add(wake);
    });
  }

  private checkEmpty(diskId: string): void {
    const waiters = this.emptyWaiters.get(diskId);
    if (!waiters || this.holds(diskId)) return;
    for (const w of [...waiters]) w();
  }

  /**
   * Deletes every pending batch of the disk (their data is obsolete, e.g. after a failover) and
   * returns what was dropped. Runs after the disk's puts under way; later puts are stored as
   * usual. The deletions are made durable, so a crash cannot bring the batches back.
   */
  discard(diskId: string): Promise<{ batches: number; bytes: number; entries: SpoolEntry[] }> {
    const disk = this.disk(diskId);
    const result = disk.tail.then(async () => {
      const entries = disk.entries.slice();
      let bytes = 0;
      for (const e of entries) {
        try {
          await unlinkIfPresent(this.path(e));
        } catch (err) {
          throw new BoomerangError('SPOOL_IO', `cannot delete spooled batch ${this.path(e)}: ${errorMessage(err)}`, { retryable: true, cause: err });
        }
        bytes += e.bytes;
        this.unindex(e);
      }
      if (entries.length > 0) await syncDir(join(this.dir, diskId));
      return { batches: entries.length, bytes, entries };
    });
    disk.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  usage(): SpoolUsage {
    const bytes = this.committedBytes + this.reservedBytes;
    const ratio = bytes / this.maxBytes;
    const state: SpoolState = this.refusing || ratio >= 1 ? 'full' : ratio >= this.nearlyFullRatio ? 'nearly-full' : 'ok';
    return { bytes, maxBytes: this.maxBytes, batches: this.batches, ratio, state };
  }

  /** Files found corrupt or misplaced (on open or on read) and moved aside. */
  quarantined(): readonly QuarantinedFile[] {
    return this.quarantinedFiles.slice();
  }

  /** Calls `listener` after each new batch is durable and indexed; returns an unsubscribe. */
  onPut(listener: (e: SpoolEntry) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }
}
