import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { ReplicaDisk } from '../../src/mt/replica.js';
import { BLOCK, diskOptions, fileHash, LineageWriter, Model, prng, sha256, START_AND_DONE, withTempDir } from './mt-fixtures.js';

/**
 * The fence a resync session puts on a replica: batches of other lineages sealed before the fence
 * time are obsolete (dropped, never applied); the fence is durable, ends when its lineage starts
 * or when a batch sealed after it arrives, and is gone after a reopen once its lineage started.
 */

const SIZE = 64 * BLOCK;

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

test('fence: older lineages are dropped, the fence survives a reopen and ends when its lineage starts', async () => {
  await withTempDir(async (dir) => {
    const opts = diskOptions(dir, { size: SIZE });
    let disk = await ReplicaDisk.open(opts);
    try {
      const model = new Model(SIZE);
      const old = new LineageWriter(randomUUID(), prng(1), { size: SIZE });
      for (const b of [old.next({ time: 10, flags: START_AND_DONE }), old.next({ time: 11 })]) {
        assert.equal((await disk.apply(b)).status, 'applied');
        model.apply(b);
      }
      const resyncing = randomUUID();
      await disk.fence(resyncing, 100);
      assert.deepEqual(disk.currentFence, { lineage: resyncing, time: 100 });
      assert.equal(await exists(join(opts.retentionDir, 'fence.json')), true, 'the fence is on disk before it is in force');

      // A batch of the current lineage still in a spool, and one of a lineage the MT never saw.
      const stale = old.next({ time: 50 });
      assert.equal((await disk.apply(stale)).status, 'obsolete');
      const other = new LineageWriter(randomUUID(), prng(2), { size: SIZE });
      assert.equal((await disk.apply(other.next({ time: 60, flags: START_AND_DONE }))).status, 'obsolete');
      assert.equal(await fileHash(opts.targetPath), sha256(model.bytes), 'nothing fenced reached the target');
      assert.equal(disk.fencedBatches, 2);

      await disk.close();
      disk = await ReplicaDisk.open(opts);
      assert.deepEqual(disk.currentFence, { lineage: resyncing, time: 100 }, 'the fence survives a restart');
      assert.equal((await disk.apply(old.next({ time: 70 }))).status, 'obsolete');

      // The fenced lineage starts: the fence has done its work.
      const fresh = new LineageWriter(resyncing, prng(3), { size: SIZE });
      const first = fresh.next({ time: 110, flags: START_AND_DONE });
      assert.equal((await disk.apply(first)).status, 'applied');
      model.apply(first);
      assert.equal(disk.currentFence, undefined);
      assert.equal(await exists(join(opts.retentionDir, 'fence.json')), false);
      assert.equal((await disk.apply(old.next({ time: 120 }))).status, 'obsolete', 'the old lineage is retired now');
      const next = fresh.next({ time: 130 });
      assert.equal((await disk.apply(next)).status, 'applied');
      model.apply(next);
      assert.equal(await fileHash(opts.targetPath), sha256(model.bytes));
    } finally {
      await disk.close();
    }
  });
});

test('fence: a lineage begun after the fence ends it; a fence whose lineage started is dropped at open', async () => {
  await withTempDir(async (dir) => {
    const opts = diskOptions(dir, { size: SIZE });
    let disk = await ReplicaDisk.open(opts);
    try {
      await disk.fence(randomUUID(), 100);
      // The source gave up on the fenced lineage and began another after the fence time.
      const successor = new LineageWriter(randomUUID(), prng(4), { size: SIZE });
      assert.equal((await disk.apply(successor.next({ time: 100, flags: START_AND_DONE }))).status, 'applied');
      assert.equal(disk.currentFence, undefined);

      // A fence file left behind by a crash after its lineage started is dropped when the disk opens.
      const lineage = randomUUID();
      await disk.fence(lineage, 200);
      const w = new LineageWriter(lineage, prng(5), { size: SIZE });
      assert.equal((await disk.apply(w.next({ time: 210, flags: START_AND_DONE }))).status, 'applied');
      await disk.fence(lineage, 220); // a second session of the same lineage
      await disk.close();
      disk = await ReplicaDisk.open(opts);
      assert.equal(disk.currentFence, undefined);
      assert.equal(await exists(join(opts.retentionDir, 'fence.json')), false);
    } finally {
      await disk.close();
    }
  });
});
