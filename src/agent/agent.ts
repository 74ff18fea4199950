import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BookmarkKind, Bookmark } from '../replication/batch.js';
import { FileDisk } from '../replication/disk.js';
import { BoomerangError, errorMessage } from '../replication/errors.js';
import { newLineage, type LineageId } from '../replication/position.js';
import type { Endpoint, TlsMaterial } from '../replication/transport.js';
import type { Logger } from '../runtime/log.js';
import { createControlApi, listenControl } from '../runtime/control.js';
import { NbdServer } from './nbd/server.js';
import { BufferBudget } from './budget.js';
import { DiskCapture, type SealedBatch } from './capture.js';
import { DirtyMap } from './dirty-map.js';
import { PsSender } from './sender.js';
import { readDiskState, writeDiskState } from './state.js';

export interface AgentDiskConfig {
  id: string;
  path: string;
  /** Create the backing file (sparse) with this size if it does not exist. */
  sizeBytes?: number;
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
  backing: FileDisk;
  dirty: DirtyMap;
  statePath: string;
  /** How this run began: continuing a lineage after a clean stop, or resyncing. */
  start: 'continued' | 'initial' | 'crash-recovery';
  resync: { running: boolean; again: boolean; done: number; total: number; runs: number };
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
  private control: ReturnType<typeof createControlApi> | undefined;
  controlEndpoint: Endpoint | undefined;
  private stopping = false;

  private constructor(private readonly o: AgentOptions) {
    this.budget = new BufferBudget(o.bufferBytes ?? AGENT_DEFAULTS.bufferBytes);
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
    for (const [id, d] of this.disks) if (d.dirty.needsResync() > 0) this.scheduleResync(id);
    const every = o.bookmarkIntervalMs ?? AGENT_DEFAULTS.bookmarkIntervalMs;
    if (every > 0) this.timers.push(setInterval(() => this.timedBookmarks(), every));
    this.timers.push(setInterval(() => void this.flushDirtyMaps(), 5000));
    if (o.control) await this.startControl(o.control);
    o.log.info({ disks: [...this.disks.keys()], nbd: o.nbdSocket, control: this.controlEndpoint }, 'agent started');
  }

