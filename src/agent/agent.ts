import type { FastifyInstance } from 'fastify';
import { mkdir } from 'node:fs/promises';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type { BookmarkKind, Bookmark } from '../replication/batch.js';
import type { BlockDevice } from '../replication/disk.js';
import { DiskStore } from '../replication/disk-store.js';
import { BoomerangError, errorMessage } from '../replication/errors.js';
import { newLineage, type LineageId } from '../replication/position.js';
import type { Endpoint, TlsMaterial } from '../replication/transport.js';
import type { Logger } from '../runtime/log.js';
import { listenControl } from '../runtime/control.js';
import { agentControlApi } from './control.js';
import { NbdServer } from './nbd/server.js';
import { BufferBudget } from './budget.js';
import { DiskCapture, type SealedBatch } from './capture.js';
import { deltaResyncPass, type DeltaProgress, type DeltaResyncTuning } from './delta-resync.js';
import { DirtyMap } from './dirty-map.js';
import { PsSender } from './sender.js';
import { readDiskState, writeDiskState } from './state.js';

export interface AgentDiskConfig {
  id: string;
  /** The backing disk: a file path, or a page blob `azblob://<account>/<container>/<blob>` (disk-location.ts). */
  path: string;
  /** Create the backing disk (sparse) with this size if it does not exist. */
  sizeBytes?: number;
  /**
   * Replicate this disk. An unprotected disk is still served over NBD, in passthrough (writes go
   * straight to the backing disk, nothing is sent). Once protectDisk / unprotectDisk has been
   * called, the choice persisted in the state directory wins over this setting.
   * @default true
   */
  protect?: boolean;
}

/** What a clean stop did: whether the next run may continue, and the final bookmark per disk. */
export interface AgentStopResult {
  clean: boolean;
  /** disk id → id of the crash-consistent bookmark taken at shutdown (`shutdown-<ISO time>`). */
  finalBookmarks: Record<string, string>;
}

export interface AgentOptions {
  name: string;
  stateDir: string;
  nbdSocket: string;
  processServer: Endpoint;
  material: TlsMaterial;
  token: string;
  disks: AgentDiskConfig[];
  control?: Endpoint;
  log: Logger;
  /** @default 4 MiB */
  maxBatchBytes?: number;
  /** @default 20 ms */
  maxBatchDelayMs?: number;
  /** Captured bytes held in memory until the PS acknowledges them. @default 256 MiB */
  bufferBytes?: number;
  /** Bytes in flight to the PS. @default 64 MiB */
  windowBytes?: number;
  /** Dirty-map region (and resync read) size. @default 1 MiB */
  regionBytes?: number;
  /** Crash-consistent bookmark period; 0 turns the timer off. @default 5 min */
  bookmarkIntervalMs?: number;
  /** Delta resync (disks protected with a resync target): checkpoints, window, connect timeout. */
  resync?: DeltaResyncTuning;
  /** Where disk paths lead: the storage accounts page-blob disks may name. @default local files only */
  diskStore?: DiskStore;
}

export const AGENT_DEFAULTS = Object.freeze({
  maxBatchBytes: 4 * 1024 * 1024,
  maxBatchDelayMs: 20,
  bufferBytes: 256 * 1024 * 1024,
  windowBytes: 64 * 1024 * 1024,
  regionBytes: 1024 * 1024,
  bookmarkIntervalMs: 5 * 60 * 1000,
});

interface DiskRuntime {
  capture: DiskCapture;
  backing: BlockDevice;
  dirty: DirtyMap;
  statePath: string;
  /** How this run began: continuing a lineage after a clean stop, resyncing, or in passthrough. */
  start: 'continued' | 'initial' | 'crash-recovery' | 'unprotected';
  /** The persisted explicit choice (protectDisk / unprotectDisk), if one was ever made. */
  choice: boolean | undefined;
  /** Tail of the chain that serialises protectDisk / unprotectDisk on this disk. */
  lifecycle: Promise<unknown>;
  /** Tail of the chain that serialises writes of the state file. */
  stateWrites: Promise<unknown>;
  /** The MT's resync target for this disk, when the CS gave one (delta resync). */
  resyncTarget: Endpoint | undefined;
  /** A delta resync is pending from this cursor (persisted as the state's `resync`). */
  delta: { lineage: LineageId; cursor: number } | undefined;
  /** Bumped whenever protect/unprotect replace `delta`: a pass started before must not touch it. */
  deltaGen: number;
  /** Progress in bytes; `mode` says how the current (or last) pass resyncs. */
  resync: { running: boolean; again: boolean; done: number; total: number; runs: number; mode: 'copy' | 'delta' | undefined; delta: DeltaProgress | undefined };
  resyncTask: Promise<void> | undefined;
  acked: { lineage: LineageId; lastSeq: number; at: number } | undefined;
  /** firstTime of unacknowledged batches, oldest first: the agent-side RPO. */
  unackedTimes: number[];
}

