import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BoomerangError } from '../../src/replication/errors.js';
import { newLineage } from '../../src/replication/position.js';
import { RetentionFullError } from '../../src/mt/errors.js';
import { ReplicaDisk } from '../../src/mt/replica.js';
import {
  applyAndTrack,
  BLOCK,
  checkAllPoints,
  Clock,
  diskOptions,
  fileHash,
  journalHash,
  LineageWriter,
  Model,
  prng,
  segmentPaths,
  START_AND_DONE,
  fullDisk,
  withTempDir,
} from './mt-fixtures.js';

const SIZE = 4 * 1024 * 1024;
const MINUTE = 60_000;

/** The listed points are the newest part of every point ever created, in order. */
function assertSuffix(listed: string[], created: string[]): void {
  assert.deepEqual(listed, created.slice(created.length - listed.length));
}

async function journalFilesBytes(retentionDir: string): Promise<number> {
  let n = 0;
  for (const p of await segmentPaths(retentionDir)) n += (await stat(p)).size;
  return n;
}

test('pruning by retention window removes the oldest points only, and the rest still restore', async () => {
  await withTempDir(async (dir) => {
    const clock = new Clock();
    const opts = diskOptions(dir, { now: clock.now, segmentBytes: 64 * 1024, retentionMs: 10 * MINUTE });
    const disk = await ReplicaDisk.open(opts);
    try {
      const w = new LineageWriter(newLineage(), prng(21), { size: SIZE, maxExtents: 3, maxBlocks: 4 });
      const model = new Model(SIZE);
      const points = new Map<string, string>();
      await applyAndTrack(disk, model, points, w.next({ time: clock.t, flags: START_AND_DONE, extents: fullDisk(SIZE) }));
      for (let i = 0; i < 40; i++) {
        clock.t += MINUTE;
        await applyAndTrack(disk, model, points, w.next({ time: clock.t, ...(i % 2 === 0 ? { bookmark: 'crash' as const } : {}) }));
        const listed = disk.recoveryPoints();
        assertSuffix(
          listed.map((p) => p.id),
          [...points.keys()],
        );
        assert.ok(listed.length > 0);
      }
      const h = disk.health();
      assert.ok(h.segments < 20, `old segments were pruned (${h.segments} left)`);
      assert.equal(h.journalBytes, await journalFilesBytes(opts.retentionDir));
      assert.ok(points.size > disk.recoveryPoints().length);
      await checkAllPoints(disk, points, dir, model.hash());

      // Much later, with nothing applied meanwhile: only the newest segment stays.
      clock.t += 24 * 60 * MINUTE;
      const { segmentsRemoved, bytesFreed } = await disk.prune();
      assert.ok(segmentsRemoved > 0 && bytesFreed > 0);
      assert.equal(disk.health().segments, 1);
      assert.equal(disk.health().journalBytes, await journalFilesBytes(opts.retentionDir));
      await checkAllPoints(disk, points, dir, model.hash());
    } finally {
      await disk.close();
    }
  });
});

test('points inside the retention window are never pruned', async () => {
  await withTempDir(async (dir) => {
    const clock = new Clock();
    const window = 7 * MINUTE;
    const disk = await ReplicaDisk.open(diskOptions(dir, { now: clock.now, segmentBytes: 32 * 1024, retentionMs: window }));
    try {
      const w = new LineageWriter(newLineage(), prng(22), { size: SIZE, maxExtents: 2, maxBlocks: 3 });
      const model = new Model(SIZE);
      const points = new Map<string, string>();
      const created: Array<{ id: string; time: number }> = [];
      await applyAndTrack(disk, model, points, w.next({ time: clock.t, flags: START_AND_DONE, extents: fullDisk(SIZE) }));
      for (let i = 0; i < 50; i++) {
        clock.t += MINUTE;
        const before = new Set(points.keys());
        await applyAndTrack(disk, model, points, w.next({ time: clock.t, bookmark: 'app' }));
        for (const id of points.keys()) if (!before.has(id)) created.push({ id, time: clock.t });
        const listed = new Set(disk.recoveryPoints().map((p) => p.id));
        for (const c of created) if (c.time >= clock.t - window) assert.ok(listed.has(c.id), `point of ${(clock.t - c.time) / MINUTE} min ago was pruned`);
        assertSuffix([...listed], created.map((c) => c.id));
      }
      assert.ok(disk.recoveryPoints().length < created.length, 'older points were pruned');
    } finally {
      await disk.close();
    }
  });
});

