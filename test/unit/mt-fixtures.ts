import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchFlags, type Batch, type BookmarkKind, type Extent } from '../../src/replication/batch.js';
import type { LineageId } from '../../src/replication/position.js';
import { ReplicaDisk, type ReplicaDiskOptions } from '../../src/mt/replica.js';

/** Shared by the master-target tests: a seeded generator of batches, a model disk, temp dirs. */

export const DISK_ID = 'disk-0';
export const BLOCK = 4096;

/** mulberry32: small, fast, good enough to pick offsets and fill payloads reproducibly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

function payload(rand: () => number, length: number): Buffer {
  const words = new Uint32Array(length / 4);
  let x = (rand() * 0xffffffff) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return Buffer.from(words.buffer);
}

export interface WriterOptions {
  size: number;
  maxExtents?: number;
  maxBlocks?: number;
  /** Share of extents that are zero extents. */
  zeroShare?: number;
}

/** Produces the batches of one lineage in order, with sequence numbers like an agent's. */
export class LineageWriter {
  private seq = 0;

  constructor(
    readonly lineage: LineageId,
    private readonly rand: () => number,
    private readonly o: WriterOptions,
  ) {}

  get lastSeq(): number {
    return this.seq;
  }

  /** Random extents (overlapping ones included), then an optional bookmark closing the batch. */
  next(opts: { time: number; flags?: number; bookmark?: BookmarkKind; extents?: Extent[] }): Batch {
    const blocks = this.o.size / BLOCK;
    const extents: Extent[] = opts.extents ?? [];
    if (!opts.extents) {
      const n = randInt(this.rand, 1, this.o.maxExtents ?? 6);
      for (let i = 0; i < n; i++) {
        const len = randInt(this.rand, 1, this.o.maxBlocks ?? 16);
        const start = randInt(this.rand, 0, blocks - len);
        const zero = this.rand() < (this.o.zeroShare ?? 0.15);
        extents.push(zero ? { offset: start * BLOCK, length: len * BLOCK } : { offset: start * BLOCK, length: len * BLOCK, data: payload(this.rand, len * BLOCK) });
      }
    }
    const firstSeq = this.seq + 1;
    this.seq += extents.length;
    const bookmarks = [];
    if (opts.bookmark) {
      this.seq += 1;
      bookmarks.push({ id: `bm-${this.seq}`, kind: opts.bookmark, time: opts.time, seq: this.seq });
    }
    if (this.seq < firstSeq) this.seq = firstSeq; // an empty batch still takes a sequence number
    return {
      diskId: DISK_ID,
      lineage: this.lineage,
      firstSeq,
      lastSeq: this.seq,
      firstTime: opts.time,
      lastTime: opts.time,
      flags: opts.flags ?? 0,
      extents,
      bookmarks,
    };
  }
}

/** What the disk must hold: the batches applied in order to a zeroed buffer. */
export class Model {
  readonly bytes: Buffer;
  constructor(size: number) {
    this.bytes = Buffer.alloc(size);
  }
  apply(b: Batch): void {
    for (const e of b.extents) {
      if (e.data) e.data.copy(this.bytes, e.offset);
      else this.bytes.fill(0, e.offset, e.offset + e.length);
    }
  }
  hash(): string {
    return sha256(this.bytes);
  }
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

export async function fileHash(path: string): Promise<string> {
  return sha256(await readFile(path));
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-mt-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A settable clock. */
export class Clock {
  constructor(public t = 1_700_000_000_000) {}
  readonly now = (): number => this.t;
}

export function diskOptions(dir: string, extra: Partial<ReplicaDiskOptions> = {}): ReplicaDiskOptions {
  return { diskId: DISK_ID, targetPath: join(dir, 'target.img'), retentionDir: join(dir, 'retention'), size: 4 * 1024 * 1024, ...extra };
}

export async function segmentPaths(retentionDir: string): Promise<string[]> {
  const dir = join(retentionDir, 'journal');
  return (await readdir(dir))
    .filter((n) => n.endsWith('.seg'))
    .sort()
    .map((n) => join(dir, n));
}

/** Hash of every journal file, to show the journal was left exactly as it was. */
export async function journalHash(retentionDir: string): Promise<string> {
  const h = createHash('sha256');
  for (const p of await segmentPaths(retentionDir)) h.update(p).update(await readFile(p));
  return h.digest('hex');
}

/**
 * Applies a batch to the disk and the model, and remembers the model's hash for every recovery
 * point that appears: `points` maps point id → hash of the disk at that point.
 */
export async function applyAndTrack(disk: ReplicaDisk, model: Model, points: Map<string, string>, b: Batch): Promise<void> {
  const r = await disk.apply(b);
  if (r.status !== 'applied') throw new Error(`batch ${b.firstSeq}..${b.lastSeq} was ${r.status}`);
  model.apply(b);
  for (const p of disk.recoveryPoints()) if (!points.has(p.id)) points.set(p.id, model.hash());
}

/** Restores every listed point (and 'latest') into `dir` and compares with the expected hashes. */
export async function checkAllPoints(disk: ReplicaDisk, points: ReadonlyMap<string, string>, dir: string, latest: string): Promise<number> {
  let n = 0;
  for (const p of disk.recoveryPoints()) {
    const expected = points.get(p.id);
    if (expected === undefined) throw new Error(`point ${p.id} was never seen being created`);
    const out = join(dir, `restore-${n++}.img`);
    await disk.restore(p.id, out);
    const got = await fileHash(out);
    await rm(out);
    if (got !== expected) throw new Error(`point ${p.id} restores to ${got}, expected ${expected}`);
  }
  const out = join(dir, 'restore-latest.img');
  await disk.restore('latest', out);
  const got = await fileHash(out);
  await rm(out);
  if (got !== latest) throw new Error(`'latest' restores to ${got}, expected ${latest}`);
  return n;
}

/** One extent of non-zero data over the whole disk, so later before-images take journal space. */
export function fullDisk(size: number, byte = 0x5c): Extent[] {
  return [{ offset: 0, length: size, data: Buffer.alloc(size, byte) }];
}

/** First batch of a lineage: resync data, inconsistent until `resyncDone`. */
export const START = BatchFlags.lineageStart | BatchFlags.resync;
export const START_AND_DONE = BatchFlags.lineageStart | BatchFlags.resync | BatchFlags.resyncDone;

/**
 * The chaos scenario's stream of `count` batches: a function of the seed alone, so a restarted
 * writer and the checker regenerate the same history.
 */
export function* scriptedBatches(seed: number, lineage: LineageId, size: number, count: number): Generator<Batch> {
  const w = new LineageWriter(lineage, prng(seed), { size, maxExtents: 4, maxBlocks: 8 });
  yield w.next({ time: 1, flags: START });
  yield w.next({ time: 2, flags: BatchFlags.resync | BatchFlags.resyncDone, bookmark: 'crash' });
  for (let i = 2; i < count; i++) yield w.next({ time: i + 1, ...(i % 3 === 0 ? { bookmark: 'app' as const } : {}) });
}
