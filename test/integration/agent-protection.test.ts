import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BoomerangError } from '../../src/replication/errors.js';
import { readDiskState } from '../../src/agent/state.js';
import { MiB, Stack, Writer, sha256, sha256File, withDir, writeSeededFile } from '../helpers/stack.js';

const SIZE = 8 * MiB;
const DISK = 'disk0';

type DiskStatus = { protected: boolean; mode: string; start: string; lineage: string; regionsToResync: number };

function diskStatus(s: Stack): DiskStatus {
  return s.agent!.status().disks[DISK] as unknown as DiskStatus;
}

test('a passthrough disk sends nothing; protectDisk under live writes brings the replica to the source byte for byte', async () => {
  await withDir('agent-protect', async (dir) => {
    // The disk has a history before the agent ever sees it.
    const model = await writeSeededFile(join(dir, 'seed.img'), SIZE, 11);
    await mkdir(join(dir, 'site-a'), { recursive: true });
    await copyFile(join(dir, 'seed.img'), join(dir, 'site-a', `${DISK}.img`));
    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE, protect: false }], agent: { regionBytes: 256 * 1024 } });
    let w: Writer | undefined;
    try {
      assert.equal(diskStatus(s).protected, false);
      assert.equal(diskStatus(s).start, 'unprotected');
      assert.equal(s.agent!.healthReport().agent.disks[0]?.protected, false);
      w = await Writer.connect(s.nbdSocket, DISK, model, 100);
      await w.random(60);
      await w.client.flush();
      assert.equal(await sha256File(s.source(DISK)), sha256(model), 'passthrough writes land on the backing disk');
      assert.equal(s.ps.intake.batches, 0, 'the PS received no batch');
      assert.equal(s.agent!.status().sender.batchesSent, 0);
      assert.throws(
        () => s.agent!.bookmark(DISK),
        (e: unknown) => e instanceof BoomerangError && e.code === 'NOT_PROTECTED',
      );

      // Protect while the workload keeps writing: writes racing the switch must not be lost.
      const during = w.random(120, 8);
      const { lineage } = await s.agent!.protectDisk(DISK);
      await during;
      assert.deepEqual(await s.agent!.protectDisk(DISK), { lineage }, 'protectDisk is idempotent');
      const report = s.agent!.healthReport().agent.disks[0]!;
      assert.equal(report.protected, true);
      await w.random(40);
      await s.sync(DISK);
      assert.equal(diskStatus(s).mode, 'replicating');
      assert.equal(diskStatus(s).lineage, lineage, 'the resync continued the lineage protectDisk started');
      const [source, replica] = await Promise.all([sha256File(s.source(DISK)), sha256File(s.replica(DISK))]);
      assert.equal(source, sha256(model), 'the source holds every write');
      assert.equal(replica, source, 'the replica equals the source, writes before protection included');
      const pos = s.mt.diskStatus(DISK).position!;
      assert.equal(pos.lineage, lineage);
      assert.equal(pos.consistent, true);
      assert.ok(s.mt.diskStatus(DISK).points.length >= 1, 'the resync brought the first recovery point');
      const state = await readDiskState(join(dir, 'agent', 'state', `${DISK}.state`));
      assert.equal(state?.protected, true);
    } finally {
      await w?.close();
      await s.stop();
    }
  });
});

test('unprotectDisk: later writes are not sent; the choice survives restarts and wins over the configuration', async () => {
  await withDir('agent-unprotect', async (dir) => {
    const model = Buffer.alloc(SIZE);
    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE }] });
    let w: Writer | undefined;
    try {
      w = await Writer.connect(s.nbdSocket, DISK, model, 200);
      await w.random(50);
      await s.sync(DISK);
      assert.equal(await sha256File(s.replica(DISK)), sha256(model));

      assert.deepEqual(await s.agent!.unprotectDisk(DISK, 10_000), { drained: true });
      assert.deepEqual(await s.agent!.unprotectDisk(DISK, 10_000), { drained: true }, 'idempotent');
      await s.ps.drainDisk(DISK, 10_000);
      const replicaAtUnprotect = await sha256File(s.replica(DISK));
      assert.equal(replicaAtUnprotect, sha256(model));
      const sent = s.ps.intake.batches;
      await w.random(30);
      await w.client.flush();
      assert.equal(await s.agent!.drain(10_000), true);
      assert.equal(s.ps.intake.batches, sent, 'nothing was sent after unprotect');
      assert.equal(await sha256File(s.source(DISK)), sha256(model));
      assert.equal(await sha256File(s.replica(DISK)), replicaAtUnprotect, 'the replica kept the state at unprotect');
      await w.close();
      w = undefined;

      // The configuration says protect (default), the persisted choice says no.
      const stopped = await s.stopAgent();
      assert.deepEqual(stopped.finalBookmarks, {}, 'no final bookmark on an unprotected disk');
      await s.startAgent();
      assert.equal(diskStatus(s).protected, false);
      assert.equal(diskStatus(s).mode, 'passthrough');

      w = await Writer.connect(s.nbdSocket, DISK, model, 300);
      await w.random(20);
      const { lineage } = await s.agent!.protectDisk(DISK);
      await w.close();
      w = undefined;
      await s.sync(DISK);
      assert.equal(await sha256File(s.replica(DISK)), sha256(model), 'protected again: a full resync caught up');

      // Now the configuration says no, the persisted choice says protect; a clean stop continues.
      await s.stopAgent();
      await s.startAgent({ disks: [{ id: DISK, path: s.source(DISK), sizeBytes: SIZE, protect: false }] });
      assert.equal(diskStatus(s).protected, true);
      assert.equal(diskStatus(s).start, 'continued');
      assert.equal(diskStatus(s).lineage, lineage);
    } finally {
      await w?.close();
      await s.stop();
    }
  });
});

test('a clean stop takes a final bookmark: the newest recovery point restores to the source at shutdown', async () => {
  await withDir('agent-final', async (dir) => {
    const model = Buffer.alloc(SIZE);
    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE }] });
    let w: Writer | undefined;
    try {
      w = await Writer.connect(s.nbdSocket, DISK, model, 400);
      await w.random(40);
      await s.sync(DISK);
      s.agent!.bookmark(DISK, 'app', 'before-last-writes');
      await w.random(40);
      await w.close();
      w = undefined;
      const result = await s.stopAgent();
      assert.equal(result.clean, true);
      const finalId = result.finalBookmarks[DISK];
      assert.match(finalId ?? '', /^shutdown-\d{4}-\d{2}-\d{2}T/);
      assert.equal(await s.ps.drainDisk(DISK, 30_000), true);

      const status = s.mt.diskStatus(DISK);
      const newest = status.points.at(-1)!;
      assert.equal(newest.bookmarkId, finalId, 'the newest recovery point is the shutdown bookmark');
      assert.equal(newest.seq, status.position!.lastSeq, 'nothing was applied after it');
      const out = join(dir, 'failback.img');
      const chosen = await s.mt.restoreDiskTo(DISK, 'latest', out);
      assert.equal(chosen.pointId, newest.id);
      assert.equal(await sha256File(out), sha256(model), 'it restores to the source as it was at shutdown');
      assert.equal(await sha256File(s.source(DISK)), sha256(model));
    } finally {
      await w?.close();
      await s.stop();
    }
  });
});
