import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BoomerangError } from '../../src/replication/errors.js';
import { newLineage } from '../../src/replication/position.js';
import { LOCK_FILE } from '../../src/mt/lock.js';
import { inspectRetention, listRecoveryPointsOffline, restoreOffline } from '../../src/mt/offline.js';
import { ReplicaDisk, type ReplicaDiskOptions } from '../../src/mt/replica.js';
import { applyAndTrack, diskOptions, fileHash, journalHash, LineageWriter, Model, prng, segmentPaths, START_AND_DONE, withTempDir } from './mt-fixtures.js';

const SIZE = 4 * 1024 * 1024;

async function build(dir: string, extra: Partial<ReplicaDiskOptions> = {}) {
  const opts = diskOptions(dir, { segmentBytes: 128 * 1024, ...extra });
  const disk = await ReplicaDisk.open(opts);
  const w = new LineageWriter(newLineage(), prng(31), { size: SIZE, maxBlocks: 24 });
  const model = new Model(SIZE);
  const points = new Map<string, string>();
  await applyAndTrack(disk, model, points, w.next({ time: 1, flags: START_AND_DONE }));
  for (let i = 0; i < 20; i++) await applyAndTrack(disk, model, points, w.next({ time: 2 + i, ...(i % 4 === 0 ? { bookmark: 'app' as const } : {}) }));
  return { opts, disk, w, model, points };
}

/** Restores every point offline and checks it; also that nothing in the directory or the target changed. */
async function checkOffline(dir: string, opts: ReplicaDiskOptions, points: ReadonlyMap<string, string>, latest: string, expectedCount: number) {
  const journal = await journalHash(opts.retentionDir);
  const target = await fileHash(opts.targetPath);
  const listed = await listRecoveryPointsOffline(opts.retentionDir);
  assert.equal(listed.length, expectedCount);
  for (const [i, p] of listed.entries()) {
    const out = join(dir, `offline-${i}.img`);
    await restoreOffline(opts.retentionDir, p.id, out);
    assert.equal(await fileHash(out), points.get(p.id), p.id);
    await rm(out);
  }
  await restoreOffline(opts.retentionDir, 'latest', join(dir, 'offline-latest.img'));
  assert.equal(await fileHash(join(dir, 'offline-latest.img')), latest);
  await rm(join(dir, 'offline-latest.img'));
  assert.equal(await journalHash(opts.retentionDir), journal, 'offline access writes nothing to the journal');
  assert.equal(await fileHash(opts.targetPath), target, 'nor to the target');
}

test('offline: the same points as the running replica, restored byte-exact; refused while a live process holds the directory', async () => {
  await withTempDir(async (dir) => {
    const { opts, disk, model, points } = await build(dir);
    const online = disk.recoveryPoints();
    try {
      const report = await inspectRetention(opts.retentionDir);
      assert.equal(report.inUseBy, process.pid);
      assert.deepEqual(report.points, online);
      await assert.rejects(restoreOffline(opts.retentionDir, 'latest', join(dir, 'x.img')), (e: unknown) => e instanceof BoomerangError && e.code === 'DISK_IN_USE');
    } finally {
      await disk.close();
    }
    assert.deepEqual(await listRecoveryPointsOffline(opts.retentionDir), online);
    await checkOffline(dir, opts, points, model.hash(), 5);

    // A lock left by a process that died is not a holder.
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    await writeFile(join(opts.retentionDir, LOCK_FILE), `${dead}\n`);
    assert.equal((await inspectRetention(opts.retentionDir)).inUseBy, undefined);
    await checkOffline(dir, opts, points, model.hash(), 5);
    await assert.rejects(restoreOffline(opts.retentionDir, 'no/such/point', join(dir, 'y.img')), (e: unknown) => e instanceof BoomerangError && e.code === 'RECOVERY_POINT_NOT_FOUND');
  });
});

test('offline after a crash mid-apply: the unfinished batch is undone on the copy only, a torn tail is reported', async () => {
  await withTempDir(async (dir) => {
    const { opts, disk, w, model, points } = await build(dir);
    const before = model.hash();
    const position = disk.position();
    await disk.apply(w.next({ time: 50, bookmark: 'crash' })); // on the target; its commit will be lost
    await disk.close();
    const newest = (await segmentPaths(opts.retentionDir)).at(-1) as string;
    const commitBytes = 24 + 64 + 88;
    const size = (await readFile(newest)).length;
    await truncate(newest, size - commitBytes);

    let report = await inspectRetention(opts.retentionDir);
    assert.equal(report.unfinishedUndoRecords, 1);
    assert.equal(report.tornBytes, 0);
    assert.deepEqual(report.position, position);
    await checkOffline(dir, opts, points, before, 5);

    // Half an undo record at the end: torn, reported, ignored.
    await truncate(newest, size - commitBytes - 1000);
    report = await inspectRetention(opts.retentionDir);
    assert.equal(report.unfinishedUndoRecords, 0);
    assert.ok(report.tornBytes > 0);
  });
});

test('offline during an interrupted in-place restore: later points are gone, the point restores exactly', async () => {
  await withTempDir(async (dir) => {
    const { opts, disk, points } = await build(dir, {
      faultHook: (s) => {
        if (s === 'rollback') throw new Error('simulated crash');
      },
    });
    const chosen = disk.recoveryPoints()[1];
    assert.ok(chosen);
    await assert.rejects(disk.restoreInPlace(chosen.id), /simulated crash/);
    await disk.close();
    const report = await inspectRetention(opts.retentionDir);
    assert.equal(report.restoreInPlacePending, true);
    assert.deepEqual(report.position, { lineage: chosen.lineage, lastSeq: chosen.seq, consistent: true, closed: true });
    await checkOffline(dir, opts, points, points.get(chosen.id) as string, 2);
  });
});
