import { performance } from 'node:perf_hooks';
import type { BlockDevice } from '../disk.js';
import { BufferPool } from './buffer-pool.js';
import { SourceBatch, type BatchDifferences } from './compare.js';
import { createDigester, newHashKey, summariseRegions, type Digester, type HashSuite } from './hashing.js';
import { checkCursor, checkSizes, maxBatchesInFlight, resolveLayout, type ResyncLayout } from './layout.js';
import type { CompareRequest, DiffReply, OpenReply, OpenRequest, RefineReply, RefineRequest } from './messages.js';
import type { ResyncSink } from './sink.js';

/** The source engine's view of the target: its size, and what differs in a batch. */
export interface TargetHashClient {
  open(request: OpenRequest): Promise<OpenReply>;
  /** Many may be in flight; each resolves with the diff of its own request. */
  compare(request: CompareRequest): Promise<DiffReply>;
  /** Sent once the batch's diff (or previous refine) is in; resolves with the children asked for. */
  refine(request: RefineRequest): Promise<RefineReply>;
}

/** Everything below `offset` is compared and delivered durably (see ResyncSink.flush). */
export interface ResyncCursor {
  offset: number;
}

export interface ResyncProgress {
  /** Bytes of this run's range compared so far, and the size of that range. */
  bytesCompared: number;
  bytesTotal: number;
  /** Payload bytes handed to the sink (zero extents carry none). */
  bytesSent: number;
  bytesChanged: number;
  /** At this run's rate so far; undefined before the first batch. */
  etaMs: number | undefined;
}

export interface ResyncOptions {
  diskId: string;
  source: BlockDevice;
  remote: TargetHashClient;
  sink: ResyncSink;
  layout?: Partial<ResyncLayout>;
  hash?: HashSuite;
  /** Resume: start at this cursor (from onCursor of an earlier run) instead of offset 0. */
  cursor?: ResyncCursor;
  /** Compare only the first source-size bytes of a larger target (see checkSizes). */
  allowLargerTarget?: boolean;
  /**
   * Batches between their compare and their last refine: enough to cover the round trips at disk
   * speed. At most maxBatchesInFlight(layout), what a target keeps in memory.
   */
  windowBatches?: number;
  /** Source reads in flight ahead of hashing. */
  readAhead?: number;
  /** Flush and report a cursor after at least this many bytes (and at the end). */
  checkpointBytes?: number;
  /** Stops issuing reads; what is in flight is finished and flushed, and the run returns incomplete. */
  signal?: AbortSignal;
  onProgress?(progress: ResyncProgress): void;
  progressIntervalMs?: number;
  /**
   * Called after each flush, in order, with everything below the cursor durable. The run goes on
   * meanwhile, but no further than the next checkpoint until this resolves.
   */
  onCursor?(cursor: ResyncCursor): void | Promise<void>;
}

export interface ResyncResult {
  /** False when stopped by the signal; the cursor says where to resume. */
  completed: boolean;
  cursor: ResyncCursor;
  targetSize: number;
  bytesCompared: number;
  /** Bytes of the blocks that differ (data and zero extents). */
  bytesChanged: number;
  /** Payload bytes handed to the sink. */
  bytesSent: number;
  /** Bytes made zero on the target without payload. */
  zeroBytes: number;
  blocksDifferent: number;
  regionsDifferent: number;
  elapsedMs: number;
}

export const RESYNC_DEFAULTS = Object.freeze({
  hash: 'gmac-aes128' as HashSuite,
  windowBatches: 16,
  readAhead: 2,
  checkpointBytes: 256 * 1024 * 1024,
  progressIntervalMs: 250,
});

interface InFlight {
  req: CompareRequest;
  buf: Buffer;
  differences: Promise<BatchDifferences>;
}

const noop = () => undefined;

/**
 * The delta resync of one disk, run by the side that has the source disk. Reads the source
 * batch by batch, sends each batch's region summary to the target (which answers with what
 * differs), refines differing regions to blocks and hands the differing blocks to the sink.
 * One pipeline keeps the disk, the CPU and the network busy together: `readAhead` reads are in
 * flight while a batch is hashed, `windowBatches` compares are in flight while diffs are
 * consumed, and the sink's writes run while the next batches are read. Memory is bounded by
 * (windowBatches + readAhead + 2) batch buffers.
 *
 * Resumable: after every `checkpointBytes` the sink is flushed and `onCursor` is told how far
 * everything is delivered; a run started with that cursor skips what is before it. Work after
 * the cursor may be redone by the resumed run, never lost: the target already holding some of
 * it only means fewer differences.
 */
