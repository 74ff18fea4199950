import type { PageBlobClient } from '@azure/storage-blob';
import { PageBlobChangeSource, type ChangeRound } from '../fabrics/azure/page-blob-changes.js';
import { BoomerangError, errorMessage } from '../replication/errors.js';
import { newLineage, type LineageId } from '../replication/position.js';
import type { Logger } from '../runtime/log.js';
import type { PsChannel } from './ps-channel.js';
import { RoundBatcher } from './round-batcher.js';
import { readAgentlessState, statePath, writeAgentlessState, type AgentlessDiskState } from './state.js';

/** One cloud disk the runner replicates. */
export interface AgentlessDisk {
  /** Disk id at the PS and MT (the MT must have a replica of this id and the blob's size). */
  id: string;
  /** The page blob (the live disk, not a snapshot). */
  blob: PageBlobClient;
  /** Time from the start of one round to the start of the next; 0: rounds only on request. */
  intervalMs: number;
  /** The service's diff reports cleared ranges (Azure); false for Azurite (see ChangeSourceOptions). */
  diffReportsClears?: boolean;
}

/** What the replicator needs from the runner. */
export interface ReplicatorContext {
  stateDir: string;
  channel: PsChannel;
  maxBatchBytes: number;
  /** How long a round may wait for room or acknowledgements before it is abandoned. */
  roundTimeoutMs: number;
  maxInFlight: number;
  log: Logger;
}

/** One round's figures. */
export interface RoundReport {
  snapshot: string;
  /** The round had no base: the whole disk was sent. */
  full: boolean;
  lineage: LineageId;
  firstSeq: number;
  lastSeq: number;
  /** The bookmark that ends the round (the MT's recovery point). */
  bookmarkId: string;
  /** Payload bytes sent (data extents). */
  dataBytes: number;
  /** Bytes sent as zero extents (no payload). */
  zeroBytes: number;
  batches: number;
  durationMs: number;
}

/** A disk's status for logs and the runner's status. */
export interface DiskStatus {
  id: string;
  base: string | undefined;
  lineage: LineageId;
  lastAckedSeq: number;
  consistent: boolean;
  rounds: number;
  failures: number;
  lastRound: RoundReport | undefined;
  lastError: string | undefined;
  unackedBatches: number;
}

/** The bookmark id of a round: names its snapshot, so a recovery point can be traced to it. */
export function roundBookmarkId(snapshot: string): string {
  return `agentless-${snapshot}`;
}

/**
 * Replicates one page blob in rounds: each round snapshots the blob, sends the extents changed
 * since the base snapshot as batches of the disk's lineage (through the shared channel, as an
 * agent sends captured writes), ends with a crash-consistent bookmark, waits until the PS has
 * acknowledged every batch, and only then persists the snapshot as the new base and commits the
 * round. A round that fails is abandoned (its snapshot deleted, the base kept); the batches it
 * already handed over stay in the sender and are delivered, and the next round continues the
 * lineage after them — it diffs from the same base, so it covers every page they touched.
 */
export class DiskReplicator {
  private source: PageBlobChangeSource;
  private lineage: LineageId;
  /** Next sequence number to hand out (everything before it may be on its way). */
  private nextSeq: number;
  private ackedSeq: number;
  private consistent: boolean;
  /** The state file says batches past ackedSeq may be at the PS. */
  private roundOpen = false;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly counters = { rounds: 0, failures: 0 };
  private lastRound: RoundReport | undefined;
  private lastError: string | undefined;

  private constructor(
    readonly disk: AgentlessDisk,
    private readonly ctx: ReplicatorContext,
    state: AgentlessDiskState | undefined,
  ) {
    this.source = this.changeSource(state?.base);
    if (state && !state.roundOpen) {
      this.lineage = state.lineage;
      this.ackedSeq = state.lastSeq;
      this.consistent = state.consistent;
    } else {
      // No state, or a run that ended mid-round: which of its batches reached the PS is unknown.
      this.lineage = newLineage();
      this.ackedSeq = 0;
      this.consistent = false;
    }
    this.nextSeq = this.ackedSeq + 1;
  }

