import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readFile, rm, truncate, writeFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import type { Batch } from '../../src/replication/batch.js';
import { FileDisk } from '../../src/replication/disk.js';
import { BoomerangError, CorruptionError } from '../../src/replication/errors.js';
import { newLineage } from '../../src/replication/position.js';
import { parseRecordHeader, RECORD_HEADER_BYTES, RecordType } from '../../src/mt/frame.js';
import { ReplicaDisk, type ReplicaDiskOptions } from '../../src/mt/replica.js';
import {
  applyAndTrack,
  checkAllPoints,
  diskOptions,
  fileHash,
  LineageWriter,
  Model,
  prng,
  segmentPaths,
  START_AND_DONE,
  withTempDir,
} from './mt-fixtures.js';

const SIZE = 4 * 1024 * 1024;

interface Rec {
  offset: number;
  type: number;
  length: number;
}

async function records(path: string): Promise<Rec[]> {
  const buf = await readFile(path);
  const out: Rec[] = [];
  for (let off = 0; off < buf.length; ) {
    const h = parseRecordHeader(buf.subarray(off, off + RECORD_HEADER_BYTES));
    if (!h) break;
    out.push({ offset: off, type: h.type, length: RECORD_HEADER_BYTES + h.payloadLength });
    off += RECORD_HEADER_BYTES + h.payloadLength;
  }
  return out;
}

async function flipByte(path: string, at: number): Promise<void> {
  const buf = await readFile(path);
  buf[at] = (buf[at] as number) ^ 0x5a;
  await writeFile(path, buf);
}

/**
 * A history on disk: batches 1..n applied, every 3rd with a bookmark; then batch `last` is
 * prepared (not applied). The target's and the newest segment's contents before it are saved.
 */
async function history(dir: string, n = 12) {
  const opts = diskOptions(dir);
  const disk = await ReplicaDisk.open(opts);
  const w = new LineageWriter(newLineage(), prng(11), { size: SIZE, maxExtents: 6, maxBlocks: 32, zeroShare: 0.2 });
  const model = new Model(SIZE);
  const points = new Map<string, string>();
  await applyAndTrack(disk, model, points, w.next({ time: 1, flags: START_AND_DONE }));
  for (let i = 0; i < n; i++) await applyAndTrack(disk, model, points, w.next({ time: 2 + i, ...(i % 3 === 0 ? { bookmark: 'crash' as const } : {}) }));
  const before = model.hash();
  const beforePos = disk.position();
  await copyFile(opts.targetPath, join(dir, 'pre.img'));
  const [segment] = await segmentPaths(opts.retentionDir);
  assert.ok(segment);
  const recordsBefore = (await records(segment)).length;
  const last = w.next({ time: 100, bookmark: 'app' });
  return { opts, disk, model, points, before, beforePos, segment, recordsBefore, last };
}

/** Writes some extents of a batch straight to a file: a target that a crash caught mid-apply. */
async function writeSome(path: string, b: Batch, count: number): Promise<void> {
  const d = await FileDisk.open(path);
  try {
    for (const e of b.extents.slice(0, count)) await (e.data ? d.write(e.offset, e.data) : d.writeZeroes(e.offset, e.length));
  } finally {
    await d.close();
  }
}

async function reopenAndCheck(dir: string, opts: ReplicaDiskOptions, h: Awaited<ReturnType<typeof history>>) {
  const disk = await ReplicaDisk.open(opts);
  try {
    assert.equal(await fileHash(opts.targetPath), h.before, 'the target is back at the last committed batch');
    assert.deepEqual(disk.position(), h.beforePos);
    assert.equal(await checkAllPoints(disk, h.points, dir, h.before), 4);
    // The process server resends the batch: it applies normally.
    assert.equal((await disk.apply(h.last)).status, 'applied');
    h.model.apply(h.last);
    assert.equal(await fileHash(opts.targetPath), h.model.hash());
    return disk.openReport;
  } finally {
    await disk.close();
  }
}

