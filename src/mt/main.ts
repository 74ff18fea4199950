import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdir, rm } from 'node:fs/promises';
import { EventEmitter } from 'node:events';
import { BoomerangError, ConfigError, ProtocolError, RemoteError, errorMessage } from '../replication/errors.js';
import type { BlockDevice } from '../replication/disk.js';
import { siblingLocation, type DiskLocation } from '../replication/disk-location.js';
import { DiskStore } from '../replication/disk-store.js';
import { isDiskId } from '../replication/position.js';
import type { OpenRequest } from '../replication/resync/messages.js';
import { createResyncTargetServer, type ResyncTargetSession } from '../replication/resync/target-service.js';
import { createDataServer, type DataServer, type Endpoint, type TlsMaterial } from '../replication/transport.js';
import { listenControl } from '../runtime/control.js';
import { masterTargetControlApi } from './control.js';
import { volumeFacts } from '../runtime/volume.js';
import type { Logger } from '../runtime/log.js';
import { tokenMatches } from '../security/token.js';
import { BlobPoints } from './blob-points.js';
import type { RecoveryPoint } from './journal-index.js';
import { ReplicaDisk } from './replica.js';
import { RpoWindow, servePs, type ApplyStats } from './server.js';
import { readAttachments, writeAttachments, type Attachment, type Attachments } from './attachments.js';
import { Mutex } from './mutex.js';
import { syncDir } from '../runtime/durable.js';

export interface MtDiskConfig {
  id: string;
  /** Where the replica is written: a file path or a page blob location (see disk-location.ts). */
  target: string;
  sizeBytes: number;
  /** Keep this disk's recovery points as blob snapshots too (page-blob replicas). @default the MT's `blobSnapshots` */
  blobSnapshots?: boolean;
}

export interface MasterTargetOptions {
  name: string;
  listen: Endpoint;
  /** The retention volume: one journal directory per disk below it, and attachments.json. */
  retentionDir: string;
  /** Disks from the configuration (may be empty); disks attached at runtime are added to them. */
  disks: MtDiskConfig[];
  /** @default 24 h */
  retentionMs?: number;
  /** Journal size cap per disk. @default 16 GiB */
  maxJournalBytes?: number;
  material: TlsMaterial;
  token: string;
  control?: Endpoint;
  /**
   * Where agents reach the resync target of the attached disks (delta resync: they compare their
   * disk with the replica, then send the differing blocks through the PS as usual).
   * @default the host of `listen`, port 0 (any free port; reported in the heartbeat)
   */
  resyncListen?: Endpoint;
  /** The host reported to the CS for the resync endpoint when it listens on a wildcard address. */
  advertiseHost?: string;
  /** Where disk locations lead: the storage accounts page-blob targets may name. @default local files only */
  diskStore?: DiskStore;
  /**
   * Page-blob replicas keep each recovery point as a blob snapshot too (see blob-points.ts), unless
   * the disk says otherwise. @default false
   */
  blobSnapshots?: boolean;
  log: Logger;
}

export const MT_DEFAULTS = Object.freeze({ retentionMs: 24 * 3600 * 1000, maxJournalBytes: 16 * 1024 ** 3 });

/** What attachDisk asks for. */
export interface AttachDiskRequest {
  id: string;
  /** The replica disk: a file path or a page blob location. */
  target: string;
  sizeBytes: number;
  /** An existing disk to rename to `target` when `target` does not exist (original-location reprotect); same kind (and account) as `target`. */
  adopt?: string;
  /** Keep recovery points as blob snapshots too (a page-blob target). @default the MT's `blobSnapshots` */
  blobSnapshots?: boolean;
}

/** A recovery point as listed: with the blob snapshot that holds it, when one was taken. */
export type ListedPoint = RecoveryPoint & { blobSnapshot?: string };

/** The state of one replica disk, for the CS and the control API. */
export interface MtDiskStatus {
  diskId: string;
  target: string;
  sizeBytes: number;
  origin: 'config' | 'attached';
  frozen: boolean;
  position: ReturnType<ReplicaDisk['position']>;
  points: ListedPoint[];
  health: ReturnType<ReplicaDisk['health']>;
  /** Whether new points get a blob snapshot, and the snapshots' counters. */
  blobSnapshots: { enabled: boolean; kept: number } & BlobPoints['stats'];
}