test('pruning by size cap keeps the journal under the cap and the remaining points restorable', async () => {
  await withTempDir(async (dir) => {
    const cap = 600 * 1024;
    const opts = diskOptions(dir, { segmentBytes: 128 * 1024, maxJournalBytes: cap });
    const disk = await ReplicaDisk.open(opts);
    try {
      const w = new LineageWriter(newLineage(), prng(23), { size: SIZE, maxExtents: 4, maxBlocks: 8, zeroShare: 0.1 });
      const model = new Model(SIZE);
      const points = new Map<string, string>();
      await applyAndTrack(disk, model, points, w.next({ time: 1, flags: START_AND_DONE, extents: fullDisk(SIZE) }));
      for (let i = 0; i < 80; i++) {
        await applyAndTrack(disk, model, points, w.next({ time: 2 + i, ...(i % 3 === 0 ? { bookmark: 'crash' as const } : {}) }));
        assert.ok(disk.health().journalBytes <= cap);
        assert.equal(disk.health().journalBytes, await journalFilesBytes(opts.retentionDir));
        assertSuffix(
          disk.recoveryPoints().map((p) => p.id),
          [...points.keys()],
        );
      }
      assert.ok(disk.recoveryPoints().length > 3);
      assert.ok(disk.recoveryPoints().length < points.size);
      await checkAllPoints(disk, points, dir, model.hash());
    } finally {
      await disk.close();
    }
  });
});

test('a restore in progress pins the segments it reads: pruning waits for it', async () => {
  await withTempDir(async (dir) => {
    const clock = new Clock();
    const cap = 512 * 1024;
    const opts = diskOptions(dir, { now: clock.now, segmentBytes: 64 * 1024, maxJournalBytes: cap, retentionMs: 10 * MINUTE });
    const disk = await ReplicaDisk.open(opts);
    try {
      const w = new LineageWriter(newLineage(), prng(27), { size: SIZE, maxExtents: 4, maxBlocks: 8, zeroShare: 0 });
      const model = new Model(SIZE);
      const points = new Map<string, string>();
      await applyAndTrack(disk, model, points, w.next({ time: clock.t, flags: START_AND_DONE, extents: fullDisk(SIZE) }));
      for (let i = 0; i < 12; i++) await applyAndTrack(disk, model, points, w.next({ time: clock.t, ...(i % 2 === 0 ? { bookmark: 'crash' as const } : {}) }));
      const oldest = disk.recoveryPoints()[0];
      assert.ok(oldest);
      const segments = disk.health().segments;
      assert.ok(segments > 2);

      // The restore holds the disk only while it copies the target; the pin outlives that.
      // A batch that could only fit by pruning the pinned segments is refused meanwhile…
      const big = w.next({ time: clock.t, extents: [{ offset: 0, length: 96 * BLOCK, data: Buffer.alloc(96 * BLOCK, 0x6d) }] });
      const restoring = disk.restore(oldest.id, join(dir, 'oldest.img'));
      await assert.rejects(disk.apply(big), (e: unknown) => e instanceof RetentionFullError);
      // …and so is pruning by age.
      clock.t += 60 * MINUTE;
      const restoringAgain = disk.restore(oldest.id, join(dir, 'oldest-2.img'));
      assert.deepEqual(await disk.prune(), { segmentsRemoved: 0, bytesFreed: 0 });
      await Promise.all([restoring, restoringAgain]);
      assert.equal(await fileHash(join(dir, 'oldest.img')), points.get(oldest.id));
      assert.equal(await fileHash(join(dir, 'oldest-2.img')), points.get(oldest.id));

      // Once the restores are done, the same prune and the same batch go through.
      assert.ok((await disk.prune()).segmentsRemoved > 0);
      await applyAndTrack(disk, model, points, big);
      assert.ok(disk.health().journalBytes <= cap);
      await checkAllPoints(disk, points, dir, model.hash());
    } finally {
      await disk.close();
    }
  });
});

test('a batch that cannot fit under the cap is refused with RETENTION_FULL and changes nothing', async () => {
  await withTempDir(async (dir) => {
    const opts = diskOptions(dir, { maxJournalBytes: 64 * 1024 });
    let disk = await ReplicaDisk.open(opts);
    try {
      const w = new LineageWriter(newLineage(), prng(24), { size: SIZE, maxBlocks: 2, maxExtents: 2 });
      await disk.apply(w.next({ time: 1, flags: START_AND_DONE, extents: fullDisk(SIZE) }));
      const big = w.next({ time: 2, extents: [{ offset: 0, length: 32 * BLOCK, data: Buffer.alloc(32 * BLOCK, 7) }] });
      const target = await fileHash(opts.targetPath);
      const journal = await journalHash(opts.retentionDir);
      await assert.rejects(disk.apply(big), (e: unknown) => e instanceof RetentionFullError && e.code === 'RETENTION_FULL' && e.retryable);
      assert.equal(disk.health().paused, true);
      assert.equal(await fileHash(opts.targetPath), target);
      assert.equal(await journalHash(opts.retentionDir), journal);
      await disk.close();
      disk = await ReplicaDisk.open({ ...opts, maxJournalBytes: 1024 * 1024 });
      assert.equal((await disk.apply(big)).status, 'applied');
      assert.equal(disk.health().paused, false);
    } finally {
      await disk.close();
    }
  });
});