/**
 * The mobility agent: serves each protected disk over NBD, captures its writes into batches and
 * sends them to a process server. Composition root: build from options, start in order, stop in
 * reverse.
 */
export class Agent {
  private readonly disks = new Map<string, DiskRuntime>();
  private readonly budget: BufferBudget;
  private sender!: PsSender;
  private nbd!: NbdServer;
  private timers: NodeJS.Timeout[] = [];
  private control: FastifyInstance | undefined;
  controlEndpoint: Endpoint | undefined;
  private stopping = false;
  /** Emits a disk id after each acknowledgement of one of its batches. */
  private readonly acks = new EventEmitter();

  private constructor(private readonly o: AgentOptions) {
    this.budget = new BufferBudget(o.bufferBytes ?? AGENT_DEFAULTS.bufferBytes);
    this.acks.setMaxListeners(0);
  }

  static async start(o: AgentOptions): Promise<Agent> {
    const agent = new Agent(o);
    try {
      await agent.open();
    } catch (err) {
      await agent.stop({ drainTimeoutMs: 0 }).catch(() => undefined);
      throw err;
    }
    return agent;
  }

  private async open(): Promise<void> {
    const o = this.o;
    await mkdir(o.stateDir, { recursive: true, mode: 0o700 });
    this.sender = new PsSender({
      endpoint: o.processServer,
      material: o.material,
      token: o.token,
      name: o.name,
      windowBytes: o.windowBytes ?? AGENT_DEFAULTS.windowBytes,
      onAck: (b) => this.onAck(b),
      log: (level, msg, fields) => o.log[level](fields ?? {}, msg),
    });
    for (const d of o.disks) await this.openDisk(d);
    this.sender.start();
    this.nbd = new NbdServer({ socketPath: o.nbdSocket, exports: [...this.disks.values()].map((d) => d.capture), logger: (msg, fields) => o.log.debug(fields ?? {}, msg) });
    await this.nbd.listen();
    // A crash-recovery lineage needs its resync pass even with nothing to copy: it starts the
    // lineage (lineageStart) and ends it consistent (resyncDone) on the replica.
    for (const [id, d] of this.disks) if (d.capture.mode !== 'passthrough' && (d.dirty.needsResync() > 0 || d.start === 'crash-recovery' || d.delta !== undefined)) this.scheduleResync(id);
    const every = o.bookmarkIntervalMs ?? AGENT_DEFAULTS.bookmarkIntervalMs;
    if (every > 0) this.timers.push(setInterval(() => this.timedBookmarks(), every));
    this.timers.push(setInterval(() => void this.flushDirtyMaps(), 5000));
    if (o.control) await this.startControl(o.control);
    o.log.info({ disks: [...this.disks.keys()], nbd: o.nbdSocket, control: this.controlEndpoint }, 'agent started');
  }

