import { setTimeout as sleep } from 'node:timers/promises';
import type { BlockDevice } from '../replication/disk.js';
import { BoomerangError, errorCode, errorMessage, ProtocolError } from '../replication/errors.js';
import { RESYNC_DEFAULTS, runResync, type ResyncProgress, type TargetHashClient } from '../replication/resync/engine.js';
import { newHashKey } from '../replication/resync/hashing.js';
import { resolveLayout, type ResyncLayout } from '../replication/resync/layout.js';
import { ResyncError } from '../replication/resync/errors.js';
import type { ResyncExtent, ResyncSink } from '../replication/resync/sink.js';
import { RemoteTarget } from '../replication/resync/target-client.js';
import type { Endpoint, TlsMaterial } from '../replication/transport.js';
import type { DiskCapture } from './capture.js';
import type { DirtyMap } from './dirty-map.js';

/**
 * The agent's delta resync: instead of copying every region into the new lineage, compare the
 * disk with the replica at the master target (the resync engine over a connection to the MT's
 * resync target) and put only the differing blocks into the lineage, through the capture's
 * ordered stream, so they reach the replica through the PS and the journal like any write.
 *
 * Durability: a checkpoint's flush seals the stream and waits until the MT has *applied* it (the
 * `wait` request of the resync protocol), not merely until the PS stored it; only then is the
 * cursor persisted. A resumed pass may therefore skip everything below the cursor — except the
 * regions whose dirty-map bit is set, which the dirty map keeps until the MT applied their events
 * while a delta resync is pending (`holdUntilApplied`).
 *
 * Ordering: the session's open carries a fence (the pass's lineage and a time after every batch
 * sealed before it): the MT drops every batch of an older lineage that is still on its way, so
 * nothing older can land on a range after the compare found it equal. Whatever such batches held
 * is covered either by the compare (above the cursor) or by the set bits (below it: those
 * regions are copied whole into the new lineage first).
 */

export interface DeltaResyncTuning {
  /** Flush (MT-applied) and persist a cursor after this many compared bytes. @default 256 MiB */
  checkpointBytes?: number;
  /** Compare requests in flight. @default 16 */
  windowBatches?: number;
  layout?: Partial<ResyncLayout>;
  /** How long the resync target may stay unreachable before the pass copies regions instead. @default 60 s */
  connectTimeoutMs?: number;
}

export const DELTA_DEFAULTS = Object.freeze({ connectTimeoutMs: 60_000 });

export interface DeltaPassOptions {
  diskId: string;
  capture: DiskCapture;
  /** The source disk (a file or a page blob), read through the BlockDevice interface. */
  backing: BlockDevice;
  dirty: DirtyMap;
  target: Endpoint;
  material: TlsMaterial;
  token: string;
  name: string;
  /** Where the compare resumes: everything below is equal on the replica (bits aside). */
  cursor: number;
  /** Persists the cursor (a checkpoint: everything below it is applied at the MT). */
  saveCursor(cursor: number): Promise<void>;
  tuning?: DeltaResyncTuning;
  progress(p: DeltaProgress): void;
  log(level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void;
}

export interface DeltaProgress {
  /** Bytes done (the cursor's bytes, regions copied, bytes compared) of `total`. */
  done: number;
  total: number;
  cursor: number;
  bytesCompared: number;
  bytesCopied: number;
  /** Differing bytes put into the stream (data and zero extents). */
  bytesChanged: number;
  /** Frame bytes of the compare connection(s), each way. */
  compareBytes: { sent: number; received: number };
  connects: number;
}

/**
 * - done: the lineage's resyncDone batch is applied at the MT; the caller ends the delta resync.
 * - finished-unconfirmed: the resyncDone batch is sealed, but the MT could not confirm it.
 * - copied: no resync target could be used, so the pass copied every region that needs a resync
 *   (today's resync, which proves the replica without a fence); its resyncDone batch is sealed.
 * - aborted: the pass must stop (overflow, unprotect, a new protection); another pass follows.
 */
export type DeltaPassResult = 'done' | 'finished-unconfirmed' | 'copied' | 'aborted';

function aborted(): BoomerangError {
  return new BoomerangError('RESYNC_ABORTED', 'the resync pass was stopped', { retryable: true });
}

/** Resolves or rejects like `p`, or rejects once `signal` aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(aborted());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(aborted());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** The sink of the agent's delta resync (see sink.ts: the contract for a live replication stream). */
class CaptureSink implements ResyncSink {
  constructor(
    private readonly capture: DiskCapture,
    private readonly dirty: DirtyMap,
    private readonly remote: RemoteTarget,
    private readonly epoch: number,
    private readonly signal: AbortSignal,
    private readonly changed: { bytes: number },
  ) {}