  /** Reads the disk's state and finishes a commit a crash interrupted. */
  static async open(disk: AgentlessDisk, ctx: ReplicatorContext): Promise<DiskReplicator> {
    const state = await readAgentlessState(statePath(ctx.stateDir, disk.id));
    const r = new DiskReplicator(disk, ctx, state);
    if (state?.retire !== undefined) {
      await r.source.deleteSnapshot(state.retire);
      await r.persist();
    }
    ctx.log.info(
      { disk: disk.id, base: state?.base, lineage: r.lineage, continued: state !== undefined && !state.roundOpen, lastSeq: r.ackedSeq },
      state?.roundOpen ? 'agentless disk resumes in a new lineage (the last run ended mid-round)' : 'agentless disk opened',
    );
    return r;
  }

  status(): DiskStatus {
    return {
      id: this.disk.id,
      base: this.source.base,
      lineage: this.lineage,
      lastAckedSeq: this.ackedSeq,
      consistent: this.consistent,
      rounds: this.counters.rounds,
      failures: this.counters.failures,
      lastRound: this.lastRound,
      lastError: this.lastError,
      unackedBatches: this.ctx.channel.unackedOf(this.disk.id),
    };
  }

  /** Runs one round after any round under way. Rejects (the round abandoned) on failure. */
  round(signal?: AbortSignal): Promise<RoundReport> {
    const next = this.chain.then(() => this.runRound(signal));
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Resolves once no round is under way (or queued). */
  async settled(): Promise<void> {
    await this.chain;
  }

  /** Rounds every intervalMs until `signal` aborts; a failed round is retried at the next interval. */
  async loop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const started = Date.now();
      await this.round(signal).catch(() => undefined); // logged by runRound
      const wait = Math.max(0, started + this.disk.intervalMs - Date.now());
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        function done() {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          resolve();
        }
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /**
   * After the runner's sender drained: every sequence number handed out is acknowledged, so the
   * state may say so and the next run continues the lineage.
   */
  async markDrained(): Promise<void> {
    await this.settled();
    if (this.ctx.channel.unackedOf(this.disk.id) > 0) return;
    this.ackedSeq = this.nextSeq - 1;
    if (this.roundOpen) {
      this.roundOpen = false;
      await this.persist();
    }
  }

  private async runRound(signal: AbortSignal | undefined): Promise<RoundReport> {
    const started = Date.now();
    const id = this.disk.id;
    let round: ChangeRound;
    try {
      if (signal?.aborted) throw new BoomerangError('ROUND_STOPPED', 'the runner is stopping');
      round = await this.source.nextRound();
    } catch (err) {
      await this.failed(err, undefined);
      throw err;
    }
    let committed = false;
    try {
      if (!this.roundOpen) {
        this.roundOpen = true;
        await this.persist();
      }
      const deadline = () => Date.now() + this.ctx.roundTimeoutMs;
      const firstSeq = this.nextSeq;
      const batcher = new RoundBatcher({ diskId: id, lineage: this.lineage, firstSeq, resync: !this.consistent, maxBatchBytes: this.ctx.maxBatchBytes });
      const sent = { dataBytes: 0, zeroBytes: 0, batches: 0 };
      const hand = async (b: ReturnType<RoundBatcher['finish']>) => {
        await this.ctx.channel.send(b, deadline(), signal);
        this.nextSeq = b.lastSeq + 1;
        sent.batches++;
      };
      for await (const e of round.extents()) {
        if (signal?.aborted) throw new BoomerangError('ROUND_STOPPED', 'the runner is stopping');
        if (e.data) sent.dataBytes += e.length;
        else sent.zeroBytes += e.length;
        const b = batcher.add(e);
        if (b) await hand(b);
      }
      const bookmarkId = roundBookmarkId(round.snapshot);
      const snapshotTime = Date.parse(round.snapshot);
      await hand(batcher.finish({ id: bookmarkId, time: Number.isFinite(snapshotTime) ? snapshotTime : Date.now() }));
      await this.ctx.channel.acknowledged(id, deadline(), signal);

      // Every batch is stored at the PS: the snapshot becomes the base, durably, before the old one goes.
      const retire = this.source.base;
      this.ackedSeq = this.nextSeq - 1;
      this.consistent = true;
      this.roundOpen = false;
      await this.persist({ base: round.snapshot, ...(retire === undefined ? {} : { retire }) });
      committed = true;
      try {
        await round.commit();
        if (retire !== undefined) await this.persist();
      } catch (err) {
        // The round is committed (the state names its snapshot); the old base is deleted at the next start.
        this.ctx.log.warn({ disk: id, retire, error: errorMessage(err) }, 'could not delete the previous base snapshot');
      }
      const report: RoundReport = {
        snapshot: round.snapshot,
        full: round.full,
        lineage: this.lineage,
        firstSeq,
        lastSeq: this.ackedSeq,
        bookmarkId,
        ...sent,
        durationMs: Date.now() - started,
      };
      this.counters.rounds++;
      this.lastRound = report;
      this.lastError = undefined;
      this.ctx.log.info({ disk: id, ...report, unackedBatches: 0 }, 'agentless round committed');
      return report;
    } catch (err) {
      await this.failed(err, committed ? undefined : round);
      throw err;
    }
  }

  private async failed(err: unknown, round: ChangeRound | undefined): Promise<void> {
    this.counters.failures++;
    this.lastError = errorMessage(err);
    if (round) await round.abandon().catch((e: unknown) => this.ctx.log.warn({ disk: this.disk.id, error: errorMessage(e) }, 'could not delete the abandoned round snapshot'));
    const base = this.source.base;
    if (base !== undefined && !(await this.snapshotExists(base))) {
      // Someone deleted the base: nothing to diff from, so the next round is full, in a new lineage.
      this.ctx.log.warn({ disk: this.disk.id, base }, 'the base snapshot is gone: the next round sends the whole disk in a new lineage');
      this.source = this.changeSource(undefined);
      this.lineage = newLineage();
      this.nextSeq = 1;
      this.ackedSeq = 0;
      this.consistent = false;
      this.roundOpen = false;
      await this.persist().catch(() => undefined);
    }
    this.ctx.log.warn({ disk: this.disk.id, error: this.lastError, code: (err as BoomerangError).code, base: this.source.base, nextSeq: this.nextSeq }, 'agentless round abandoned; retried at the next interval');
  }

  private async snapshotExists(snapshot: string): Promise<boolean> {
    try {
      return await this.disk.blob.withSnapshot(snapshot).exists();
    } catch {
      return true; // unknown: keep the base, the next round finds out
    }
  }

  private changeSource(base: string | undefined): PageBlobChangeSource {
    return new PageBlobChangeSource(this.disk.blob, {
      ...(base === undefined ? {} : { base }),
      maxInFlight: this.ctx.maxInFlight,
      ...(this.disk.diffReportsClears ? { diffReportsClears: true } : {}),
    });
  }

  private persist(extra: { base?: string; retire?: string } = {}): Promise<void> {
    const base = extra.base ?? this.source.base;
    const state: AgentlessDiskState = {
      lineage: this.lineage,
      lastSeq: this.ackedSeq,
      consistent: this.consistent,
      ...(base === undefined ? {} : { base }),
      ...(this.roundOpen ? { roundOpen: true } : {}),
      ...(extra.retire === undefined ? {} : { retire: extra.retire }),
    };
    return writeAgentlessState(statePath(this.ctx.stateDir, this.disk.id), state);
  }
}