  private async openDisk(d: AgentDiskConfig): Promise<void> {
    const o = this.o;
    const store = o.diskStore ?? DiskStore.local();
    // The agent owns its disk: a page-blob lease its crashed predecessor left is taken over.
    const backing = await store.open(store.locate(d.path), { ...(d.sizeBytes === undefined ? {} : { size: d.sizeBytes, create: true }), takeOver: true });
    const { map: dirty, existed } = await DirtyMap.open(join(o.stateDir, `${d.id}.dirty`), backing.size, o.regionBytes ?? AGENT_DEFAULTS.regionBytes);
    const statePath = join(o.stateDir, `${d.id}.state`);
    const state = await readDiskState(statePath);
    const choice = state?.protected;
    const protect = choice ?? d.protect ?? true;
    const resyncTarget = state?.resyncTarget;
    let delta: DiskRuntime['delta'];
    let start: DiskRuntime['start'];
    let position: { lineage: LineageId; lastSeq: number };
    if (!protect) {
      // Nothing is captured; the position is kept only to be shown. Protecting the disk later
      // starts a new lineage with a full resync.
      start = 'unprotected';
      position = state ? { lineage: state.lineage, lastSeq: state.lastSeq } : { lineage: newLineage(), lastSeq: 0 };
    } else if (state && existed && state.clean && !state.passthrough && dirty.dirtyRegions() === 0) {
      start = 'continued';
      position = { lineage: state.lineage, lastSeq: state.lastSeq };
      // No delta resync is left pending: a clean stop needs an empty map, and while a delta
      // resync is pending bits clear only once the MT applied their events.
    } else if (state && existed && !state.passthrough) {
      // Unclean stop: what was buffered is gone, continuity cannot be proven. The persisted
      // write-intent bits bound what may differ on the replica. A delta resync under way resumes
      // from its cursor: the bits name what changed below it since (see delta-resync.ts).
      start = 'crash-recovery';
      for (const r of dirty.persistedRegions()) dirty.markRegion(r);
      position = { lineage: newLineage(), lastSeq: 0 };
      delta = state.resync;
    } else {
      // First start, or the disk ran in passthrough: writes may be missing from any lineage and
      // from the write-intent map, so only a whole-disk resync proves anything.
      start = 'initial';
      await dirty.markAll();
      position = { lineage: newLineage(), lastSeq: 0 };
      if (resyncTarget) delta = { lineage: position.lineage, cursor: 0 };
    }
    if (delta && !resyncTarget) delta = undefined;
    if (delta) dirty.holdUntilApplied(true);
    await writeDiskState(statePath, {
      ...position,
      clean: false,
      ...(choice === undefined ? {} : { protected: choice }),
      ...(protect ? {} : { passthrough: true }),
      ...(resyncTarget ? { resyncTarget } : {}),
      ...(delta ? { resync: delta } : {}),
    });
    const rt: DiskRuntime = {
      backing,
      dirty,
      statePath,
      start,
      choice,
      lifecycle: Promise.resolve(),
      stateWrites: Promise.resolve(),
      resyncTarget,
      delta,
      deltaGen: 0,
      resync: { running: false, again: false, done: 0, total: 0, runs: 0, mode: undefined, delta: undefined },
      resyncTask: undefined,
      acked: undefined,
      unackedTimes: [],
      capture: new DiskCapture(
        {
          diskId: d.id,
          backing,
          dirty,
          budget: this.budget,
          maxBatchBytes: o.maxBatchBytes ?? AGENT_DEFAULTS.maxBatchBytes,
          maxBatchDelayMs: o.maxBatchDelayMs ?? AGENT_DEFAULTS.maxBatchDelayMs,
          onSealed: (b) => this.onSealed(b),
          onResyncNeeded: (id) => this.scheduleResync(id),
        },
        position,
        { passthrough: !protect },
      ),
    };
    this.disks.set(d.id, rt);
    o.log.info({ disk: d.id, start, protected: protect, lineage: position.lineage, regionsToResync: protect ? dirty.needsResync() : 0, resyncTarget, deltaCursor: delta?.cursor }, 'disk opened');
  }

  private onSealed(b: SealedBatch): void {
    this.disks.get(b.diskId)?.unackedTimes.push(b.firstTime);
    this.sender.enqueue(b);
  }

  private onAck(b: SealedBatch): void {
    this.budget.give(b.held);
    const d = this.disks.get(b.diskId);
    if (!d) return;
    for (const [offset, length] of b.ranges) d.dirty.release(offset, length);
    d.unackedTimes.shift();
    d.acked = { lineage: b.lineage, lastSeq: b.lastSeq, at: Date.now() };
    this.acks.emit('ack', b.diskId);
  }

