import { open, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { BoomerangError } from '../replication/errors.js';

/**
 * The agent's write-intent map: one bit per region of a disk, persisted in a small file. A
 * region's bit is set (and made durable) before a write to it is acknowledged to the workload,
 * and cleared (lazily) once every event for that region has been acknowledged by the process
 * server. After a crash the set bits bound the resync: only those regions can differ.
 *
 * The same map holds the regions that *need* a resync (writes not buffered during an overflow,
 * or found dirty at start-up); those stay set until a resync read of them is acknowledged.
 *
 * While a delta resync is pending (`holdUntilApplied`), acknowledged by the PS is not enough: a
 * bit clears only once the master target has applied every event of its region in the current
 * lineage (`applied`). A resync session's fence makes the MT drop the batches of earlier
 * lineages still in the PS spool, so after a crash or an overflow mid-resync the set bits must
 * name every region whose events the replica may never get.
 */
export class DirtyMap {
  private readonly unacked: Uint32Array;
  private readonly needs: Uint8Array;
  private readonly persisted: Uint8Array;
  /** Per region: the highest sequence number of an event of the current lineage (0: none). */
  private readonly eventSeq: Float64Array;
  /** The master target has applied the current lineage up to this sequence number. */
  private appliedSeq = 0;
  private hold = false;
  private needsCount = 0;
  private persistChain: Promise<void> = Promise.resolve();
  private lazyClears = 0;

  private constructor(
    private readonly fh: FileHandle,
    readonly regionBytes: number,
    readonly regions: number,
    initial: Uint8Array,
  ) {
    this.unacked = new Uint32Array(regions);
    this.needs = new Uint8Array(regions);
    this.eventSeq = new Float64Array(regions);
    this.persisted = new Uint8Array(Math.ceil(regions / 8));
    this.persisted.set(initial.subarray(0, this.persisted.length));
  }

  /**
   * Opens (or creates) the map file. Returns the map and whether it existed: a missing file on a
   * disk with history means nothing can be assumed and the whole disk must be resynced.
   */
  static async open(path: string, diskSize: number, regionBytes: number): Promise<{ map: DirtyMap; existed: boolean }> {
    if (regionBytes <= 0 || regionBytes % 512 !== 0) throw new BoomerangError('CONFIG', `region size ${regionBytes} must be a positive multiple of 512`);
    const regions = Math.ceil(diskSize / regionBytes);
    const bytes = Math.ceil(regions / 8);
    const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
    const st = await fh.stat();
    const existed = st.size === bytes;
    const initial = new Uint8Array(bytes);
    if (existed) await fh.read(initial, 0, bytes, 0);
    else {
      await fh.truncate(0);
      await fh.write(initial, 0, bytes, 0);
      await fh.datasync();
    }
    const map = new DirtyMap(fh, regionBytes, regions, initial);
    return { map, existed };
  }

  regionsOf(offset: number, length: number): [first: number, last: number] {
    return [Math.floor(offset / this.regionBytes), Math.floor((offset + Math.max(length, 1) - 1) / this.regionBytes)];
  }

  /** Regions set in the persisted map at open: what a crash may have left unreplicated. */
  persistedRegions(): number[] {
    const out: number[] = [];
    for (let r = 0; r < this.regions; r++) if (this.bit(r)) out.push(r);
    return out;
  }

  /** Counts an event for the regions and makes their bits durable before resolving. */
  async retain(offset: number, length: number): Promise<void> {
    const [a, b] = this.regionsOf(offset, length);
    let changed = false;
    for (let r = a; r <= b; r++) {
      this.unacked[r]!++;
      if (!this.bit(r)) {
        this.setBit(r, true);
        changed = true;
      }
    }
    if (changed) await this.persist(true);
  }

  /** An event for these regions was acknowledged downstream. */
  release(offset: number, length: number): void {
    const [a, b] = this.regionsOf(offset, length);
    for (let r = a; r <= b; r++) {
      if (this.unacked[r]! > 0) this.unacked[r]!--;
      this.maybeClear(r);
    }
  }

  /** The bit may go: nothing pending for the region (and, while holding, all of it applied). */
  private maybeClear(r: number): void {
    if (this.unacked[r] === 0 && this.needs[r] === 0 && this.bit(r) && (!this.hold || this.eventSeq[r]! <= this.appliedSeq)) {
      this.setBit(r, false);
      this.lazyClears++;
    }
  }

  /** A new lineage began: its sequence numbers start over, nothing of it is applied yet. */
  newLineage(): void {
    this.eventSeq.fill(0);
    this.appliedSeq = 0;
  }

  /** Event `seq` of the current lineage covers these bytes. */
  noteEvent(offset: number, length: number, seq: number): void {
    const [a, b] = this.regionsOf(offset, length);
    for (let r = a; r <= b; r++) if (this.eventSeq[r]! < seq) this.eventSeq[r] = seq;
  }

  /** Keep bits until the master target has applied their regions' events (see the class comment). */
  holdUntilApplied(on: boolean): void {
    if (this.hold === on) return;
    this.hold = on;
    if (!on) for (let r = 0; r < this.regions; r++) this.maybeClear(r);
  }

  get holding(): boolean {
    return this.hold;
  }

  /** The master target has applied the current lineage up to `seq`. */
  applied(seq: number): void {
    if (seq <= this.appliedSeq) return;
    this.appliedSeq = seq;
    if (this.hold) for (let r = 0; r < this.regions; r++) if (this.bit(r) && this.eventSeq[r]! <= seq) this.maybeClear(r);
  }

  /**
   * A delta resync compared region r and the master target holds what the compare found (its
   * differences, sent before, are applied): it no longer needs a resync.
   */
  covered(r: number): void {
    if (this.needs[r] === 1) {
      this.needs[r] = 0;
      this.needsCount--;
    }
    this.maybeClear(r);
  }

  /**
   * Marks as needing a resync every region that starts below `offset` and whose bit is set: a new
   * fence drops the events the replica has not applied yet, and below a delta resync's cursor
   * only these bits say where such events were.
   */
  markSetBelow(offset: number): number {
    let n = 0;
    for (let r = 0; r < this.regions && r * this.regionBytes < offset; r++) {
      if (this.bit(r) && this.needs[r] === 0) {
        this.markRegion(r);
        n++;
      }
    }
    return n;
  }

  /** Marks regions as needing a resync (durably) — used when a write cannot be buffered. */
  async markNeedsResync(offset: number, length: number): Promise<void> {
    const [a, b] = this.regionsOf(offset, length);
    for (let r = a; r <= b; r++) this.markRegion(r);
    await this.persist(true);
  }

  markRegion(r: number): void {
    if (this.needs[r] === 0) {
      this.needs[r] = 1;
      this.needsCount++;
    }
    this.setBit(r, true);
  }

  /** Every region needs a resync (initial replication); durable when it resolves. */
  async markAll(): Promise<void> {
    for (let r = 0; r < this.regions; r++) this.markRegion(r);
    await this.persist(true);
  }

  needsResync(): number {
    return this.needsCount;
  }

  /** Regions that need a resync, in disk order. They stay marked until startResync(r). */
  regionsNeedingResync(): number[] {
    const out: number[] = [];
    for (let r = 0; r < this.regions; r++) if (this.needs[r] === 1) out.push(r);
    return out;
  }

  /**
   * The resync read of region r has entered the stream: from now on it is an unacknowledged
   * event like a write, and its bit clears once that event is acknowledged.
   */
  startResync(r: number): void {
    if (this.needs[r] === 1) {
      this.needs[r] = 0;
      this.needsCount--;
    }
    this.unacked[r]!++;
  }

  dirtyRegions(): number {
    let n = 0;
    for (let r = 0; r < this.regions; r++) if (this.bit(r)) n++;
    return n;
  }

  /** Writes cleared bits too; called periodically and at clean shutdown. */
  async flush(): Promise<void> {
    if (this.lazyClears === 0) return;
    this.lazyClears = 0;
    await this.persist(true);
  }

  async close(): Promise<void> {
    await this.flush();
    await this.persistChain;
    await this.fh.close();
  }

  private bit(r: number): boolean {
    return (this.persisted[r >> 3]! & (1 << (r & 7))) !== 0;
  }

  private setBit(r: number, on: boolean): void {
    if (on) this.persisted[r >> 3]! |= 1 << (r & 7);
    else this.persisted[r >> 3]! &= ~(1 << (r & 7));
  }

  /** Serialised whole-map writes: the map is small (1 bit per MiB), so rewriting it is cheap. */
  private persist(sync: boolean): Promise<void> {
    const snapshot = Buffer.from(this.persisted);
    this.persistChain = this.persistChain.then(async () => {
      await this.fh.write(snapshot, 0, snapshot.length, 0);
      if (sync) await this.fh.datasync();
    });
    return this.persistChain;
  }
}
