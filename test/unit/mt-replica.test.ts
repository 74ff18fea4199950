import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BatchFlags } from '../../src/replication/batch.js';
import { BoomerangError } from '../../src/replication/errors.js';
import { newLineage } from '../../src/replication/position.js';
import { ReplicaDisk } from '../../src/mt/replica.js';
import { SequenceGapError } from '../../src/mt/errors.js';
import {
  applyAndTrack,
  checkAllPoints,
  Clock,
  diskOptions,
  fileHash,
  LineageWriter,
  Model,
  prng,
  START,
  START_AND_DONE,
  withTempDir,
} from './mt-fixtures.js';

const SIZE = 4 * 1024 * 1024;
const KINDS = ['crash', 'app', 'group'] as const;

test('random batches: the target equals the model and every recovery point restores byte-exact, also after reopening', async () => {
  await withTempDir(async (dir) => {
    const clock = new Clock();
    const opts = diskOptions(dir, { now: clock.now, segmentBytes: 512 * 1024 });
    let disk = await ReplicaDisk.open(opts);
    try {
      const rand = prng(1);
      const w = new LineageWriter(newLineage(), rand, { size: SIZE, maxExtents: 8, maxBlocks: 24 });
      const model = new Model(SIZE);
      const points = new Map<string, string>();
      await applyAndTrack(disk, model, points, w.next({ time: clock.t, flags: START }));
      await applyAndTrack(disk, model, points, w.next({ time: clock.t, flags: BatchFlags.resync | BatchFlags.resyncDone, bookmark: 'crash' }));
      for (let i = 0; i < 60; i++) {
        clock.t += 1000;
        const bookmark = i % 3 === 0 ? KINDS[i % KINDS.length] : undefined;
        await applyAndTrack(disk, model, points, w.next({ time: clock.t, ...(bookmark ? { bookmark } : {}) }));
      }
      assert.equal(await fileHash(opts.targetPath), model.hash());
      assert.deepEqual(disk.position(), { lineage: w.lineage, lastSeq: w.lastSeq, consistent: true, closed: false });
      assert.equal(disk.recoveryPoints().length, 21);
      assert.ok(disk.health().segments > 1, 'small segments roll over');
      assert.equal(await checkAllPoints(disk, points, dir, model.hash()), 21);

      const before = disk.recoveryPoints();
      await disk.close();
      disk = await ReplicaDisk.open(opts);
      assert.deepEqual(disk.recoveryPoints(), before);
      assert.deepEqual(disk.position(), { lineage: w.lineage, lastSeq: w.lastSeq, consistent: true, closed: false });
      assert.deepEqual(disk.openReport, { rolledBackRecords: 0, truncatedBytes: 0, finishedRestoreInPlace: false });
      assert.equal(await checkAllPoints(disk, points, dir, model.hash()), 21);
    } finally {
      await disk.close();
    }
  });
});

test('restores and applies called concurrently are serialised: each restore sees the state at its call', async () => {
  await withTempDir(async (dir) => {
    const opts = diskOptions(dir);
    const disk = await ReplicaDisk.open(opts);
    try {
      const w = new LineageWriter(newLineage(), prng(2), { size: SIZE });
      const model = new Model(SIZE);
      const points = new Map<string, string>();
      await applyAndTrack(disk, model, points, w.next({ time: 1, flags: START_AND_DONE, bookmark: 'app' }));
      const first = [...points.keys()][0] as string;
      const expectFirst = points.get(first);
      const hashes: string[] = [];
      const batches = Array.from({ length: 8 }, () => w.next({ time: 2 }));
      const work: Array<Promise<unknown>> = [];
      for (const [i, b] of batches.entries()) {
        work.push(disk.apply(b));
        model.apply(b);
        hashes.push(model.hash());
        work.push(disk.restore('latest', join(dir, `latest-${i}.img`)));
        work.push(disk.restore(first, join(dir, `first-${i}.img`)));
      }
      await Promise.all(work);
      for (let i = 0; i < batches.length; i++) {
        assert.equal(await fileHash(join(dir, `latest-${i}.img`)), hashes[i]);
        assert.equal(await fileHash(join(dir, `first-${i}.img`)), expectFirst);
      }
    } finally {
      await disk.close();
    }
  });
});