  private scheduleResync(diskId: string): void {
    const d = this.disks.get(diskId);
    if (!d || this.stopping || d.capture.mode === 'passthrough') return;
    if (d.resync.running) {
      d.resync.again = true;
      return;
    }
    d.resync.running = true;
    d.resyncTask = (async () => {
      try {
        do {
          d.resync.again = false;
          // Let the buffer drain first: a resync that starts full would overflow again at once.
          await this.budget.waitBelow(this.budget.limitBytes / 2);
          if (this.stopping || d.capture.mode === 'passthrough') return;
          d.resync.runs++;
          const result = d.resyncTarget && d.delta ? await this.deltaPass(diskId, d) : await this.copyPass(diskId, d);
          this.o.log.info({ disk: diskId, result, mode: d.resync.mode, lineage: d.capture.lineage }, 'resync pass ended');
          if (result === 'aborted') d.resync.again = true;
        } while (d.resync.again && !this.stopping && !this.isPassthrough(d));
      } catch (err) {
        this.o.log.error({ disk: diskId, error: errorMessage(err) }, 'resync failed');
      } finally {
        d.resync.running = false;
      }
    })();
  }

  /** Today's resync: every region that needs one is copied into the lineage. */
  private async copyPass(diskId: string, d: DiskRuntime): Promise<'done' | 'aborted'> {
    d.resync.mode = 'copy';
    d.resync.delta = undefined;
    d.resync.done = 0;
    d.resync.total = d.capture.regionBytesOf(d.dirty.regionsNeedingResync());
    this.o.log.info({ disk: diskId, regions: d.dirty.needsResync() }, 'resync started');
    return d.capture.resync({
      onProgress: (done, total) => {
        d.resync.done = done;
        d.resync.total = total;
      },
    });
  }

  /**
   * The delta resync (see delta-resync.ts): compares the disk with the replica at the MT and puts
   * only what differs into the lineage. Ends the pending delta resync when the MT has applied its
   * last batch; falls back to a region copy when the resync target cannot be used.
   */
  private async deltaPass(diskId: string, d: DiskRuntime): Promise<'done' | 'aborted'> {
    const target = d.resyncTarget!;
    const from = d.delta!;
    const gen = d.deltaGen;
    d.resync.mode = 'delta';
    this.o.log.info({ disk: diskId, target, cursor: from.cursor, regions: d.dirty.needsResync() }, 'delta resync started');
    const result = await deltaResyncPass({
      diskId,
      capture: d.capture,
      backing: d.backing,
      dirty: d.dirty,
      target,
      material: this.o.material,
      token: this.o.token,
      name: this.o.name,
      cursor: from.cursor,
      ...(this.o.resync ? { tuning: this.o.resync } : {}),
      // Called only while the pass may go on (checked just before, synchronously).
      saveCursor: async (cursor) => {
        if (d.deltaGen !== gen) return;
        d.delta = { lineage: d.capture.lineage, cursor };
        await this.saveState(d);
      },
      progress: (p) => {
        d.resync.delta = p;
        d.resync.done = p.done;
        d.resync.total = p.total;
      },
      log: (level, msg, fields) => this.o.log[level](fields ?? {}, msg),
    });
    if (result === 'aborted' || d.deltaGen !== gen) return 'aborted';
    if (result === 'done' || result === 'copied') {
      // The record goes first; only then may the bits clear on the PS's acknowledgement alone.
      d.delta = undefined;
      await this.saveState(d);
      d.dirty.holdUntilApplied(false);
    } else {
      // finished-unconfirmed: the record and the bits stay until a later pass settles them.
      this.o.log.warn({ disk: diskId }, 'delta resync finished; the master target has not confirmed it yet');
    }
    return 'done';
  }

  private timedBookmarks(): void {
    for (const [id, d] of this.disks) {
      if (d.capture.mode !== 'replicating' || d.dirty.needsResync() > 0) continue;
      try {
        d.capture.bookmark('crash');
      } catch (err) {
        this.o.log.warn({ disk: id, error: errorMessage(err) }, 'timed bookmark skipped');
      }
    }
  }

  private async flushDirtyMaps(): Promise<void> {
    for (const d of this.disks.values()) await d.dirty.flush().catch((err) => this.o.log.warn({ error: errorMessage(err) }, 'dirty map flush failed'));
  }