interface DiskEntry {
  target: string;
  sizeBytes: number;
  origin: 'config' | 'attached';
  /** The disk's own choice; undefined follows the MT's. */
  blobSnapshots?: boolean | undefined;
}

/** The master target: applies batches to target disks behind a write-ahead undo journal. */
export class MasterTarget {
  readonly disks = new Map<string, ReplicaDisk>();
  private readonly blobPoints = new Map<string, BlobPoints>();
  private readonly entries = new Map<string, DiskEntry>();
  private readonly frozen = new Set<string>();
  private attachments: Attachments = { version: 1, disks: [], frozen: [] };
  /** Serialises attach, freeze and release, and every write of attachments.json. */
  private readonly lifecycle = new Mutex();
  private readonly store: DiskStore;
  private readonly rpo = new Map<string, RpoWindow>();
  readonly applyStats: ApplyStats = { batches: 0, bytes: 0, refused: 0, lastRefusal: undefined };
  private readonly applied = new EventEmitter();
  private server: DataServer | undefined;
  private resyncServer: DataServer | undefined;
  /** Resync sessions open now (updated live) and the totals of those that ended. */
  private readonly resyncSessions = new Set<ResyncTargetSession>();
  readonly resyncStats = { sessions: 0, batchesCompared: 0, waits: 0, errors: 0 };
  private control: FastifyInstance | undefined;
  endpoint: Endpoint | undefined;
  /** The resync target's bound address. */
  resyncEndpoint: Endpoint | undefined;
  controlEndpoint: Endpoint | undefined;

  private constructor(private readonly o: MasterTargetOptions) {
    this.applied.setMaxListeners(0);
    this.store = o.diskStore ?? DiskStore.local();
  }

  static async start(o: MasterTargetOptions): Promise<MasterTarget> {
    const mt = new MasterTarget(o);
    try {
      await mt.open();
    } catch (err) {
      await mt.stop().catch(() => undefined);
      throw err;
    }
    return mt;
  }

