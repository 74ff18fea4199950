import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MasterTarget, type MasterTargetOptions } from '../../src/mt/main.js';
import { BatchFlags, type Batch } from '../../src/replication/batch.js';
import { BoomerangError } from '../../src/replication/errors.js';
import { newLineage } from '../../src/replication/position.js';
import { createLogger } from '../../src/runtime/log.js';
import { LineageWriter, Model, prng } from '../unit/mt-fixtures.js';
import { MiB, RawSender, sha256, sha256File, testPki, withDir, writeSeededFile } from '../helpers/stack.js';

const SIZE = 4 * MiB;

async function mtOptions(dir: string): Promise<MasterTargetOptions> {
  const { material, token } = await testPki();
  return { name: 'mt-test', listen: { host: '127.0.0.1', port: 0 }, retentionDir: join(dir, 'retention'), disks: [], material, token, log: createLogger('mt', 'silent') };
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

function rejectsWith(code: string): (err: unknown) => boolean {
  return (err) => err instanceof BoomerangError && err.code === code;
}

/** The batches of one lineage for `diskId`, tracked in a model; remembers the model at every bookmark. */
class Source {
  readonly w: LineageWriter;
  readonly model = new Model(SIZE);
  readonly atBookmark = new Map<string, string>();
  private t = 1_700_000_000_000;

  constructor(
    readonly diskId: string,
    seed: number,
  ) {
    this.w = new LineageWriter(newLineage(), prng(seed), { size: SIZE });
  }

  next(o: { flags?: number; bookmark?: 'crash' | 'app' } = {}): Batch {
    const b = { ...this.w.next({ time: (this.t += 1000), ...o }), diskId: this.diskId };
    this.model.apply(b);
    for (const bm of b.bookmarks) this.atBookmark.set(bm.id, this.model.hash());
    return b;
  }
}

async function sendAll(sender: RawSender, batches: Batch[]): Promise<void> {
  for (const b of batches) {
    const r = await sender.send(b);
    assert.equal(r.ack?.status, 'applied', `batch ${b.firstSeq}..${b.lastSeq}: ${JSON.stringify(r)}`);
  }
}

test('attach → batches apply → restoreDiskTo a bookmark and latest (replacing the file) → releaseDisk hands the target over and removes the journal', async () => {
  await withDir('mt-attach', async (dir) => {
    const mt = await MasterTarget.start(await mtOptions(dir));
    let sender: RawSender | undefined;
    try {
      assert.deepEqual(mt.diskIds(), []);
      const target = join(dir, 'replica', 'disk-a.img');
      assert.deepEqual(await mt.attachDisk({ id: 'disk-a', target, sizeBytes: SIZE }), { created: true, adopted: false });
      assert.equal((await stat(target)).size, SIZE);
      assert.deepEqual(await mt.attachDisk({ id: 'disk-a', target, sizeBytes: SIZE }), { created: false, adopted: false }, 'the same attach again is a no-op');
      await assert.rejects(mt.attachDisk({ id: 'disk-a', target: join(dir, 'other.img'), sizeBytes: SIZE }), rejectsWith('DISK_ATTACHED'));
      assert.deepEqual(mt.diskIds(), ['disk-a']);

      const src = new Source('disk-a', 1);
      sender = await RawSender.open(mt.endpoint!, 'ps');
      const batches = [src.next({ flags: BatchFlags.lineageStart | BatchFlags.resync }), src.next({ flags: BatchFlags.resync | BatchFlags.resyncDone, bookmark: 'crash' })];
      for (let i = 0; i < 13; i++) batches.push(src.next(i % 4 === 3 ? { bookmark: 'app' } : {}));
      await sendAll(sender, batches);
      assert.equal(await sha256File(target), src.model.hash(), 'the replica holds every applied batch');

      const status = mt.diskStatus('disk-a');
      assert.equal(status.frozen, false);
      assert.equal(status.points.length, 4);
      const bookmark = status.points[1]!;
      const out = join(dir, 'failover', 'disk-a.img');
      await mkdir(join(dir, 'failover'));
      // A bookmark id names its point; the restore freezes the disk.
      const r1 = await mt.restoreDiskTo('disk-a', bookmark.bookmarkId, out);
      assert.deepEqual(r1, { pointId: bookmark.id, time: bookmark.time });
      assert.equal(await sha256File(out), src.atBookmark.get(bookmark.bookmarkId), 'the file is the disk at that bookmark');
      assert.equal(await exists(`${out}.tmp`), false);
      assert.equal(mt.diskStatus('disk-a').frozen, true);

      // Frozen: a batch is refused retryably and nothing changes.
      const held = src.next();
      const refused = await sender.send(held);
      assert.equal(refused.nack?.code, 'DISK_FROZEN');
      assert.equal(refused.nack?.retryable, true);
      assert.equal(mt.diskStatus('disk-a').position?.lastSeq, batches.at(-1)!.lastSeq);

      // "Change recovery point": 'latest' is not at a point here (the last batches carry none).
      const r2 = await mt.restoreDiskTo('disk-a', 'latest', out);
      assert.equal(r2.pointId, 'latest');
      const expectedLatest = new Model(SIZE);
      for (const b of batches) expectedLatest.apply(b);
      assert.equal(await sha256File(out), expectedLatest.hash(), 'the file was replaced by the newest state');

      // Attaching again resumes; the held batch applies.
      assert.deepEqual(await mt.attachDisk({ id: 'disk-a', target, sizeBytes: SIZE }), { created: false, adopted: false });
      assert.equal(mt.diskStatus('disk-a').frozen, false);
      await sendAll(sender, [held]);
      const withBookmark = src.next({ bookmark: 'app' });
      await sendAll(sender, [withBookmark]);
      const r3 = await mt.restoreDiskTo('disk-a', 'latest', out);
      const newest = mt.diskStatus('disk-a').points.at(-1)!;
      assert.deepEqual(r3, { pointId: newest.id, time: newest.time }, "'latest' exactly at the newest point reports that point");
      assert.equal(await sha256File(out), src.model.hash());

      await assert.rejects(mt.restoreDiskTo('disk-a', 'no-such-point', out), rejectsWith('UNKNOWN_POINT'));

      // Release with hand-over: the replica becomes the machine's disk, the journal goes.
      const handTo = join(dir, 'site-a', 'disk-a.img');
      await mt.releaseDisk('disk-a', { handTo });
      assert.equal(await sha256File(handTo), src.model.hash());
      assert.equal(await exists(target), false);
      assert.equal(await exists(join(dir, 'retention', 'disk-a')), false, 'the journal directory is deleted');
      assert.deepEqual(mt.diskIds(), []);
      const file = JSON.parse(await readFile(join(dir, 'retention', 'attachments.json'), 'utf8')) as { disks: unknown[]; frozen: unknown[] };
      assert.deepEqual(file, { version: 1, disks: [], frozen: [] });
      await mt.releaseDisk('disk-a', { handTo }); // idempotent
      const unknown = await sender.send(src.next());
      assert.equal(unknown.nack?.code, 'UNKNOWN_DISK');
      assert.equal(unknown.nack?.retryable, true, 'the PS keeps batches of a disk the MT does not have');
    } finally {
      sender?.close();
      await mt.stop();
    }
  });
});

test('attachments and freezes survive a restart of the MT; configured disks may be empty', async () => {
  await withDir('mt-restart', async (dir) => {
    const opts = await mtOptions(dir);
    let mt = await MasterTarget.start(opts);
    let sender: RawSender | undefined;
    const a = new Source('disk-a', 2);
    const b = new Source('disk-b', 3);
    try {
      await mt.attachDisk({ id: 'disk-a', target: join(dir, 'a.img'), sizeBytes: SIZE });
      await mt.attachDisk({ id: 'disk-b', target: join(dir, 'b.img'), sizeBytes: SIZE });
      sender = await RawSender.open(mt.endpoint!, 'ps');
      await sendAll(sender, [a.next({ flags: BatchFlags.lineageStart | BatchFlags.resync | BatchFlags.resyncDone, bookmark: 'crash' }), a.next()]);
      await sendAll(sender, [b.next({ flags: BatchFlags.lineageStart | BatchFlags.resync | BatchFlags.resyncDone, bookmark: 'crash' })]);
      await mt.freezeDisk('disk-b');
      sender.close();
      sender = undefined;
      const before = { a: mt.diskStatus('disk-a'), b: mt.diskStatus('disk-b') };
      await mt.stop();

      mt = await MasterTarget.start(opts);
      assert.deepEqual(mt.diskIds().sort(), ['disk-a', 'disk-b']);
      assert.deepEqual(mt.diskStatus('disk-a').position, before.a.position);
      assert.deepEqual(mt.diskStatus('disk-a').points, before.a.points);
      assert.equal(mt.diskStatus('disk-a').frozen, false);
      assert.equal(mt.diskStatus('disk-b').frozen, true, 'the freeze is persisted');
      assert.equal(await sha256File(join(dir, 'a.img')), a.model.hash());
      assert.equal(await sha256File(join(dir, 'b.img')), b.model.hash());

      sender = await RawSender.open(mt.endpoint!, 'ps');
      await sendAll(sender, [a.next({ bookmark: 'app' })]);
      const held = b.next();
      assert.equal((await sender.send(held)).nack?.code, 'DISK_FROZEN');
      await mt.attachDisk({ id: 'disk-b', target: join(dir, 'b.img'), sizeBytes: SIZE });
      await sendAll(sender, [held]);
      assert.equal(await sha256File(join(dir, 'a.img')), a.model.hash());
      assert.equal(await sha256File(join(dir, 'b.img')), b.model.hash());
      const file = JSON.parse(await readFile(join(dir, 'retention', 'attachments.json'), 'utf8')) as { disks: { id: string }[]; frozen: string[] };
      assert.deepEqual(
        file.disks.map((d) => d.id),
        ['disk-a', 'disk-b'],
      );
      assert.deepEqual(file.frozen, []);
    } finally {
      sender?.close();
      await mt.stop();
    }
  });
});

test('adopt renames an existing disk into place; a size mismatch is refused and changes nothing', async () => {
  await withDir('mt-adopt', async (dir) => {
    const mt = await MasterTarget.start(await mtOptions(dir));
    try {
      const machineDisk = join(dir, 'vm', 'disk0.img');
      await mkdir(join(dir, 'vm'));
      const content = await writeSeededFile(machineDisk, SIZE, 77);
      const target = join(dir, 'vm', 'disk0.img.replica');

      await assert.rejects(mt.attachDisk({ id: 'disk0', target, sizeBytes: SIZE * 2, adopt: machineDisk }), rejectsWith('DISK_SIZE_MISMATCH'));
      assert.equal(await sha256File(machineDisk), sha256(content), 'the refused adoption left the disk alone');
      assert.equal(await exists(target), false);

      assert.deepEqual(await mt.attachDisk({ id: 'disk0', target, sizeBytes: SIZE, adopt: machineDisk }), { created: false, adopted: true });
      assert.equal(await exists(machineDisk), false);
      assert.equal(await sha256File(target), sha256(content), 'the replica starts as the machine disk');
      assert.equal(mt.diskStatus('disk0').position, undefined, 'with a new journal');

      // An existing target of another size is refused too.
      const wrong = join(dir, 'wrong.img');
      await writeSeededFile(wrong, SIZE / 2, 5);
      await assert.rejects(mt.attachDisk({ id: 'disk1', target: wrong, sizeBytes: SIZE }), rejectsWith('DISK_SIZE_MISMATCH'));
      assert.deepEqual(mt.diskIds(), ['disk0']);

      // Released without handTo: target and journal deleted.
      await mt.releaseDisk('disk0');
      assert.equal(await exists(target), false);
      assert.equal(await exists(join(dir, 'retention', 'disk0')), false);
    } finally {
      await mt.stop();
    }
  });
});

test('a release interrupted by a crash is finished on the next start', async () => {
  await withDir('mt-release-crash', async (dir) => {
    const opts = await mtOptions(dir);
    let mt = await MasterTarget.start(opts);
    const target = join(dir, 'r.img');
    const handTo = join(dir, 'machine', 'disk0.img');
    try {
      await mt.attachDisk({ id: 'disk0', target, sizeBytes: SIZE });
      const sender = await RawSender.open(mt.endpoint!, 'ps');
      const src = new Source('disk0', 9);
      await sendAll(sender, [src.next({ flags: BatchFlags.lineageStart | BatchFlags.resync | BatchFlags.resyncDone, bookmark: 'crash' })]);
      sender.close();
      await mt.stop();
      // What a crash right after the intent was written leaves behind.
      const path = join(dir, 'retention', 'attachments.json');
      const file = JSON.parse(await readFile(path, 'utf8')) as { disks: { releasing?: object }[] };
      file.disks[0]!.releasing = { handTo };
      await writeFile(path, JSON.stringify(file));

      mt = await MasterTarget.start(opts);
      assert.deepEqual(mt.diskIds(), []);
      assert.equal(await sha256File(handTo), src.model.hash(), 'the replica was handed over');
      assert.equal(await exists(target), false);
      assert.equal(await exists(join(dir, 'retention', 'disk0')), false);
      assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), { version: 1, disks: [], frozen: [] });
    } finally {
      await mt.stop();
    }
  });
});