test('sequencing: duplicates, gaps, unknown lineages and superseded lineages', async () => {
  await withTempDir(async (dir) => {
    const disk = await ReplicaDisk.open(diskOptions(dir));
    try {
      const a = new LineageWriter(newLineage(), prng(3), { size: SIZE });
      const a1 = a.next({ time: 1, flags: START });
      const a2 = a.next({ time: 1 });
      const a3 = a.next({ time: 1 });

      // A lineage we have never seen must start at seq 1 with lineageStart.
      await assert.rejects(disk.apply(a2), (e: unknown) => e instanceof BoomerangError && e.code === 'LINEAGE_START_REQUIRED');
      await assert.rejects(disk.apply({ ...a1, flags: 0 }), (e: unknown) => e instanceof BoomerangError && e.code === 'LINEAGE_START_REQUIRED');
      assert.equal((await disk.apply(a1)).status, 'applied');
      const target = await fileHash(diskOptions(dir).targetPath);
      const journal = disk.health().journalBytes;

      assert.deepEqual(await disk.apply(a1), { status: 'duplicate', lineage: a.lineage, lastSeq: a1.lastSeq });
      await assert.rejects(disk.apply(a3), (e: unknown) => e instanceof SequenceGapError && e.code === 'SEQUENCE_GAP' && e.expectedSeq === a1.lastSeq + 1);
      // A resend with other boundaries that overlaps the applied history is a gap too.
      await assert.rejects(disk.apply({ ...a2, firstSeq: a1.lastSeq }), (e: unknown) => e instanceof SequenceGapError && e.expectedSeq === a1.lastSeq + 1);
      await assert.rejects(disk.apply({ ...a2, diskId: 'other' }), (e: unknown) => e instanceof BoomerangError && e.code === 'WRONG_DISK');
      await assert.rejects(
        disk.apply({ ...a2, extents: [{ offset: SIZE - 4096, length: 8192 }] }),
        (e: unknown) => e instanceof BoomerangError && e.code === 'EXTENT_OUT_OF_RANGE',
      );
      assert.equal(await fileHash(diskOptions(dir).targetPath), target, 'refused batches change nothing');
      assert.equal(disk.health().journalBytes, journal);
      assert.equal((await disk.apply(a2)).status, 'applied');

      // A new lineage supersedes the old one: the old one's batches, even its start, are obsolete.
      const b = new LineageWriter(newLineage(), prng(4), { size: SIZE });
      assert.equal((await disk.apply(b.next({ time: 2, flags: START }))).status, 'applied');
      assert.deepEqual(await disk.apply(a3), { status: 'obsolete', lineage: a.lineage, lastSeq: a3.lastSeq });
      assert.equal((await disk.apply(a1)).status, 'obsolete');
      assert.equal(disk.position()?.lineage, b.lineage);
      assert.equal(disk.position()?.consistent, false);
    } finally {
      await disk.close();
    }
  });
});

test('bookmarks taken before the resync is done are not recovery points', async () => {
  await withTempDir(async (dir) => {
    const opts = diskOptions(dir);
    let disk = await ReplicaDisk.open(opts);
    try {
      const w = new LineageWriter(newLineage(), prng(5), { size: SIZE });
      await disk.apply(w.next({ time: 1, flags: START, bookmark: 'app' }));
      await disk.apply(w.next({ time: 2, flags: BatchFlags.resync, bookmark: 'crash' }));
      assert.deepEqual(disk.recoveryPoints(), []);
      assert.equal(disk.health().ignoredBookmarks, 2);
      assert.equal(disk.position()?.consistent, false);
      // The batch that completes the resync is consistent, so its own bookmark counts.
      const done = w.next({ time: 3, flags: BatchFlags.resync | BatchFlags.resyncDone, bookmark: 'group' });
      await disk.apply(done);
      assert.deepEqual(disk.recoveryPoints(), [{ id: `${w.lineage}/${done.lastSeq}/group`, kind: 'group', time: 3, lineage: w.lineage, seq: done.lastSeq, bookmarkId: `bm-${done.lastSeq}` }]);
      await disk.close();
      disk = await ReplicaDisk.open(opts);
      assert.equal(disk.recoveryPoints().length, 1);
      assert.equal(disk.health().ignoredBookmarks, 2);
      assert.equal(disk.position()?.consistent, true);
    } finally {
      await disk.close();
    }
  });
});

test('restoreInPlace rolls the target back, discards later points and closes the lineage', async () => {
  await withTempDir(async (dir) => {
    const opts = diskOptions(dir, { segmentBytes: 256 * 1024 });
    let disk = await ReplicaDisk.open(opts);
    try {
      const w = new LineageWriter(newLineage(), prng(6), { size: SIZE });
      const model = new Model(SIZE);
      const points = new Map<string, string>();
      await applyAndTrack(disk, model, points, w.next({ time: 1, flags: START_AND_DONE }));
      for (let i = 0; i < 30; i++) await applyAndTrack(disk, model, points, w.next({ time: 2 + i, ...(i % 4 === 1 ? { bookmark: 'app' as const } : {}) }));
      const list = disk.recoveryPoints();
      const chosen = list[2];
      assert.ok(chosen);
      const later = w.next({ time: 100 });

      await disk.restoreInPlace(chosen.id);
      assert.equal(await fileHash(opts.targetPath), points.get(chosen.id));
      assert.deepEqual(disk.recoveryPoints(), list.slice(0, 3));
      assert.deepEqual(disk.position(), { lineage: w.lineage, lastSeq: chosen.seq, consistent: true, closed: true });
      assert.equal((await disk.apply(later)).status, 'obsolete');

      // The next data comes with a new lineage, and the older points still restore.
      const b = new LineageWriter(newLineage(), prng(7), { size: SIZE });
      const base = new Model(SIZE);
      (await readFile(opts.targetPath)).copy(base.bytes);
      await applyAndTrack(disk, base, points, b.next({ time: 200, flags: START_AND_DONE, bookmark: 'crash' }));
      await disk.close();
      disk = await ReplicaDisk.open(opts);
      assert.equal(disk.position()?.lineage, b.lineage);
      assert.equal((await disk.apply(later)).status, 'obsolete', 'the closed lineage stays closed after a restart');
      assert.equal(disk.recoveryPoints().length, 4);
      await checkAllPoints(disk, points, dir, base.hash());
    } finally {
      await disk.close();
    }
  });
});