test('crash with a torn undo record: the torn tail is cut off, the target was never touched', async () => {
  await withTempDir(async (dir) => {
    const h = await history(dir);
    await h.disk.apply(h.last);
    await h.disk.close();
    const recs = await records(h.segment);
    const undo = recs[h.recordsBefore];
    assert.equal(undo?.type, RecordType.undo);
    await copyFile(join(dir, 'pre.img'), h.opts.targetPath);
    await truncate(h.segment, undo.offset + Math.floor(undo.length / 2));
    const report = await reopenAndCheck(dir, h.opts, h);
    assert.deepEqual(report, { rolledBackRecords: 0, truncatedBytes: Math.floor(undo.length / 2), finishedRestoreInPlace: false });
  });
});

for (const applied of [0, 1, 'all'] as const) {
  test(`crash after the undo record, with ${applied} extents of the batch on the target: rolled back on open`, async () => {
    await withTempDir(async (dir) => {
      const h = await history(dir);
      await h.disk.apply(h.last);
      await h.disk.close();
      const recs = await records(h.segment);
      const commit = recs.at(-1);
      assert.equal(commit?.type, RecordType.commit);
      await truncate(h.segment, commit.offset);
      if (applied !== 'all') {
        await copyFile(join(dir, 'pre.img'), h.opts.targetPath);
        await writeSome(h.opts.targetPath, h.last, applied);
      }
      const report = await reopenAndCheck(dir, h.opts, h);
      assert.equal(report.rolledBackRecords, 1);
      assert.equal(report.truncatedBytes, commit.offset - (recs[h.recordsBefore] as Rec).offset);
    });
  });
}

test('crash with a torn commit record: the batch is rolled back', async () => {
  await withTempDir(async (dir) => {
    const h = await history(dir);
    await h.disk.apply(h.last);
    await h.disk.close();
    const commit = (await records(h.segment)).at(-1) as Rec;
    await truncate(h.segment, commit.offset + commit.length - 7);
    const report = await reopenAndCheck(dir, h.opts, h);
    assert.equal(report.rolledBackRecords, 1);
  });
});

test('a zeroed tail (size persisted, data not) counts as torn', async () => {
  await withTempDir(async (dir) => {
    const h = await history(dir);
    await h.disk.close();
    await writeFile(h.segment, Buffer.alloc(3000), { flag: 'a' });
    const report = await reopenAndCheck(dir, h.opts, h);
    assert.equal(report.truncatedBytes, 3000);
  });
});

test('a damaged record in the middle of the journal is a CorruptionError, never skipped', async () => {
  for (const where of ['commit payload', 'undo header', 'commit header'] as const) {
    await withTempDir(async (dir) => {
      const h = await history(dir);
      await h.disk.close();
      const recs = await records(h.segment);
      const undo = recs.filter((r) => r.type === RecordType.undo)[3] as Rec;
      const commit = recs.filter((r) => r.type === RecordType.commit)[3] as Rec;
      const at = where === 'commit payload' ? commit.offset + RECORD_HEADER_BYTES + 20 : where === 'undo header' ? undo.offset + 9 : commit.offset + 2;
      await flipByte(h.segment, at);
      const target = await fileHash(h.opts.targetPath);
      await assert.rejects(ReplicaDisk.open(h.opts), (e: unknown) => e instanceof CorruptionError && e.code === 'JOURNAL_CORRUPT', where);
      assert.equal(await fileHash(h.opts.targetPath), target, 'a failed open changes nothing');
    });
  }
});

