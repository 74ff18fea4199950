import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { Prng } from '../../src/lab/prng.js';
import type { BlockDevice } from '../../src/replication/disk.js';
import { BoomerangError } from '../../src/replication/errors.js';
import { answerCompare, answerRefine } from '../../src/replication/resync/compare.js';
import { runResync, type ResyncCursor, type ResyncOptions, type TargetHashClient } from '../../src/replication/resync/engine.js';
import { ResyncError } from '../../src/replication/resync/errors.js';
import { createDigester, type Digester } from '../../src/replication/resync/hashing.js';
import type { ResyncLayout } from '../../src/replication/resync/layout.js';
import type { ResyncExtent, ResyncSink } from '../../src/replication/resync/sink.js';

/** The engine alone, against a target and a sink in memory: pipeline, cursor, resume, abort. */

const LAYOUT: Partial<ResyncLayout> = { blockBytes: 4096, regionBytes: 16384, batchBytes: 65536 };
/** The same with a sub-region level: one refine round trip per batch that differs. */
const LAYOUT_REFINED: Partial<ResyncLayout> = { ...LAYOUT, subRegionBytes: [8192] };

class MemoryDisk implements BlockDevice {
  constructor(readonly bytes: Buffer) {}
  get size() {
    return this.bytes.length;
  }
  async read(offset: number, length: number) {
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }
  async readInto(into: Buffer, offset: number) {
    await turn(); // like a real disk, a read completes later
    this.bytes.copy(into, 0, offset, offset + into.length);
  }
  async write(offset: number, data: Buffer) {
    data.copy(this.bytes, offset);
  }
  async writeZeroes(offset: number, length: number) {
    this.bytes.fill(0, offset, offset + length);
  }
  async flush() {}
  async close() {}
}

/** Answers compares from a buffer, asynchronously, like a remote target would. */
function memoryTarget(target: Buffer, seen: { compares: number[]; refines?: number } = { compares: [] }): TargetHashClient {
  let digester: Digester | undefined;
  let layout: ResyncLayout | undefined;
  return {
    async open(req) {
      digester = createDigester(req.hash, req.key);
      layout = req.layout;
      return { targetSize: target.length };
    },
    async compare(req) {
      seen.compares.push(req.offset);
      await turn();
      return answerCompare(req, target.subarray(req.offset, req.offset + req.length), layout!, digester!);
    },
    async refine(req) {
      seen.refines = (seen.refines ?? 0) + 1;
      await turn();
      return answerRefine(req, target.subarray(req.offset, req.offset + req.length), layout!, digester!);
    },
  };
}

/** Applies extents to the target buffer; flushes are counted. */
function memorySink(target: Buffer): ResyncSink & { flushes: number; extents: ResyncExtent[] } {
  const sink = {
    flushes: 0,
    extents: [] as ResyncExtent[],
    async write(e: ResyncExtent) {
      await turn();
      sink.extents.push({ offset: e.offset, length: e.length });
      if (e.data) e.data.copy(target, e.offset);
      else target.fill(0, e.offset, e.offset + e.length);
    },
    async flush() {
      sink.flushes++;
    },
  };
  return sink;
}

function disks(size: number, changedBlocks: number[]) {
  const source = new Prng(size).fill(Buffer.allocUnsafe(size));
  const target = Buffer.from(source);
  for (const b of changedBlocks) target[b * 4096]! ^= 0x5a;
  return { source, target };
}

function options(source: Buffer, target: Buffer, extra: Partial<ResyncOptions> = {}): ResyncOptions {
  return { diskId: 'd', source: new MemoryDisk(source), remote: memoryTarget(target), sink: memorySink(target), layout: LAYOUT, windowBatches: 3, ...extra };
}