  private async open(): Promise<void> {
    const o = this.o;
    await mkdir(o.retentionDir, { recursive: true, mode: 0o700 });
    this.attachments = await readAttachments(o.retentionDir);
    // Releases a crash interrupted are finished before anything is opened.
    for (const a of this.attachments.disks.filter((x) => x.releasing !== undefined)) {
      await this.finishRelease(a.id, this.store.locate(a.target), a.releasing?.handTo === undefined ? undefined : this.store.locate(a.releasing.handTo));
      this.attachments.disks = this.attachments.disks.filter((x) => x.id !== a.id);
      this.attachments.frozen = this.attachments.frozen.filter((id) => id !== a.id);
      await writeAttachments(o.retentionDir, this.attachments);
      o.log.info({ disk: a.id, handTo: a.releasing?.handTo }, 'interrupted release finished');
    }
    for (const id of this.attachments.frozen) this.frozen.add(id);
    const attached = new Map(this.attachments.disks.map((a) => [a.id, a]));
    for (const d of o.disks) {
      const a = attached.get(d.id);
      if (a && (this.store.locate(a.target).text !== this.store.locate(d.target).text || a.sizeBytes !== d.sizeBytes)) {
        // The newer, runtime decision wins over the static configuration.
        o.log.warn({ disk: d.id, configured: d.target, attached: a.target }, 'configured disk superseded by its attachment');
        continue;
      }
      if (a) attached.delete(d.id);
      await this.openReplica(d.id, { target: d.target, sizeBytes: d.sizeBytes, origin: 'config', blobSnapshots: a?.blobSnapshots ?? d.blobSnapshots });
    }
    for (const a of attached.values()) await this.openReplica(a.id, { target: a.target, sizeBytes: a.sizeBytes, origin: 'attached', blobSnapshots: a.blobSnapshots });
    this.server = createDataServer({
      material: o.material,
      roles: ['ps'],
      authorize: (hello) => tokenMatches(hello.token, o.token),
      onConnection: async (conn) => {
        o.log.info({ ps: conn.hello.name }, 'process server connected');
        await servePs(conn, (id) => this.accepting(id), this.rpo, this.applyStats, (msg, f) => o.log.warn(f ?? {}, msg), (id) => this.applied.emit(id));
      },
      onError: (err, peer) => o.log.warn({ peer, error: errorMessage(err) }, 'process server connection error'),
    });
    this.endpoint = await this.server.listen(o.listen);
    this.resyncServer = createResyncTargetServer({
      material: o.material,
      token: o.token,
      openDisk: (id, request) => this.openResyncDisk(id, request),
      waitApplied: (id, lineage, seq, signal) => this.waitApplied(id, lineage, seq, signal),
      onOpen: (session) => {
        this.resyncSessions.add(session);
        o.log.info({ disk: session.diskId, fence: session.fence }, 'resync session opened');
      },
      onSession: (session) => {
        this.resyncSessions.delete(session);
        this.resyncStats.sessions++;
        this.resyncStats.batchesCompared += session.batchesCompared;
        this.resyncStats.waits += session.waits;
        if (session.error !== undefined) this.resyncStats.errors++;
        const fields = { disk: session.diskId, batchesCompared: session.batchesCompared, regionsDifferent: session.regionsDifferent, waits: session.waits };
        if (session.error === undefined) o.log.info(fields, 'resync session ended');
        else o.log.warn({ ...fields, error: errorMessage(session.error) }, 'resync session ended with an error');
      },
      onError: (err, peer) => o.log.warn({ peer, error: errorMessage(err) }, 'resync connection error'),
    });
    this.resyncEndpoint = await this.resyncServer.listen(o.resyncListen ?? { host: o.listen.host, port: 0 });
    if (o.control) await this.startControl(o.control);
    o.log.info({ listen: this.endpoint, resync: this.resyncEndpoint, control: this.controlEndpoint, disks: this.diskIds(), frozen: [...this.frozen] }, 'master target started');
  }

  /** Where agents are told to reach the resync target (a wildcard listen address is replaced by `advertiseHost`). */
  advertisedResyncEndpoint(): Endpoint | undefined {
    const e = this.resyncEndpoint;
    if (!e) return undefined;
    const wildcard = e.host === '0.0.0.0' || e.host === '::' || e.host === '';
    return { host: wildcard ? (this.o.advertiseHost ?? e.host) : e.host, port: e.port };
  }

  /**
   * A resync session's view of a replica: its target file, read only (the differences reach the
   * replica as batches through the PS, behind the journal, never over this connection). The
   * session's fence is made durable first.
   */
  private async openResyncDisk(id: string, request: OpenRequest): Promise<BlockDevice> {
    const d = this.disks.get(id);
    const entry = this.entries.get(id);
    if (!d || !entry) throw new RemoteError('UNKNOWN_DISK', `master target ${this.o.name} has no disk ${id}`, { retryable: true });
    if (request.fence) {
      await d.fence(request.fence.lineage, request.fence.time);
      this.o.log.info({ disk: id, fence: request.fence }, 'resync fence: batches of older lineages will be dropped');
    }
    const file = await this.store.open(this.store.locate(entry.target), { readOnly: true });
    const readOnly = (): Promise<never> => Promise.reject(new ProtocolError('RESYNC_READ_ONLY', `disk ${id} is a replica: its differences must come through the process server`));
    return {
      size: file.size,
      read: (offset, length) => file.read(offset, length),
      readInto: (into, offset) => file.readInto(into, offset),
      write: readOnly,
      writeZeroes: readOnly,
      flush: async () => undefined,
      close: () => file.close(),
    };
  }

