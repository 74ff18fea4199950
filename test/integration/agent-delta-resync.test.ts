import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readDiskState } from '../../src/agent/state.js';
import { NbdClient } from '../../src/agent/nbd/client.js';
import { MiB, Stack, Writer, sha256, sha256File, until, withDir } from '../helpers/stack.js';
import { BLOCK, changeBlocks, KiB, pickBlocks, writeImage } from './resync-fixtures.js';
import { readFile } from 'node:fs/promises';

/**
 * The agent's delta resync through the real data path (agent → PS → MT, the MT's resync target
 * for the compare): a protected disk against a replica that already holds most of it sends only
 * what differs, live writes during the resync are kept in order, and batches of an older lineage
 * still in the PS spool are never applied after the compare (the fence).
 */

const DISK = 'disk0';

interface Prepared {
  /** Bytes of the blocks where source and replica differ. */
  changedBytes: number;
}

/**
 * site-a/disk0.img (the source) holds seeded data; site-b/disk0.img (the replica the MT will
 * adopt, the "old disk") equals it except in `share` of its 4 KiB blocks, a few of which are zero
 * on the source (they must travel as zero extents).
 */
async function prepare(dir: string, size: number, share: number, seed: number): Promise<Prepared> {
  await mkdir(join(dir, 'site-a'), { recursive: true });
  await mkdir(join(dir, 'site-b'), { recursive: true });
  const source = join(dir, 'site-a', `${DISK}.img`);
  const replica = join(dir, 'site-b', `${DISK}.img`);
  await writeImage(source, size, seed);
  await copyFile(source, replica);
  const blocks = size / BLOCK;
  const changed = pickBlocks(Math.round(blocks * share), blocks, seed + 1);
  await changeBlocks(replica, changed, seed + 2);
  const zeroed = pickBlocks(8, blocks, seed + 3).filter((b) => !changed.includes(b));
  await changeBlocks(source, zeroed, seed + 4, { zero: true });
  return { changedBytes: (changed.length + zeroed.length) * BLOCK };
}

type DeltaStatus = { compareBytes: { sent: number; received: number }; bytesCopied: number; bytesChanged: number };
type DiskStatus = { mode: string; lineage: string; resync: { mode: string; delta?: DeltaStatus }; deltaResync?: unknown };

function diskStatus(s: Stack): DiskStatus {
  return s.agent!.status().disks[DISK] as unknown as DiskStatus;
}

test('delta resync: a replica that holds most of the disk gets only the differences, and ends byte-identical', async (t) => {
  await withDir('delta-bytes', async (dir) => {
    const SIZE = 32 * MiB;
    const { changedBytes } = await prepare(dir, SIZE, 0.01, 61);
    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE, protect: false }], agent: { regionBytes: 256 * KiB } });
    try {
      const target = s.mt.resyncEndpoint!;
      const { lineage } = await s.agent!.protectDisk(DISK, { newLineage: true, resyncTarget: target });
      // Progress for the CS's job, in bytes of the disk (compared, of the whole).
      const running = s.agent!.healthReport().agent.disks[0]!;
      assert.equal(running.resyncTotal, SIZE);
      assert.ok(running.resyncDone !== undefined && running.resyncDone <= SIZE);
      await s.sync(DISK);
      assert.equal(await sha256File(s.replica(DISK)), await sha256File(s.source(DISK)), 'the replica equals the source');
      assert.equal(s.agent!.healthReport().agent.disks[0]!.resyncTotal, undefined, 'no progress once the resync is over');

      const status = s.agent!.status();
      const delta = diskStatus(s).resync.delta!;
      assert.equal(diskStatus(s).resync.mode, 'delta');
      assert.equal(delta.bytesCopied, 0, 'no region was copied whole');
      const toPs = status.sender.bytesSent;
      const wire = toPs + delta.compareBytes.sent;
      t.diagnostic(`${changedBytes} bytes differ; sent ${toPs} in batches + ${delta.compareBytes.sent} compare (${delta.compareBytes.received} received); MT applied ${s.mt.applyStats.bytes}`);
      assert.ok(wire <= 1.2 * changedBytes + 128 * KiB, `sent ${wire} bytes (${toPs} in batches, ${delta.compareBytes.sent} compare) for ${changedBytes} changed`);
      assert.ok(s.mt.applyStats.bytes <= 1.2 * changedBytes + 128 * KiB, `the MT applied ${s.mt.applyStats.bytes} bytes for ${changedBytes} changed`);

      const pos = s.mt.diskStatus(DISK).position!;
      assert.equal(pos.lineage, lineage, 'the lineage protectDisk started carries the resync');
      assert.equal(pos.consistent, true);
      assert.ok(s.mt.diskStatus(DISK).points.some((p) => p.lineage === lineage), 'the end of the resync is the lineage’s first recovery point');
      const state = await readDiskState(join(dir, 'agent', 'state', `${DISK}.state`));
      assert.deepEqual(state?.resyncTarget, target, 'the resync target is remembered');
      assert.equal(state?.resync, undefined, 'no delta resync is pending any more');
      assert.equal(diskStatus(s).deltaResync, undefined);
    } finally {
      await s.stop();
    }
  });
});