export async function runResync(o: ResyncOptions): Promise<ResyncResult> {
  const t0 = performance.now();
  const layout = resolveLayout(o.layout);
  const start = checkCursor(o.cursor?.offset ?? 0, o.source.size, layout);
  const window = Math.min(maxBatchesInFlight(layout), Math.max(1, o.windowBatches ?? RESYNC_DEFAULTS.windowBatches));
  const readAhead = Math.max(1, o.readAhead ?? RESYNC_DEFAULTS.readAhead);
  const checkpointBytes = o.checkpointBytes ?? RESYNC_DEFAULTS.checkpointBytes;
  const progressIntervalMs = o.progressIntervalMs ?? RESYNC_DEFAULTS.progressIntervalMs;
  const suite = o.hash ?? RESYNC_DEFAULTS.hash;
  const key = newHashKey(suite);
  const digester = createDigester(suite, key);
  const allowLargerTarget = o.allowLargerTarget ?? false;

  const { targetSize } = await o.remote.open({ diskId: o.diskId, sourceSize: o.source.size, layout, hash: suite, key, allowLargerTarget });
  const end = checkSizes(o.source.size, targetSize, allowLargerTarget);

  const pool = new BufferPool(window + readAhead + 2, layout.batchBytes);
  const reads: Promise<{ offset: number; length: number; buf: Buffer }>[] = [];
  const inflight: InFlight[] = [];
  let pendingWrites: Promise<void>[] = [];
  let writeFailure: unknown;
  let next = start; // the next batch to read
  let compared = start; // every batch below: compared, extents handed to the sink
  let durable = start; // every batch below: flushed by the sink (the cursor)
  let id = 0;
  let lastProgress = -Infinity;
  const stats = { bytesChanged: 0, bytesSent: 0, zeroBytes: 0, blocksDifferent: 0, regionsDifferent: 0 };
  const stopping = () => o.signal?.aborted === true;

  const issueRead = () => {
    const offset = next;
    const length = Math.min(layout.batchBytes, end - offset);
    next += length;
    const read = pool.take().then(async (buf) => {
      await o.source.readInto(buf.subarray(0, length), offset);
      return { offset, length, buf };
    });
    read.catch(noop); // awaited in order by the loop
    reads.push(read);
  };

  const consume = async (item: InFlight) => {
    const d = await item.differences;
    stats.bytesChanged += d.bytesChanged;
    stats.blocksDifferent += d.blocksDifferent;
    stats.regionsDifferent += d.regionsDifferent;
    const writes: Promise<void>[] = [];
    for (const e of d.extents) {
      if (e.data) stats.bytesSent += e.length;
      else stats.zeroBytes += e.length;
      writes.push(o.sink.write(e));
    }
    // The buffer goes back to the pool only once the sink is done with every extent of it.
    const settled = Promise.all(writes).then(() => pool.release(item.buf));
    settled.catch((err: unknown) => (writeFailure ??= err));
    pendingWrites.push(settled);
    compared = item.req.offset + item.req.length;
  };

  // A checkpoint waits for the writes it covers, flushes the sink and reports the cursor, while
  // the pipeline goes on (a flush can take as long as writing back everything since the last
  // one). At most one is in flight: the next one due waits for it, which bounds what a crash
  // can leave unaccounted for to two checkpoints' worth.
  let checkpointing: Promise<void> = Promise.resolve();
  let checkpointed = start; // the offset the last checkpoint started at
  const checkpoint = async () => {
    await checkpointing;
    const upTo = compared;
    const writes = pendingWrites;
    pendingWrites = [];
    checkpointed = upTo;
    checkpointing = (async () => {
      await Promise.all(writes);
      await o.sink.flush();
      durable = upTo;
      await o.onCursor?.({ offset: upTo });
    })();
    checkpointing.catch(noop); // awaited by the next checkpoint, and at the end
  };

  const progress = (force: boolean) => {
    if (!o.onProgress) return;
    const now = performance.now();
    if (!force && now - lastProgress < progressIntervalMs) return;
    lastProgress = now;
    const done = compared - start;
    const rate = done / Math.max(1, now - t0);
    o.onProgress({ bytesCompared: done, bytesTotal: end - start, bytesSent: stats.bytesSent, bytesChanged: stats.bytesChanged, etaMs: done > 0 ? Math.round((end - compared) / rate) : undefined });
  };

  for (;;) {
    if (writeFailure !== undefined) throw writeFailure;
    while (reads.length < readAhead && next < end && !stopping()) issueRead();
    if (reads.length > 0 && inflight.length < window) {
      const r = await reads.shift()!;
      if (next < end && !stopping()) issueRead(); // the disk reads the next batch while this one is hashed
      const summary = summariseRegions(r.buf.subarray(0, r.length), layout.regionBytes, digester);
      const req: CompareRequest = { id: ++id, offset: r.offset, length: r.length, regionZero: summary.zero, digests: summary.digests };
      const differences = refineBatch(o.remote, r.buf.subarray(0, r.length), req, o.remote.compare(req), layout, digester);
      differences.catch(noop); // awaited in order by consume
      inflight.push({ req, buf: r.buf, differences });
      continue;
    }
    const item = inflight.shift();
    if (!item) break;
    await consume(item);
    if (compared - checkpointed >= checkpointBytes) await checkpoint();
    progress(false);
  }
  if (compared > checkpointed || compared === start) await checkpoint();
  await checkpointing;
  progress(true);
  return { completed: compared === end, cursor: { offset: durable }, targetSize, bytesCompared: compared - start, ...stats, elapsedMs: Math.round(performance.now() - t0) };
}

/**
 * One batch's way from its diff to its differing blocks: each refine is sent as soon as the
 * answer before it is in (diffs arrive in order, so refines of one level leave in batch order),
 * while the engine goes on reading and comparing later batches.
 */
async function refineBatch(remote: TargetHashClient, source: Buffer, req: CompareRequest, reply: Promise<DiffReply>, layout: ResyncLayout, digester: Digester): Promise<BatchDifferences> {
  const batch = new SourceBatch(source, req, layout, digester);
  let next = batch.onDiff(await reply);
  while (next) {
    const request = next;
    next = batch.onRefined(request, await remote.refine(request));
  }
  return batch.result();
}