  /** A method, so TypeScript does not narrow the mode across the awaits of a resync pass. */
  private isPassthrough(d: DiskRuntime): boolean {
    return d.capture.mode === 'passthrough';
  }

  private requireDisk(diskId: string): DiskRuntime {
    const d = this.disks.get(diskId);
    if (!d) throw new BoomerangError('UNKNOWN_DISK', `agent ${this.o.name} has no disk ${diskId}`);
    return d;
  }

  /** The ids of the disks this agent serves, protected or not. */
  diskIds(): string[] {
    return [...this.disks.keys()];
  }

  /** Takes a bookmark on one disk (or every disk) — "on request" consistency points. */
  bookmark(diskId: string, kind: BookmarkKind = 'crash', id?: string): Bookmark & { lineage: LineageId } {
    const d = this.requireDisk(diskId);
    const b = d.capture.bookmark(kind, id);
    return { ...b, lineage: d.capture.lineage };
  }

  /** Runs `fn` after every earlier protect/unprotect of the disk has settled. */
  private serial<T>(d: DiskRuntime, fn: () => Promise<T>): Promise<T> {
    const result = d.lifecycle.then(fn);
    d.lifecycle = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /**
   * Writes the disk's state as it is now (position, choice, resync target, pending delta resync),
   * one write at a time: a later call always writes what is current when its turn comes.
   */
  private saveState(d: DiskRuntime, options: { clean?: boolean } = {}): Promise<void> {
    const write = d.stateWrites.then(() => {
      const passthrough = d.capture.mode === 'passthrough';
      return writeDiskState(d.statePath, {
        lineage: d.capture.lineage,
        lastSeq: d.capture.lastSeq,
        clean: options.clean ?? false,
        ...(d.choice === undefined ? {} : { protected: d.choice }),
        ...(passthrough ? { passthrough: true } : {}),
        ...(d.resyncTarget ? { resyncTarget: d.resyncTarget } : {}),
        ...(d.delta && !passthrough ? { resync: d.delta } : {}),
      });
    });
    d.stateWrites = write.catch(() => undefined);
    return write;
  }

  /**
   * Starts replicating a disk served in passthrough: persists the choice, marks every region as
   * needing a resync, switches capture on in a new lineage and schedules the whole-region resync
   * (its last batch carries the lineage's first recovery point). Writes that started before the
   * switch hold their range lock until they reach the backing disk, so the resync read of their
   * region sees them. Idempotent: on a protected disk it returns the current lineage — unless
   * `newLineage` is set: then a protected disk starts over too (new lineage, every region
   * resynced), as a direction change needs; calling it again restarts that resync.
   *
   * `resyncTarget` is the master target's resync endpoint for the disk (the CS passes it when the
   * MT reported one): the resync then compares the disk with the replica and sends only what
   * differs (delta resync); without it every region is copied. It is remembered with the state.
   */
  protectDisk(diskId: string, options: { newLineage?: boolean; resyncTarget?: Endpoint } = {}): Promise<{ lineage: LineageId }> {
    const d = this.requireDisk(diskId);
    return this.serial(d, async () => {
      if (this.stopping) throw new BoomerangError('AGENT_STOPPING', `agent ${this.o.name} is stopping`, { retryable: true });
      if (d.capture.mode !== 'passthrough' && options.newLineage !== true) {
        const target = options.resyncTarget;
        const targetChanged = target !== undefined && (target.host !== d.resyncTarget?.host || target.port !== d.resyncTarget?.port);
        if (d.choice !== true || targetChanged) {
          d.choice = true;
          if (target) d.resyncTarget = { host: target.host, port: target.port };
          await this.saveState(d);
        }
        return { lineage: d.capture.lineage };
      }
      // The switch and the marking of every region happen in one synchronous step, so a resync
      // pass can only start with every region in its list. Until the state below is written, a
      // crash leaves the old state (passthrough, or a lineage this call replaces): the next run
      // resyncs from that, and the caller, whose call did not return, calls again.
      const lineage = newLineage();
      d.capture.protect(lineage, { restart: true });
      const marked = d.dirty.markAll(); // marks synchronously, then makes the map durable
      d.choice = true;
      d.resyncTarget = options.resyncTarget ? { host: options.resyncTarget.host, port: options.resyncTarget.port } : undefined;
      // With a resync target the whole disk is compared from its start (a delta resync).
      d.delta = d.resyncTarget ? { lineage, cursor: 0 } : undefined;
      d.deltaGen++;
      d.dirty.holdUntilApplied(d.delta !== undefined);
      await marked;
      await this.saveState(d);
      d.resync.done = 0;
      d.resync.total = d.capture.size;
      this.scheduleResync(diskId);
      this.o.log.info({ disk: diskId, lineage, regions: d.dirty.needsResync(), resyncTarget: d.resyncTarget }, 'disk protected: resync scheduled');
      return { lineage };
    });
  }

  /**
   * Stops replicating a disk: capture switches to passthrough at once (later writes are not
   * sent, a resync under way stops), what was captured is sealed, protected=false is persisted,
   * then it waits up to `timeoutMs` for the disk's batches to be acknowledged by the PS.
   * `drained` says whether every write made before the switch reached the PS. Idempotent.
   */
  unprotectDisk(diskId: string, timeoutMs: number): Promise<{ drained: boolean }> {
    const d = this.requireDisk(diskId);
    return this.serial(d, async () => {
      const was = d.capture.mode;
      d.capture.unprotect();
      // Protecting it again resyncs the whole disk: no delta resync stays pending.
      d.delta = undefined;
      d.deltaGen++;
      d.dirty.holdUntilApplied(false);
      if (was !== 'passthrough' || d.choice !== false) {
        d.choice = false;
        await this.saveState(d);
        if (was !== 'passthrough') this.o.log.info({ disk: diskId, lineage: d.capture.lineage, lastSeq: d.capture.lastSeq }, 'disk unprotected: passthrough');
      }
      return { drained: await this.waitDiskAcked(d, timeoutMs) };
    });
  }

  /** Resolves true once no batch of the disk is waiting for the PS's acknowledgement, false on timeout. */
  private waitDiskAcked(d: DiskRuntime, timeoutMs: number): Promise<boolean> {
    if (d.unackedTimes.length === 0) return Promise.resolve(true);
    const diskId = d.capture.name;
    return new Promise((resolve) => {
      const onAck = (id: string) => {
        if (id !== diskId || d.unackedTimes.length > 0) return;
        done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (v: boolean) => {
        clearTimeout(timer);
        this.acks.off('ack', onAck);
        resolve(v);
      };
      this.acks.on('ack', onAck);
    });
  }

  /**
   * Waits until everything captured so far — including a resync under way — is acknowledged by
   * the PS. False on timeout.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    try {
      for (const d of this.disks.values()) {
        if (d.resyncTask && (await Promise.race([d.resyncTask, timeout])) === 'timeout') return false;
      }
    } finally {
      clearTimeout(timer);
    }
    for (const d of this.disks.values()) d.capture.seal();
    return this.sender.drain(Math.max(0, deadline - Date.now()));
  }

  status() {
    const now = Date.now();
    return {
      name: this.o.name,
      connected: this.sender.connected,
      lastError: this.sender.lastError,
      buffer: { usedBytes: this.budget.used, limitBytes: this.budget.limitBytes },
      pending: this.sender.pending(),
      sender: { ...this.sender.stats, reconnects: this.sender.reconnects },
      disks: Object.fromEntries(
        [...this.disks].map(([id, d]) => {
          const prot = d.capture.mode !== 'passthrough';
          return [
            id,
            {
              size: d.capture.size,
              start: d.start,
              protected: prot,
              mode: d.capture.mode,
              lineage: d.capture.lineage,
              lastSeq: d.capture.lastSeq,
              acked: d.acked,
              resyncRequired: prot && (d.dirty.needsResync() > 0 || d.capture.mode !== 'replicating'),
              regionsToResync: prot ? d.dirty.needsResync() : 0,
              dirtyRegions: d.dirty.dirtyRegions(),
              resync: d.resync,
              resyncTarget: d.resyncTarget,
              deltaResync: d.delta,
              rpoMs: d.unackedTimes.length > 0 ? now - d.unackedTimes[0]! : 0,
              stats: d.capture.stats,
            },
          ];
        }),
      ),
    };
  }

  /** The agent section of a heartbeat to the configuration server. */
  healthReport() {
    const now = Date.now();
    return {
      agent: {
        disks: [...this.disks].map(([diskId, d]) => {
          const prot = d.capture.mode !== 'passthrough';
          return {
            diskId,
            protected: prot,
            lineage: d.capture.lineage,
            lastSeq: d.capture.lastSeq,
            ackedSeq: d.acked?.lineage === d.capture.lineage ? d.acked.lastSeq : 0,
            rpoSeconds: d.unackedTimes.length > 0 ? (now - d.unackedTimes[0]!) / 1000 : 0,
            resyncRequired: prot && (d.dirty.needsResync() > 0 || d.capture.mode !== 'replicating'),
            // Progress in bytes, while a resync runs (or waits to start).
            ...(d.resync.running ? { resyncDone: Math.min(d.resync.done, d.resync.total), resyncTotal: d.resync.total } : {}),
          };
        }),
      },
    };
  }

  private async startControl(endpoint: Endpoint): Promise<void> {
    this.control = agentControlApi(this, { material: this.o.material, token: this.o.token, component: `agent ${this.o.name}` });
    this.controlEndpoint = await listenControl(this.control, endpoint);
  }

  /**
   * Clean stop: no new writes; each protected disk that is replicating (no resync pending) takes
   * a final crash-consistent bookmark `shutdown-<ISO time>`, so the master target's newest
   * recovery point is the disk exactly as it was at shutdown; everything captured is drained to
   * the PS, then the lineage and an empty dirty map are recorded so the next run continues
   * without a resync. If the drain times out the state stays "unclean" and the next run resyncs
   * the dirty regions instead. Disks in passthrough keep their state (they never continue).
   */
  async stop(options: { drainTimeoutMs?: number } = {}): Promise<AgentStopResult> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    await this.control?.close();
    await this.nbd?.close();
    // protect/unprotect calls under way finish first, so they cannot rewrite the state after us.
    await Promise.allSettled([...this.disks.values()].map((d) => d.lifecycle));
    const finalBookmarks: Record<string, string> = {};
    if (this.sender) {
      const id = `shutdown-${new Date().toISOString()}`;
      for (const [diskId, d] of this.disks) {
        if (d.capture.mode !== 'replicating' || d.dirty.needsResync() > 0 || d.resync.running) continue;
        try {
          finalBookmarks[diskId] = d.capture.bookmark('crash', id).id;
          this.o.log.info({ disk: diskId, bookmark: id, lineage: d.capture.lineage, seq: d.capture.lastSeq }, 'final bookmark taken');
        } catch (err) {
          this.o.log.warn({ disk: diskId, error: errorMessage(err) }, 'final bookmark skipped');
        }
      }
    }
    const drained = this.sender ? await this.drain(options.drainTimeoutMs ?? 30_000) : false;
    let clean = drained;
    // A resync pass still under way (the drain timed out) stops before its disk is closed.
    const passes: Promise<unknown>[] = [];
    for (const d of this.disks.values()) {
      if (!d.resyncTask || !d.resync.running) continue;
      clean = false;
      d.capture.stopPass();
      passes.push(d.resyncTask);
    }
    if (passes.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(passes), new Promise((resolve) => (timer = setTimeout(resolve, 5000)))]);
      clearTimeout(timer);
    }
    await this.sender?.stop();
    for (const d of this.disks.values()) {
      d.capture.close();
      const passthrough = d.capture.mode === 'passthrough';
      const ok = drained && d.capture.mode === 'replicating' && d.dirty.needsResync() === 0;
      await d.dirty.close();
      if (passthrough) {
        // Its state (passthrough, not clean) was written when it entered passthrough.
      } else if (ok && d.dirty.dirtyRegions() === 0) {
        // Every event is acknowledged, and (while a delta resync was pending) applied at the MT.
        d.delta = undefined;
        await this.saveState(d, { clean: true });
      } else {
        clean = false;
        await d.stateWrites;
      }
      await d.backing.close();
    }
    this.o.log.info({ clean, finalBookmarks }, 'agent stopped');
    return { clean, finalBookmarks };
  }
}