  async write(e: ResyncExtent): Promise<void> {
    // The engine's bytes may be stale: the capture reads the range again under its lock.
    await this.capture.captureResyncExtent(e.offset, e.length, this.epoch);
    this.changed.bytes += e.length;
  }

  /** Durable at the MT: sealed, then applied there (acknowledged by the PS is not enough). */
  async flush(): Promise<void> {
    const at = this.capture.sealPosition(this.epoch);
    if (!at) throw aborted();
    // Nothing in the lineage yet: nothing handed to the sink, nothing to wait for (the fence
    // keeps what the compare saw from being overwritten by anything older).
    if (at.lastSeq === 0) return;
    await abortable(this.remote.waitApplied(at.lineage, at.lastSeq), this.signal);
    if (this.capture.mustStop(this.epoch) || this.capture.lineage !== at.lineage) throw aborted();
    this.dirty.applied(at.lastSeq);
  }
}

/** Errors after which the same pass may reconnect and go on from its cursor, in the same lineage. */
function isTransient(err: unknown): boolean {
  if (err instanceof ResyncError || err instanceof ProtocolError) return false;
  const code = errorCode(err);
  if (code === 'RESYNC_SIZE_MISMATCH' || code === 'RESYNC_LAYOUT' || code === 'RESYNC_CURSOR' || code === 'AUTH_FAILED' || code === 'ROLE_REFUSED' || code === 'RESYNC_READ_ONLY') return false;
  return true;
}

/**
 * One pass of the delta resync (see the file comment). The caller has persisted the cursor the
 * pass starts from; the pass persists each new one through `saveCursor`. A lost connection is
 * retried in the same lineage from the last cursor (the stream keeps what the sink put in it).
 */
export async function deltaResyncPass(o: DeltaPassOptions): Promise<DeltaPassResult> {
  const { capture, dirty } = o;
  const pass = capture.beginResyncPass();
  if (!pass) return 'aborted';
  const { epoch, signal } = pass;
  const size = capture.size;
  const tuning = o.tuning ?? {};
  const connectTimeoutMs = tuning.connectTimeoutMs ?? DELTA_DEFAULTS.connectTimeoutMs;
  dirty.holdUntilApplied(true);
  let cursor = o.cursor;
  // Below the cursor, the set bits name the regions whose events the replica may not have (the
  // fence drops what an earlier lineage still has on its way): copied whole, after the fence.
  dirty.markSetBelow(cursor);
  const R = dirty.regionBytes;
  const toCopy = dirty.regionsNeedingResync().filter((r) => r * R < cursor);
  const copyTotal = capture.regionBytesOf(toCopy);
  let copiedRegions = 0;
  const stats = { bytesCopied: 0, changed: { bytes: 0 }, compare: { sent: 0, received: 0 }, connects: 0 };
  const start = cursor;
  let comparedTo = cursor; // the engine's progress: compared below this
  let finished: { lineage: string; lastSeq: number } | undefined;
  let live: RemoteTarget | undefined;
  const report = () => {
    const bytes = live?.bytes ?? { sent: 0, received: 0 };
    o.progress({
      done: Math.min(size, Math.max(cursor, comparedTo)) + stats.bytesCopied,
      total: size + copyTotal,
      cursor,
      bytesCompared: Math.max(cursor, comparedTo) - start,
      bytesCopied: stats.bytesCopied,
      bytesChanged: stats.changed.bytes,
      compareBytes: { sent: stats.compare.sent + bytes.sent, received: stats.compare.received + bytes.received },
      connects: stats.connects,
    });
  };
  report();

  // Without a usable resync target: every region that still needs a resync is copied.
  const fallBack = async (): Promise<DeltaPassResult> => {
    const regions = dirty.regionsNeedingResync();
    const total = capture.regionBytesOf(regions);
    let done = 0;
    const r = await capture.copyRegions(regions, epoch, { signal, onRegion: (bytes) => o.progress({ done: (done += bytes), total, cursor, bytesCompared: 0, bytesCopied: stats.bytesCopied + done, bytesChanged: stats.changed.bytes, compareBytes: stats.compare, connects: stats.connects }) });
    if (r === 'aborted' || !capture.finishResyncPass(epoch)) return 'aborted';
    return 'copied';
  };

  let failingSince: number | undefined;
  let backoffMs = 250;
  const retryOrGiveUp = async (what: string, err: unknown): Promise<boolean> => {
    failingSince ??= Date.now();
    if (Date.now() - failingSince >= connectTimeoutMs) return false;
    o.log('warn', `${what}: retrying`, { disk: o.diskId, target: o.target, cursor, error: errorMessage(err) });
    await sleep(backoffMs, undefined, { signal }).catch(() => undefined);
    backoffMs = Math.min(backoffMs * 2, 5000);
    return true;
  };

  for (;;) {
    if (capture.mustStop(epoch)) return 'aborted';
    let remote: RemoteTarget;
    try {
      const connecting = RemoteTarget.connect(o.target, o.material, o.token, `${o.name}/${o.diskId}`);
      connecting.then((r) => signal.aborted && void r.close().catch(() => undefined)).catch(() => undefined);
      remote = await abortable(connecting, signal);
    } catch (err) {
      if (capture.mustStop(epoch)) return 'aborted';
      if (await retryOrGiveUp('resync target not reachable', err)) continue;
      o.log('warn', 'resync target unreachable', { disk: o.diskId, target: o.target, finished: finished !== undefined, error: errorMessage(err) });
      return finished ? 'finished-unconfirmed' : await fallBack();
    }
    stats.connects++;
    live = remote;
    comparedTo = cursor;
    const fence = () => {
      if (capture.mustStop(epoch)) throw aborted();
      return { lineage: capture.lineage, time: capture.fenceTime() };
    };
    try {
      if (!finished) {
        // The engine opens the session; the fence goes with it, and the regions to copy are
        // copied once the MT holds the fence, before the first compare.
        const client: TargetHashClient = {
          open: async (request) => {
            const reply = await remote.open({ ...request, fence: fence() });
            failingSince = undefined;
            backoffMs = 250;
            if (copiedRegions < toCopy.length) {
              const r = await capture.copyRegions(toCopy.slice(copiedRegions), epoch, {
                signal,
                onRegion: (bytes) => {
                  copiedRegions++;
                  stats.bytesCopied += bytes;
                  report();
                },
              });
              if (r === 'aborted') throw aborted();
            }
            return reply;
          },
          compare: (request) => remote.compare(request),
          refine: (request) => remote.refine(request),
        };
        const result = await runResync({
          diskId: o.diskId,
          source: o.backing,
          remote: client,
          sink: new CaptureSink(capture, dirty, remote, epoch, signal, stats.changed),
          cursor: { offset: cursor },
          signal,
          ...(tuning.layout ? { layout: tuning.layout } : {}),
          ...(tuning.windowBatches !== undefined ? { windowBatches: tuning.windowBatches } : {}),
          ...(tuning.checkpointBytes !== undefined ? { checkpointBytes: tuning.checkpointBytes } : {}),
          onProgress: (p: ResyncProgress) => {
            comparedTo = size - p.bytesTotal + p.bytesCompared; // the run started at size - bytesTotal
            report();
          },
          onCursor: async (c) => {
            // Everything below c is compared and its differences are applied at the MT.
            if (capture.mustStop(epoch)) throw aborted();
            for (let r = Math.floor(cursor / R); r < dirty.regions && (r + 1) * R <= c.offset; r++) dirty.covered(r);
            if (c.offset >= size) for (let r = Math.floor(cursor / R); r < dirty.regions; r++) dirty.covered(r);
            await dirty.flush(); // the bits first: a cursor must never claim what the map still needs
            if (capture.mustStop(epoch)) throw aborted();
            cursor = c.offset;
            await o.saveCursor(cursor);
            report();
          },
        });
        if (!result.completed) return 'aborted';
        // The batch that completes the resync carries the lineage's first recovery point.
        if (!capture.finishResyncPass(epoch)) return 'aborted';
        finished = { lineage: capture.lineage, lastSeq: capture.lastSeq };
        o.log('info', 'delta resync compared the disk', { disk: o.diskId, lineage: finished.lineage, bytesChanged: stats.changed.bytes, bytesCopied: stats.bytesCopied, compare: remote.bytes });
      } else {
        // A new session only to hear that the end of the resync is applied.
        await remote.open({ diskId: o.diskId, sourceSize: size, layout: resolveLayout(tuning.layout), hash: RESYNC_DEFAULTS.hash, key: newHashKey(RESYNC_DEFAULTS.hash), allowLargerTarget: false, fence: fence() });
      }
      await abortable(remote.waitApplied(finished.lineage, finished.lastSeq), signal);
      if (capture.lineage !== finished.lineage) return 'aborted';
      dirty.applied(finished.lastSeq);
      return 'done';
    } catch (err) {
      if (capture.mustStop(epoch) || errorCode(err) === 'RESYNC_ABORTED') return 'aborted';
      if (!isTransient(err)) {
        o.log('warn', 'delta resync refused', { disk: o.diskId, error: errorMessage(err), code: errorCode(err) });
        return finished ? 'finished-unconfirmed' : await fallBack();
      }
      if (!(await retryOrGiveUp('delta resync interrupted', err))) return finished ? 'finished-unconfirmed' : await fallBack();
    } finally {
      const b = remote.bytes;
      stats.compare.sent += b.sent;
      stats.compare.received += b.received;
      live = undefined;
      await remote.close().catch(() => undefined);
    }
  }
}