test('a damaged undo payload fails the restores that need it, and only those', async () => {
  await withTempDir(async (dir) => {
    const h = await history(dir);
    await h.disk.close();
    const recs = await records(h.segment);
    // The undo record of batch 8 is needed by the three points before it, not by the one after it.
    const undo = recs.filter((r) => r.type === RecordType.undo)[8] as Rec;
    await flipByte(h.segment, undo.offset + undo.length - 1);
    const disk = await ReplicaDisk.open(h.opts);
    try {
      const points = disk.recoveryPoints();
      assert.equal(points.length, 4);
      for (const [i, p] of points.entries()) {
        const out = join(dir, `r${i}.img`);
        if (i < 3) {
          await assert.rejects(disk.restore(p.id, out), (e: unknown) => e instanceof CorruptionError, p.id);
          await assert.rejects(access(out), 'a failed restore leaves no file behind');
        } else {
          await disk.restore(p.id, out);
          assert.equal(await fileHash(out), h.points.get(p.id));
        }
      }
    } finally {
      await disk.close();
    }
  });
});

for (const step of ['rollback', 'cut'] as const) {
  test(`an in-place restore interrupted at ${step} is finished when the disk is reopened`, async () => {
    await withTempDir(async (dir) => {
      const opts = diskOptions(dir, { segmentBytes: 128 * 1024 });
      let disk = await ReplicaDisk.open({
        ...opts,
        faultHook: (s) => {
          if (s === step) throw new Error(`simulated crash at ${step}`);
        },
      });
      const w = new LineageWriter(newLineage(), prng(12), { size: SIZE, maxBlocks: 32 });
      const model = new Model(SIZE);
      const points = new Map<string, string>();
      await applyAndTrack(disk, model, points, w.next({ time: 1, flags: START_AND_DONE }));
      for (let i = 0; i < 24; i++) await applyAndTrack(disk, model, points, w.next({ time: 2 + i, ...(i % 4 === 0 ? { bookmark: 'app' as const } : {}) }));
      const list = disk.recoveryPoints();
      const chosen = list[1] as (typeof list)[number];
      await assert.rejects(disk.restoreInPlace(chosen.id), /simulated crash/);
      await assert.rejects(disk.apply(w.next({ time: 50 })), (e: unknown) => e instanceof BoomerangError && e.code === 'REPLICA_FAILED');
      await disk.close();
      const segs = await segmentPaths(opts.retentionDir);
      assert.ok(segs.length > 3);
      // A crash while cutting: the newest segment is already gone (the target is rolled back by then).
      if (step === 'cut') await rm(segs.at(-1) as string);
      disk = await ReplicaDisk.open(opts);
      try {
        assert.equal(disk.openReport.finishedRestoreInPlace, true);
        assert.equal(await fileHash(opts.targetPath), points.get(chosen.id));
        assert.deepEqual(disk.recoveryPoints(), list.slice(0, 2));
        assert.deepEqual(disk.position(), { lineage: w.lineage, lastSeq: chosen.seq, consistent: true, closed: true });
        await checkAllPoints(disk, points, dir, points.get(chosen.id) as string);
      } finally {
        await disk.close();
      }
    });
  });
}

test('a segment left half-created by a crash is removed; a missing target with a journal is refused', async () => {
  await withTempDir(async (dir) => {
    const h = await history(dir, 3);
    await h.disk.close();
    const tmp = `${h.segment.slice(0, -'0.seg'.length)}1.seg.tmp`;
    await writeFile(tmp, 'partial');
    const disk = await ReplicaDisk.open(h.opts);
    await disk.close();
    await assert.rejects(access(tmp));
    await rm(h.opts.targetPath);
    await assert.rejects(ReplicaDisk.open(h.opts), (e: unknown) => e instanceof BoomerangError && e.code === 'TARGET_MISSING');
  });
});

test('a second opener of the same retention directory is refused while the first holds it', async () => {
  await withTempDir(async (dir) => {
    const disk = await ReplicaDisk.open(diskOptions(dir));
    try {
      await assert.rejects(ReplicaDisk.open(diskOptions(dir)), (e: unknown) => e instanceof BoomerangError && e.code === 'DISK_IN_USE');
    } finally {
      await disk.close();
    }
    await (await ReplicaDisk.open(diskOptions(dir))).close();
  });
});
