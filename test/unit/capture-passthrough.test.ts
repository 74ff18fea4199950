import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BufferBudget } from '../../src/agent/budget.js';
import { DiskCapture, type SealedBatch } from '../../src/agent/capture.js';
import { DirtyMap } from '../../src/agent/dirty-map.js';
import { BatchFlags, decodeBatch, hasFlag, type Batch } from '../../src/replication/batch.js';
import type { BlockDevice } from '../../src/replication/disk.js';
import { BoomerangError } from '../../src/replication/errors.js';
import { newLineage } from '../../src/replication/position.js';

const KiB = 1024;
const REGION = 64 * KiB;
const SIZE = 4 * REGION;

/** An in-memory disk whose writes to one offset wait for a gate: a write caught mid-flight. */
class GatedDisk implements BlockDevice {
  readonly bytes = Buffer.alloc(SIZE);
  readonly size = SIZE;
  gateAt: number | undefined;
  private open: (() => void) | undefined;
  entered: Promise<void>;
  private signalEntered!: () => void;

  constructor() {
    this.entered = new Promise((resolve) => (this.signalEntered = resolve));
  }

  release(): void {
    this.gateAt = undefined;
    this.open?.();
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }

  async readInto(into: Buffer, offset: number): Promise<void> {
    this.bytes.copy(into, 0, offset, offset + into.length);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    if (offset === this.gateAt) {
      this.signalEntered();
      await new Promise<void>((resolve) => (this.open = resolve));
    }
    data.copy(this.bytes, offset);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.bytes.fill(0, offset, offset + length);
  }

  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

async function setup(dir: string) {
  const backing = new GatedDisk();
  const { map: dirty } = await DirtyMap.open(join(dir, 'd.dirty'), SIZE, REGION);
  const budget = new BufferBudget(64 * 1024 * KiB);
  const sealed: SealedBatch[] = [];
  let resyncNeeded = 0;
  const capture = new DiskCapture(
    { diskId: 'd0', backing, dirty, budget, maxBatchBytes: 1024 * KiB, maxBatchDelayMs: 5, onSealed: (b) => sealed.push(b), onResyncNeeded: () => resyncNeeded++ },
    { lineage: newLineage(), lastSeq: 0 },
    { passthrough: true },
  );
  const batches = (): Batch[] => sealed.map((b) => decodeBatch(Buffer.concat(b.parts)));
  return { backing, dirty, budget, capture, sealed, batches, resyncNeeded: () => resyncNeeded };
}

/** The replica the batches build, applied in order onto a zeroed disk. */
function replay(batches: readonly Batch[]): Buffer {
  const out = Buffer.alloc(SIZE);
  for (const b of batches) for (const e of b.extents) (e.data ? e.data.copy(out, e.offset) : out.fill(0, e.offset, e.offset + e.length));
  return out;
}

test('passthrough: writes reach the disk with no event, no budget, no write-intent bit; bookmarks are refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-capture-'));
  try {
    const { backing, dirty, budget, capture, sealed } = await setup(dir);
    assert.equal(capture.mode, 'passthrough');
    await capture.write(0, Buffer.alloc(8 * KiB, 1), true);
    await capture.writeZeroes(REGION, 4 * KiB, false);
    await capture.trim(2 * REGION, 4 * KiB);
    assert.equal(backing.bytes[0], 1);
    assert.equal(capture.lastSeq, 0);
    assert.equal(budget.used, 0);
    assert.equal(dirty.dirtyRegions(), 0);
    capture.seal();
    assert.equal(sealed.length, 0);
    assert.throws(
      () => capture.bookmark('crash'),
      (e: unknown) => e instanceof BoomerangError && e.code === 'NOT_PROTECTED',
    );
    capture.close();
    await dirty.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('protect while a passthrough write is in flight: the resync read of its region waits for it and carries its bytes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-capture-'));
  try {
    const { backing, dirty, capture, batches } = await setup(dir);
    const data = Buffer.alloc(8 * KiB, 0xab);
    backing.gateAt = REGION + 4 * KiB;
    const write = capture.write(REGION + 4 * KiB, data, false);
    await backing.entered; // the write holds its range and is stuck inside the backing disk

    const lineage = capture.protect();
    assert.equal(capture.mode, 'resyncing');
    await dirty.markAll();
    const resync = capture.resync();
    // A write after the switch is captured in the new lineage.
    await capture.write(3 * REGION, Buffer.alloc(4 * KiB, 0x11), false);
    backing.release();
    await write;
    assert.equal(await resync, 'done');
    assert.equal(capture.mode, 'replicating');
    capture.seal();

    const list = batches();
    assert.ok(list.length > 0);
    assert.ok(list.every((b) => b.lineage === lineage), 'everything is in the lineage protect() started');
    assert.ok(hasFlag(list[0]!, BatchFlags.lineageStart));
    assert.equal(list[0]!.firstSeq, 1);
    for (let i = 1; i < list.length; i++) assert.equal(list[i]!.firstSeq, list[i - 1]!.lastSeq + 1, 'no gap in the sequence');
    const done = list.filter((b) => hasFlag(b, BatchFlags.resyncDone));
    assert.equal(done.length, 1);
    assert.equal(done[0]!.bookmarks.length, 1, 'the resyncDone batch carries the first recovery point');
    assert.ok(
      replay(list).equals(backing.bytes),
      'the replica equals the source: the resync read of the region came after the in-flight write',
    );
    capture.close();
    await dirty.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('unprotect stops a resync under way and capture; protect again resyncs every region in a new lineage', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-capture-'));
  try {
    const { backing, dirty, capture, sealed, batches } = await setup(dir);
    await capture.write(0, Buffer.alloc(4 * KiB, 7), false);
    const first = capture.protect();
    await dirty.markAll();
    // The resync is stuck on region 1 behind a gated write that was captured.
    backing.gateAt = REGION;
    const gated = capture.write(REGION, Buffer.alloc(4 * KiB, 9), false);
    await backing.entered;
    const resync = capture.resync();
    capture.unprotect();
    assert.equal(capture.mode, 'passthrough');
    backing.release();
    await gated;
    assert.equal(await resync, 'aborted');
    const sentBefore = sealed.length;
    await capture.write(2 * REGION, Buffer.alloc(4 * KiB, 5), false);
    capture.seal();
    assert.equal(sealed.length, sentBefore, 'nothing is captured after unprotect');
    assert.equal(capture.lastSeq, batches().at(-1)!.lastSeq);

    const second = capture.protect();
    assert.notEqual(second, first);
    await dirty.markAll();
    assert.equal(await capture.resync(), 'done');
    capture.seal();
    const again = batches().slice(sentBefore);
    assert.ok(again.every((b) => b.lineage === second));
    assert.ok(hasFlag(again[0]!, BatchFlags.lineageStart));
    assert.ok(replay(again).equals(backing.bytes), 'the new lineage alone rebuilds the disk');
    capture.close();
    await dirty.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