for (const step of ['undo', 'target', 'commit'] as const) {
  test(`ENOSPC at the ${step} step: RETENTION_FULL, target and journal as before, the retry succeeds`, async () => {
    await withTempDir(async (dir) => {
      let full = false;
      const opts = diskOptions(dir);
      const disk = await ReplicaDisk.open({
        ...opts,
        faultHook: (s) => {
          if (full && s === step) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
        },
      });
      try {
        const w = new LineageWriter(newLineage(), prng(25), { size: SIZE, maxBlocks: 16 });
        const model = new Model(SIZE);
        const points = new Map<string, string>();
        await applyAndTrack(disk, model, points, w.next({ time: 1, flags: START_AND_DONE, extents: fullDisk(SIZE) }));
        for (let i = 0; i < 6; i++) await applyAndTrack(disk, model, points, w.next({ time: 2 + i, bookmark: 'crash' }));
        const next = w.next({ time: 10, bookmark: 'app' });
        const target = await fileHash(opts.targetPath);
        const journal = await journalHash(opts.retentionDir);
        full = true;
        await assert.rejects(disk.apply(next), (e: unknown) => e instanceof BoomerangError && e.code === 'RETENTION_FULL' && e.retryable);
        assert.equal(disk.health().paused, true);
        assert.equal(await fileHash(opts.targetPath), target);
        assert.equal(await journalHash(opts.retentionDir), journal);
        full = false;
        await applyAndTrack(disk, model, points, next);
        assert.equal(disk.health().paused, false);
        assert.equal(await fileHash(opts.targetPath), model.hash());
        await checkAllPoints(disk, points, dir, model.hash());
      } finally {
        await disk.close();
      }
    });
  });
}

// Needs root to mount the tmpfs (CI runs as root); it fails rather than skips without it.
test('a full retention volume (tmpfs) pauses apply without harm; freeing space resumes it', async () => {
  await withTempDir(async (dir) => {
    const mnt = join(dir, 'retention-volume');
    await mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt], { stdio: 'pipe' });
    try {
      const opts = diskOptions(dir, { retentionDir: join(mnt, 'disk-0') });
      const disk = await ReplicaDisk.open(opts);
      try {
        const w = new LineageWriter(newLineage(), prng(26), { size: SIZE, maxExtents: 4, maxBlocks: 16, zeroShare: 0 });
        const model = new Model(SIZE);
        const points = new Map<string, string>();
        await applyAndTrack(disk, model, points, w.next({ time: 1, flags: START_AND_DONE, extents: fullDisk(SIZE, 0xab) }));
        for (let i = 0; i < 8; i++) await applyAndTrack(disk, model, points, w.next({ time: 2 + i, bookmark: 'crash' }));

        // Fill the volume to the last byte (a short write, then ENOSPC).
        const filler = join(mnt, 'filler');
        const fh = await open(filler, 'w');
        const chunk = Buffer.alloc(64 * 1024, 1);
        try {
          for (let i = 0; i < 4 * 16 + 1; i++) await fh.write(chunk);
          assert.fail('the 4 MiB volume never filled up');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        } finally {
          await fh.close();
        }

        const next = w.next({ time: 20, bookmark: 'app' });
        const target = await fileHash(opts.targetPath);
        const journal = await journalHash(opts.retentionDir);
        for (let attempt = 0; attempt < 2; attempt++) {
          await assert.rejects(disk.apply(next), (e: unknown) => e instanceof RetentionFullError && e.retryable);
          assert.equal(disk.health().paused, true);
          assert.equal(await fileHash(opts.targetPath), target, 'the target is untouched');
          assert.equal(await journalHash(opts.retentionDir), journal, 'the journal is intact (partial record cut off)');
        }
        await checkAllPoints(disk, points, dir, model.hash());

        await rm(filler);
        await applyAndTrack(disk, model, points, next);
        assert.equal(disk.health().paused, false);
        await applyAndTrack(disk, model, points, w.next({ time: 21, bookmark: 'crash' }));
        assert.equal(await fileHash(opts.targetPath), model.hash());
        await checkAllPoints(disk, points, dir, model.hash());
      } finally {
        await disk.close();
      }
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