  private async openDisk(d: AgentDiskConfig): Promise<void> {
    const o = this.o;
    const backing = await FileDisk.open(d.path, d.sizeBytes === undefined ? {} : { size: d.sizeBytes, create: true });
    const { map: dirty, existed } = await DirtyMap.open(join(o.stateDir, `${d.id}.dirty`), backing.size, o.regionBytes ?? AGENT_DEFAULTS.regionBytes);
    const statePath = join(o.stateDir, `${d.id}.state`);
    const state = await readDiskState(statePath);
    let start: DiskRuntime['start'];
    let position: { lineage: LineageId; lastSeq: number };
    if (state && existed && state.clean && dirty.dirtyRegions() === 0) {
      start = 'continued';
      position = { lineage: state.lineage, lastSeq: state.lastSeq };
    } else if (state && existed) {
      // Unclean stop: what was buffered is gone, continuity cannot be proven. The persisted
      // write-intent bits bound what may differ on the replica.
      start = 'crash-recovery';
      for (const r of dirty.persistedRegions()) dirty.markRegion(r);
      position = { lineage: newLineage(), lastSeq: 0 };
    } else {
      start = 'initial';
      await dirty.markAll();
      position = { lineage: newLineage(), lastSeq: 0 };
    }
    await writeDiskState(statePath, { ...position, clean: false });
    const rt: DiskRuntime = {
      backing,
      dirty,
      statePath,
      start,
      resync: { running: false, again: false, done: 0, total: 0, runs: 0 },
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
      ),
    };
    this.disks.set(d.id, rt);
    o.log.info({ disk: d.id, start, lineage: position.lineage, regionsToResync: dirty.needsResync() }, 'disk opened');
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
  }

  private scheduleResync(diskId: string): void {
    const d = this.disks.get(diskId);
    if (!d || this.stopping) return;
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
          if (this.stopping) return;
          d.resync.runs++;
          this.o.log.info({ disk: diskId, regions: d.dirty.needsResync() }, 'resync started');
          const result = await d.capture.resync({
            onProgress: (done, total) => {
              d.resync.done = done;
              d.resync.total = total;
            },
          });
          this.o.log.info({ disk: diskId, result, lineage: d.capture.lineage }, 'resync pass ended');
          if (result === 'aborted') d.resync.again = true;
        } while (d.resync.again && !this.stopping);
      } catch (err) {
        this.o.log.error({ disk: diskId, error: errorMessage(err) }, 'resync failed');
      } finally {
        d.resync.running = false;
      }
    })();
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

  /** Takes a bookmark on one disk (or every disk) — "on request" consistency points. */
  bookmark(diskId: string, kind: BookmarkKind = 'crash', id?: string): Bookmark & { lineage: LineageId } {
    const d = this.disks.get(diskId);
    if (!d) throw new BoomerangError('UNKNOWN_DISK', `agent ${this.o.name} has no disk ${diskId}`);
    const b = d.capture.bookmark(kind, id);
    return { ...b, lineage: d.capture.lineage };
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
        [...this.disks].map(([id, d]) => [
          id,
          {
            size: d.capture.size,
            start: d.start,
            mode: d.capture.mode,
            lineage: d.capture.lineage,
            lastSeq: d.capture.lastSeq,
            acked: d.acked,
            resyncRequired: d.dirty.needsResync() > 0 || d.capture.mode !== 'replicating',
            regionsToResync: d.dirty.needsResync(),
            dirtyRegions: d.dirty.dirtyRegions(),
            resync: d.resync,
            rpoMs: d.unackedTimes.length > 0 ? now - d.unackedTimes[0]! : 0,
            stats: d.capture.stats,
          },
        ]),
      ),
    };
  }

  /** The agent section of a heartbeat to the configuration server. */
  healthReport() {
    const now = Date.now();
    return {
      agent: {
        disks: [...this.disks].map(([diskId, d]) => ({
          diskId,
          lineage: d.capture.lineage,
          lastSeq: d.capture.lastSeq,
          ackedSeq: d.acked?.lineage === d.capture.lineage ? d.acked.lastSeq : 0,
          rpoSeconds: d.unackedTimes.length > 0 ? (now - d.unackedTimes[0]!) / 1000 : 0,
          resyncRequired: d.dirty.needsResync() > 0 || d.capture.mode !== 'replicating',
        })),
      },
    };
  }

  private async startControl(endpoint: Endpoint): Promise<void> {
    const app = createControlApi({ material: this.o.material, token: this.o.token, component: `agent ${this.o.name}` });
    app.get('/status', async () => this.status());
    app.post<{ Params: { disk: string }; Body: { kind?: BookmarkKind; id?: string } | undefined }>(
      '/disks/:disk/bookmarks',
      {
        schema: {
          body: {
            type: ['object', 'null'],
            additionalProperties: false,
            properties: { kind: { type: 'string', enum: ['crash', 'app', 'group'] }, id: { type: 'string', minLength: 1, maxLength: 64 } },
          },
        },
      },
      async (req) => this.bookmark(req.params.disk, req.body?.kind ?? 'crash', req.body?.id),
    );
    app.post<{ Querystring: { timeoutMs?: number } }>(
      '/drain',
      { schema: { querystring: { type: 'object', properties: { timeoutMs: { type: 'integer', minimum: 0, maximum: 3_600_000 } } } } },
      async (req) => ({ drained: await this.drain(req.query.timeoutMs ?? 30_000) }),
    );
    this.control = app;
    this.controlEndpoint = await listenControl(app, endpoint);
  }

  /**
   * Clean stop: no new writes, everything captured drained to the PS, then the lineage and an
   * empty dirty map are recorded so the next run continues without a resync. If the drain
   * times out the state stays "unclean" and the next run resyncs the dirty regions instead.
   */
  async stop(options: { drainTimeoutMs?: number } = {}): Promise<{ clean: boolean }> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    await this.control?.close();
    await this.nbd?.close();
    const drained = this.sender ? await this.drain(options.drainTimeoutMs ?? 30_000) : false;
    await this.sender?.stop();
    let clean = drained;
    for (const d of this.disks.values()) {
      d.capture.close();
      const ok = drained && d.capture.mode === 'replicating' && d.dirty.needsResync() === 0;
      await d.dirty.close();
      if (ok && d.dirty.dirtyRegions() === 0) await writeDiskState(d.statePath, { lineage: d.capture.lineage, lastSeq: d.capture.lastSeq, clean: true });
      else clean = false;
      await d.backing.close();
    }
    this.o.log.info({ clean }, 'agent stopped');
    return { clean };
  }
}