test('the target ends equal to the source; cursors rise at each checkpoint and end at the size', async () => {
  for (const [layout, refines] of [[LAYOUT, 0], [LAYOUT_REFINED, 5]] as const) {
    const size = 20 * 65536 + 8192;
    const { source, target } = disks(size, [0, 17, 18, 100, 200, size / 4096 - 1]);
    const cursors: number[] = [];
    const progress: number[] = [];
    const sink = memorySink(target);
    const seen = { compares: [] as number[], refines: 0 };
    const r = await runResync(options(source, target, { layout, remote: memoryTarget(target, seen), sink, checkpointBytes: 4 * 65536, onCursor: (c) => void cursors.push(c.offset), onProgress: (p) => progress.push(p.bytesCompared), progressIntervalMs: 0 }));
    assert.deepEqual(target, source);
    assert.equal(seen.refines, refines, 'one refine for each batch with a differing region, with sub-regions only');
    assert.equal(r.completed, true);
    assert.equal(r.blocksDifferent, 6);
    assert.equal(r.bytesChanged, 6 * 4096);
    assert.deepEqual(cursors, [4, 8, 12, 16, 20].map((n) => n * 65536).concat([size]));
    assert.equal(sink.flushes, cursors.length);
    assert.deepEqual(r.cursor, { offset: size });
    assert.equal(progress.at(-1), size);
    assert.deepEqual(sink.extents.map((e) => e.offset), [...sink.extents.map((e) => e.offset)].sort((a, b) => a - b), 'extents reach the sink in offset order');
  }
});

test('a run resumed from a cursor compares only what is after it', async () => {
  const size = 8 * 65536;
  const { source, target } = disks(size, [1, 20, 100]);
  const seen = { compares: [] as number[] };
  const r = await runResync(options(source, target, { remote: memoryTarget(target, seen), cursor: { offset: 2 * 65536 } }));
  assert.equal(Math.min(...seen.compares), 2 * 65536);
  assert.equal(r.bytesCompared, 6 * 65536);
  assert.equal(r.blocksDifferent, 1); // block 100; blocks 1 and 20 are before the cursor
  assert.notDeepEqual(target, source);
});

test('an aborted run finishes what is in flight, flushes, and says where to resume', async () => {
  const size = 32 * 65536;
  const { source, target } = disks(size, [3, 300, 500]);
  const stop = new AbortController();
  let last: ResyncCursor | undefined;
  const first = await runResync(options(source, target, { signal: stop.signal, checkpointBytes: 65536, onCursor: (c) => ((last = c), c.offset >= 4 * 65536 ? stop.abort() : undefined) }));
  assert.equal(first.completed, false);
  assert.ok(first.cursor.offset < size && first.cursor.offset >= 4 * 65536);
  assert.deepEqual(first.cursor, last);
  const second = await runResync(options(source, target, { cursor: first.cursor }));
  assert.equal(second.completed, true);
  assert.deepEqual(target, source);
});

test('sizes: a smaller target, or a larger one without opt-in, is RESYNC_SIZE_MISMATCH before anything is compared', async () => {
  const source = Buffer.alloc(65536, 1);
  for (const targetSize of [65536 - 4096, 65536 + 4096]) {
    const target = Buffer.alloc(targetSize);
    const seen = { compares: [] as number[] };
    await assert.rejects(runResync(options(source, target, { remote: memoryTarget(target, seen) })), (e: unknown) => e instanceof ResyncError && e.code === 'RESYNC_SIZE_MISMATCH' && e.message.includes(String(targetSize)) && e.message.includes('65536'));
    assert.equal(seen.compares.length, 0);
  }
  const larger = Buffer.alloc(65536 + 4096, 7);
  const r = await runResync(options(source, larger, { allowLargerTarget: true }));
  assert.equal(r.bytesCompared, 65536);
  assert.deepEqual(larger.subarray(0, 65536), source);
  assert.deepEqual(larger.subarray(65536), Buffer.alloc(4096, 7), 'the tail beyond the source is left as it was');
});

test('a failing sink fails the run with its error; a bad cursor is refused', async () => {
  const { source, target } = disks(4 * 65536, [5]);
  const sink: ResyncSink = {
    write: async () => {
      throw new BoomerangError('SINK_BROKEN', 'the stream is gone');
    },
    flush: async () => undefined,
  };
  await assert.rejects(runResync(options(source, target, { sink })), (e: unknown) => e instanceof BoomerangError && e.code === 'SINK_BROKEN');
  await assert.rejects(runResync(options(source, target, { cursor: { offset: 4096 } })), (e: unknown) => e instanceof ResyncError && e.code === 'RESYNC_CURSOR');
});

test('an empty disk and a disk smaller than one region', async () => {
  for (const size of [0, 4096 + 512]) {
    const { source, target } = disks(size, []);
    target.fill(0);
    const r = await runResync(options(source, target));
    assert.deepEqual(target, source);
    assert.equal(r.completed, true);
    assert.equal(r.cursor.offset, size);
  }
});