test('delta resync under live writes: every write survives, in order, and the replica ends equal to the source', async () => {
  await withDir('delta-live', async (dir) => {
    const SIZE = 32 * MiB;
    await prepare(dir, SIZE, 0.03, 71);
    const model = await readFile(join(dir, 'site-a', `${DISK}.img`));
    // Small checkpoints: many flushes (each waits for the MT to apply) while the workload writes.
    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE, protect: false }], agent: { regionBytes: 256 * KiB, resync: { checkpointBytes: 2 * MiB, windowBatches: 4 } } });
    let w: Writer | undefined;
    try {
      w = await Writer.connect(s.nbdSocket, DISK, model, 700);
      await w.random(20);
      const during = w.random(300, 8);
      const { lineage } = await s.agent!.protectDisk(DISK, { newLineage: true, resyncTarget: s.mt.resyncEndpoint! });
      await during;
      await w.random(50, 8);
      await w.client.flush();
      await s.sync(DISK);
      assert.equal(await sha256File(s.source(DISK)), sha256(model), 'the source holds every write');
      assert.equal(await sha256File(s.replica(DISK)), sha256(model), 'the replica equals the source');
      assert.equal(diskStatus(s).resync.mode, 'delta');
      assert.equal(diskStatus(s).lineage, lineage);
      assert.equal(s.mt.diskStatus(DISK).position?.consistent, true);
    } finally {
      await w?.close();
      await s.stop();
    }
  });
});

test('old lineage still in the spool: the MT drops it instead of applying it after the compare (fence)', async () => {
  await withDir('delta-fence', async (dir) => {
    const SIZE = 8 * MiB;
    await prepare(dir, SIZE, 0, 81); // the replica starts equal (but for the zeroed blocks)
    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE, protect: false }], agent: { regionBytes: 256 * KiB } });
    let nbd: NbdClient | undefined;
    try {
      const target = s.mt.resyncEndpoint!;
      await s.agent!.protectDisk(DISK, { newLineage: true, resyncTarget: target });
      await s.sync(DISK);
      const X = 3 * MiB;
      const original = (await readFile(s.source(DISK))).subarray(X, X + 64 * KiB);

      // The MT stops applying: the next write of this lineage (B over X) waits in the PS spool.
      await s.mt.freezeDisk(DISK);
      nbd = await NbdClient.connect({ socketPath: s.nbdSocket, exportName: DISK });
      await nbd.write(X, Buffer.alloc(64 * KiB, 0xbb));
      assert.deepEqual(await s.agent!.unprotectDisk(DISK, 10_000), { drained: true }, 'the PS stored it');
      assert.ok(s.ps.spool.pending(DISK).length > 0, 'the old lineage’s batch is still in the spool');
      // Unprotected, X goes back to what it was: the source and the replica are equal again there.
      await nbd.write(X, Buffer.from(original));
      await nbd.flush();

      // A new lineage compares while the old batch waits: X is equal, nothing is sent for it.
      const { lineage } = await s.agent!.protectDisk(DISK, { newLineage: true, resyncTarget: target });
      await until('the compare of the whole disk', () => (s.mt.status().resync.open.some((o) => o.fence?.lineage === lineage && o.batchesCompared === SIZE / (2 * MiB)) ? true : undefined));
      // Applying resumes. Applied now, the old batch would overwrite X with B on the replica only.
      await s.mt.attachDisk({ id: DISK, target: s.replica(DISK), sizeBytes: SIZE });
      await s.sync(DISK);
      assert.equal(await sha256File(s.replica(DISK)), await sha256File(s.source(DISK)), 'the replica equals the source');
      assert.ok(s.mt.disk(DISK).fencedBatches >= 1, 'the old lineage’s batch was dropped');
      assert.equal(s.ps.spool.pending(DISK).length, 0, 'and the PS did not keep it');
      assert.equal(s.mt.diskStatus(DISK).position?.lineage, lineage);
      assert.equal(s.mt.diskStatus(DISK).position?.consistent, true);
    } finally {
      await nbd?.disconnect();
      await s.stop();
    }
  });
});