  /**
   * Resolves once disk `id` has applied `seq` of `lineage`; rejects when it never will (the
   * lineage was superseded or closed here, or the disk went away) or `signal` aborts.
   */
  waitApplied(id: string, lineage: string, seq: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = (): boolean => {
        const d = this.disks.get(id);
        if (!d) throw new RemoteError('UNKNOWN_DISK', `master target ${this.o.name} has no disk ${id} any more`, { retryable: true });
        const p = d.position();
        if (p && p.lineage === lineage && p.lastSeq >= seq) return true;
        if (d.isRetired(lineage) || (p && p.lineage === lineage && p.closed))
          throw new RemoteError('RESYNC_LINEAGE_ENDED', `disk ${id}: lineage ${lineage} ended here before seq ${seq}`);
        return false;
      };
      const done = (err?: unknown) => {
        this.applied.off(id, onApplied);
        signal.removeEventListener('abort', onAbort);
        if (err === undefined) resolve();
        else reject(err instanceof Error ? err : new Error(String(err)));
      };
      const onApplied = () => {
        try {
          if (check()) done();
        } catch (err) {
          done(err);
        }
      };
      const onAbort = () => done(signal.reason ?? new Error('aborted'));
      this.applied.on(id, onApplied);
      signal.addEventListener('abort', onAbort);
      if (signal.aborted) onAbort();
      else onApplied();
    });
  }

  private async openReplica(id: string, entry: DiskEntry): Promise<ReplicaDisk> {
    const o = this.o;
    // The hook fires on applies only, which start after the snapshots' record is open below.
    let points: BlobPoints | undefined;
    const replica = await ReplicaDisk.open({
      diskId: id,
      targetPath: entry.target,
      store: this.store,
      retentionDir: join(o.retentionDir, id),
      size: entry.sizeBytes,
      retentionMs: o.retentionMs ?? MT_DEFAULTS.retentionMs,
      maxJournalBytes: o.maxJournalBytes ?? MT_DEFAULTS.maxJournalBytes,
      onPointsChanged: (change) => points?.changed(change) ?? Promise.resolve(),
    });
    try {
      points = await BlobPoints.open(
        { diskId: id, dir: join(o.retentionDir, id), store: this.store, target: this.store.locate(entry.target), enabled: this.snapshotsWanted(entry), log: o.log },
        replica.recoveryPoints(),
      );
    } catch (err) {
      await replica.close().catch(() => undefined);
      throw err;
    }
    this.blobPoints.set(id, points);
    this.disks.set(id, replica);
    this.entries.set(id, entry);
    this.rpo.set(id, new RpoWindow());
    o.log.info({ disk: id, origin: entry.origin, target: entry.target, position: replica.position(), points: replica.recoveryPoints().length, blobSnapshots: points.enabled, frozen: this.frozen.has(id) }, 'replica opened');
    return replica;
  }

  /** The replica a batch may be applied to now; the typed, retryable refusal otherwise. */
  private accepting(id: string): ReplicaDisk {
    const d = this.disks.get(id);
    if (!d) throw new RemoteError('UNKNOWN_DISK', `master target ${this.o.name} has no disk ${id}`, { retryable: true });
    if (this.frozen.has(id)) throw new RemoteError('DISK_FROZEN', `disk ${id} is frozen on master target ${this.o.name}: its batches are kept by the process server until it is attached again`, { retryable: true });
    return d;
  }

  disk(id: string): ReplicaDisk {
    const d = this.disks.get(id);
    if (!d) throw new BoomerangError('UNKNOWN_DISK', `master target ${this.o.name} has no disk ${id}`);
    return d;
  }

  /** Ids of every open replica disk: configured and attached. */
  diskIds(): string[] {
    return [...this.disks.keys()];
  }

  diskStatus(id: string): MtDiskStatus {
    const d = this.disk(id);
    const e = this.entries.get(id)!;
    const bp = this.blobPoints.get(id);
    return {
      diskId: id,
      target: e.target,
      sizeBytes: e.sizeBytes,
      origin: e.origin,
      frozen: this.frozen.has(id),
      position: d.position(),
      points: this.listPoints(id),
      health: d.health(),
      blobSnapshots: { enabled: bp?.enabled ?? false, kept: bp?.list().length ?? 0, ...(bp?.stats ?? { taken: 0, deleted: 0, restored: 0, failures: 0 }) },
    };
  }

  /** Disk `id`'s recovery points, oldest first, each with its blob snapshot when it has one. */
  listPoints(id: string): ListedPoint[] {
    const bp = this.blobPoints.get(id);
    return this.disk(id)
      .recoveryPoints()
      .map((p) => {
        const snapshot = bp?.snapshotOf(p.id);
        return snapshot === undefined ? p : { ...p, blobSnapshot: snapshot };
      });
  }

  /** Whether a disk's new points get blob snapshots: its own choice, else the MT's. */
  private snapshotsWanted(entry: DiskEntry): boolean {
    return entry.blobSnapshots ?? this.o.blobSnapshots ?? false;
  }

  private saveAttachments(): Promise<void> {
    this.attachments.frozen = [...this.frozen].sort();
    return writeAttachments(this.o.retentionDir, this.attachments);
  }

  /**
   * Makes `target` the replica of disk `id` and starts accepting its batches. Idempotent: the same
   * id with the same target and size already attached is a no-op, except that a frozen disk is
   * unfrozen (attaching again is how applying resumes). `target` and `adopt` are file paths or
   * page blob locations (disk-location.ts). When `target` does not exist, `adopt` (an existing
   * disk, e.g. the machine's own disk for original-location reprotect) is renamed to it; failing
   * that a sparse disk of `sizeBytes` is created. A journal left in `<retention>/<id>` is kept
   * only when `target` already existed (it describes that disk). Refused with DISK_SIZE_MISMATCH
   * when the existing disk has another size, DISK_ATTACHED when the id is attached to another
   * target, DISK_LOCATION / DISK_ACCOUNT_UNKNOWN for a location that is malformed, names an
   * account not configured, or cannot be renamed to `target` — before anything changes.
   */
  attachDisk(req: AttachDiskRequest): Promise<{ created: boolean; adopted: boolean }> {
    if (!isDiskId(req.id)) return Promise.reject(new ConfigError('BAD_DISK_ID', `disk id ${JSON.stringify(req.id)} is not valid`));
    if (!Number.isSafeInteger(req.sizeBytes) || req.sizeBytes <= 0 || req.sizeBytes % 512 !== 0)
      return Promise.reject(new ConfigError('BAD_DISK_SIZE', `disk size ${req.sizeBytes} is not a positive multiple of 512`));
    let target: DiskLocation;
    let adopt: DiskLocation | undefined;
    try {
      target = this.store.locate(req.target);
      adopt = req.adopt === undefined ? undefined : this.store.locate(req.adopt);
      if (adopt) DiskStore.checkRenamable(adopt, target);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.lifecycle.run(async () => {
      const cur = this.entries.get(req.id);
      if (cur) {
        if (this.store.locate(cur.target).text !== target.text || cur.sizeBytes !== req.sizeBytes)
          throw new BoomerangError('DISK_ATTACHED', `disk ${req.id} is already attached to ${cur.target} (${cur.sizeBytes} bytes); release it first`);
        const unfrozen = this.frozen.delete(req.id);
        const snapshotsChanged = req.blobSnapshots !== undefined && req.blobSnapshots !== cur.blobSnapshots;
        if (snapshotsChanged) {
          cur.blobSnapshots = req.blobSnapshots;
          this.blobPoints.get(req.id)?.setEnabled(this.snapshotsWanted(cur));
          const a = this.attachments.disks.find((x) => x.id === req.id);
          if (a) a.blobSnapshots = req.blobSnapshots!;
          else this.attachments.disks = [...this.attachments.disks, { id: req.id, target: target.text, sizeBytes: req.sizeBytes, blobSnapshots: req.blobSnapshots! }];
        }
        if (unfrozen || snapshotsChanged) await this.saveAttachments();
        if (unfrozen) this.o.log.info({ disk: req.id }, 'disk unfrozen: applying resumes');
        return { created: false, adopted: false };
      }
      let created = false;
      let adopted = false;
      let existing = await this.store.stat(target);
      // An adoption a crash interrupted mid-copy is made again from the donor, which is still there.
      if (existing?.copyIncomplete && adopt && (await this.store.stat(adopt))) existing = undefined;
      if (existing) {
        if (!existing.usable) throw new BoomerangError('TARGET_NOT_FILE', `target ${target.text} of disk ${req.id} is ${existing.kind}`);
        if (existing.size !== req.sizeBytes) throw new BoomerangError('DISK_SIZE_MISMATCH', `target ${target.text} has ${existing.size} bytes, disk ${req.id} needs ${req.sizeBytes}`);
      } else {
        const donor = adopt === undefined ? undefined : await this.store.stat(adopt);
        await this.store.prepare(target);
        if (donor) {
          if (!donor.usable) throw new BoomerangError('TARGET_NOT_FILE', `${adopt!.text} (to adopt for disk ${req.id}) is ${donor.kind}`);
          if (donor.size !== req.sizeBytes) throw new BoomerangError('DISK_SIZE_MISMATCH', `${adopt!.text} has ${donor.size} bytes, disk ${req.id} needs ${req.sizeBytes}`);
          await this.store.rename(adopt!, target);
          adopted = true;
        } else {
          await this.store.create(target, req.sizeBytes);
          created = true;
        }
        // A journal describes the disk it was kept for, not this one.
        await rm(join(this.o.retentionDir, req.id), { recursive: true, force: true });
      }
      const snapshots = req.blobSnapshots === undefined ? {} : { blobSnapshots: req.blobSnapshots };
      await this.openReplica(req.id, { target: target.text, sizeBytes: req.sizeBytes, origin: 'attached', ...snapshots });
      this.attachments.disks = [...this.attachments.disks.filter((a) => a.id !== req.id), { id: req.id, target: target.text, sizeBytes: req.sizeBytes, ...snapshots }];
      this.frozen.delete(req.id);
      await this.saveAttachments();
      this.o.log.info({ disk: req.id, target: target.text, created, adopted }, 'disk attached');
      return { created, adopted };
    });
  }

  /**
   * Stops applying the disk's batches: the PS gets the retryable DISK_FROZEN and keeps them. Target
   * and journal stay; an apply under way finishes first. Persisted; attachDisk with the same id
   * and target resumes. Idempotent.
   */
  freezeDisk(id: string): Promise<void> {
    return this.lifecycle.run(async () => {
      const d = this.disk(id);
      if (!this.frozen.has(id)) {
        this.frozen.add(id);
        await this.saveAttachments();
        this.o.log.info({ disk: id, position: d.position() }, 'disk frozen');
      }
      await d.idle();
    });
  }

  /**
   * Freezes the disk, then writes it as it was at `point` — 'latest' (the newest applied state;
   * refused with REPLICA_INCONSISTENT mid-resync), a recovery point id or a bookmark id — to
   * `outPath` (a file path or a page blob location), through `<outPath>.tmp`, fsync, rename, fsync
   * of the directory (blobs: a server-side copy, then the rename as copy and delete). An existing
   * `outPath` is replaced. Returns the point used: for 'latest', the newest recovery point when
   * the target is exactly at it, else the id 'latest' and the current time.
   */
  async restoreDiskTo(id: string, point: string, outPath: string): Promise<{ pointId: string; time: number }> {
    const out = this.store.locate(outPath);
    const tmp = siblingLocation(out, '.tmp');
    const check = this.disk(id);
    this.resolvePoint(check, point); // refuse an unknown point before freezing anything
    if (point === 'latest') this.latestPoint(check);
    await this.freezeDisk(id);
    const d = this.disk(id);
    const resolved = this.resolvePoint(d, point);
    let chosen: { pointId: string; time: number };
    if (resolved === 'latest') chosen = this.latestPoint(d);
    else {
      const p = d.recoveryPoints().find((x) => x.id === resolved)!;
      chosen = { pointId: p.id, time: p.time };
    }
    await this.store.prepare(out);
    // A temporary copy left by an interrupted restore is ours to replace.
    await this.store.remove(tmp, { breakLease: true });
    let via: 'snapshot' | 'journal' = 'journal';
    try {
      // A point kept as a blob snapshot is a server-side copy of it, not a replay of the journal.
      const bp = this.blobPoints.get(id);
      if (chosen.pointId !== 'latest' && bp && (await bp.restore(chosen.pointId, tmp, this.entries.get(id)!.sizeBytes))) via = 'snapshot';
      else await d.restore(resolved, tmp.text);
      await this.store.sync(tmp);
      await this.store.rename(tmp, out);
    } catch (err) {
      await this.store.remove(tmp, { breakLease: true }).catch(() => undefined);
      throw err;
    }
    this.o.log.info({ disk: id, point, ...chosen, via, outPath: out.text }, 'disk restored');
    return chosen;
  }

  /** The point 'latest' names: the newest recovery point if the target is exactly at it. */
  private latestPoint(d: ReplicaDisk): { pointId: string; time: number } {
    const pos = d.position();
    if (!pos || !pos.consistent)
      throw new BoomerangError('REPLICA_INCONSISTENT', `disk ${d.diskId} has no consistent newest state (${pos ? 'resync under way' : 'nothing applied yet'}); choose a recovery point`);
    const at = d.recoveryPoints().filter((p) => p.lineage === pos.lineage && p.seq === pos.lastSeq).at(-1);
    return at ? { pointId: at.id, time: at.time } : { pointId: 'latest', time: Date.now() };
  }

  /**
   * Lets a disk go: stops accepting its batches, closes the replica, then hands the target disk to
   * `handTo` (a rename, replacing what is there — for page blobs a server-side copy then a delete;
   * how the replica goes back to its machine at failback) or deletes it, deletes the journal directory and forgets the disk. The intent is
   * written to attachments.json first, so a crash in between is finished on the next start.
   * Idempotent: an unknown id is a no-op. A configured disk is opened again (empty) on the next
   * start: lifecycle-managed disks should be attached ones.
   */
  releaseDisk(id: string, options: { handTo?: string } = {}): Promise<void> {
    let handTo: DiskLocation | undefined;
    try {
      handTo = options.handTo === undefined ? undefined : this.store.locate(options.handTo);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.lifecycle.run(async () => {
      const entry = this.entries.get(id);
      const replica = this.disks.get(id);
      if (!entry || !replica) return;
      const target = this.store.locate(entry.target);
      if (handTo) DiskStore.checkRenamable(target, handTo);
      const intent: Attachment = { id, target: entry.target, sizeBytes: entry.sizeBytes, releasing: handTo === undefined ? {} : { handTo: handTo.text } };
      this.attachments.disks = [...this.attachments.disks.filter((a) => a.id !== id), intent];
      await this.saveAttachments();
      this.disks.delete(id);
      this.entries.delete(id);
      this.rpo.delete(id);
      this.frozen.delete(id);
      await replica.close();
      // The blob's snapshots go with it: the release deletes the blob with its snapshots.
      await this.closeBlobPoints(id);
      await this.finishRelease(id, target, handTo);
      this.attachments.disks = this.attachments.disks.filter((a) => a.id !== id);
      await this.saveAttachments();
      this.o.log.info({ disk: id, handTo: handTo?.text }, 'disk released');
    });
  }

  private async closeBlobPoints(id: string): Promise<void> {
    const bp = this.blobPoints.get(id);
    this.blobPoints.delete(id);
    await bp?.close().catch((err: unknown) => this.o.log.warn({ disk: id, error: errorMessage(err) }, 'blob snapshots: read handle not closed'));
  }

  /** The file steps of a release; each can be repeated after a crash. */
  private async finishRelease(id: string, target: DiskLocation, handTo: DiskLocation | undefined): Promise<void> {
    // The target is ours: a lease a crashed MT left on a page blob is broken.
    if (handTo !== undefined) {
      if (await this.store.stat(target)) {
        await this.store.rename(target, handTo, { breakLease: true });
      } else if (!(await this.store.stat(handTo))) {
        // Only after a crash and outside interference: there is nothing left to hand over.
        this.o.log.error({ disk: id, target: target.text, handTo: handTo.text }, 'release: neither the target nor the disk it was handed to exists');
      }
    } else if (await this.store.stat(target)) {
      await this.store.remove(target, { breakLease: true });
    }
    await rm(join(this.o.retentionDir, id), { recursive: true, force: true });
    await syncDir(this.o.retentionDir);
  }

  /** Resolves once the disk has applied `seq` of `lineage` (or a later lineage), false on timeout. */
  waitFor(id: string, lineage: string, seq: number, timeoutMs: number): Promise<boolean> {
    const d = this.disk(id);
    const reached = () => {
      const p = d.position();
      return p !== undefined && p.lineage === lineage && p.lastSeq >= seq;
    };
    if (reached()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onApplied = () => {
        if (!reached()) return;
        cleanup();
        resolve(true);
      };
      const timer = setTimeout(() => {
        cleanup();
        resolve(false);
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.applied.off(id, onApplied);
      };
      this.applied.on(id, onApplied);
    });
  }

  /** Operators name a point by its id or by the id of the bookmark that made it. */
  resolvePoint(d: ReplicaDisk, point: string): string {
    if (point === 'latest') return point;
    const found = d.recoveryPoints().find((p) => p.id === point || p.bookmarkId === point);
    if (!found) throw new BoomerangError('UNKNOWN_POINT', `disk ${d.diskId} has no recovery point or bookmark ${point} (pruned, discarded or never taken)`);
    return found.id;
  }

  status() {
    return {
      name: this.o.name,
      apply: this.applyStats,
      resync: {
        endpoint: this.resyncEndpoint,
        ...this.resyncStats,
        open: [...this.resyncSessions].map((x) => ({ diskId: x.diskId, fence: x.fence, batchesCompared: x.batchesCompared, regionsDifferent: x.regionsDifferent, waits: x.waits })),
      },
      disks: Object.fromEntries(
        [...this.disks].map(([id, d]) => [
          id,
          {
            target: this.entries.get(id)?.target,
            origin: this.entries.get(id)?.origin,
            frozen: this.frozen.has(id),
            position: d.position(),
            recoveryPoints: d.recoveryPoints().length,
            health: d.health(),
            fence: d.currentFence,
            fencedBatches: d.fencedBatches,
            rpoMs: this.rpo.get(id)?.summary(),
          },
        ]),
      ),
    };
  }

  /** The MT section of a heartbeat: retention volume eligibility facts and each journal's span. */
  async healthReport() {
    const volume = await volumeFacts(this.o.retentionDir, {
      targets: [
        ...new Set(
          [...this.o.disks.map((d) => d.target), ...[...this.entries.values()].map((e) => e.target)].flatMap((t) => {
            const dir = this.store.directoryOf(this.store.locate(t));
            return dir === undefined ? [] : [dir];
          }),
        ),
      ],
      cacheOrInstall: [fileURLToPath(new URL('.', import.meta.url))],
    });
    return {
      mt: {
        platform: process.platform === 'win32' ? ('windows' as const) : ('linux' as const),
        retentionPath: this.o.retentionDir,
        ...(this.advertisedResyncEndpoint() ? { resyncEndpoint: this.advertisedResyncEndpoint()! } : {}),
        volumes: [volume],
        journals: [...this.disks].flatMap(([diskId, d]) => {
          const p = d.position();
          if (!p) return [];
          const h = d.health();
          return [
            {
              diskId,
              lineage: p.lineage,
              lastSeq: p.lastSeq,
              bytes: h.journalBytes,
              ...(h.oldestPointTime === undefined ? {} : { oldestPointTime: new Date(h.oldestPointTime).toISOString() }),
              ...(h.newestPointTime === undefined ? {} : { newestPointTime: new Date(h.newestPointTime).toISOString() }),
            },
          ];
        }),
      },
    };
  }

  private async startControl(endpoint: Endpoint): Promise<void> {
    this.control = masterTargetControlApi(this, { material: this.o.material, token: this.o.token, component: `master target ${this.o.name}` });
    this.controlEndpoint = await listenControl(this.control, endpoint);
  }

  async stop(): Promise<void> {
    await this.control?.close();
    await this.resyncServer?.close();
    await this.server?.close();
    await this.lifecycle.run(async () => undefined); // attach / release under way finish first
    for (const d of this.disks.values()) await d.close();
    for (const id of [...this.blobPoints.keys()]) await this.closeBlobPoints(id);
    this.o.log.info('master target stopped');
  }
}
