import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MtConfigSchema } from '../../src/cli/mt.js';
import { blobServiceClient } from '../../src/fabrics/azure/azure-storage.js';
import { MasterTarget, type ListedPoint } from '../../src/mt/main.js';
import { DiskStore } from '../../src/replication/disk-store.js';
import { validateConfig } from '../../src/runtime/config.js';
import { startTestAzurite, type TestAzurite } from '../helpers/azurite.js';
import { MiB, Stack, Writer, sha256, sha256File, withDir } from '../helpers/stack.js';
import { writeImage } from './resync-fixtures.js';

/**
 * Recovery points of a page-blob replica kept as blob snapshots, against a real Azurite over
 * HTTPS: each snapshot holds exactly the state its point names (the same bytes as the journal
 * restore and as the source at the bookmark), snapshots go with their points when the journal is
 * pruned and with the disk when it is released, and a restore of a point that has a snapshot is a
 * server-side copy of it that equals the journal's restore.
 */

const ACCOUNT = 'lab';
const DISK = 'disk0';

let azurite: TestAzurite;
let store: DiskStore;

before(async () => {
  azurite = await startTestAzurite();
  store = new DiskStore({ [ACCOUNT]: azurite.account });
});

after(async () => {
  await azurite?.stop();
});

function blob(container: string, name: string): string {
  return `azblob://${ACCOUNT}/${container}/${name}`;
}

function pageBlob(container: string, name: string) {
  return blobServiceClient(azurite.account).getContainerClient(container).getPageBlobClient(name);
}

/** sha256 of a whole blob (or one of its snapshots), read directly from the service. */
async function hashBlob(container: string, name: string, snapshot?: string): Promise<string> {
  const base = pageBlob(container, name);
  const client = snapshot === undefined ? base : base.withSnapshot(snapshot);
  const size = (await client.getProperties()).contentLength ?? 0;
  const h = createHash('sha256');
  for (let at = 0; at < size; at += 4 * MiB) h.update(await client.downloadToBuffer(at, Math.min(4 * MiB, size - at)));
  return h.digest('hex');
}

/** Every snapshot in a container: blob name, snapshot id and its metadata. */
async function snapshotsIn(container: string): Promise<Array<{ name: string; snapshot: string; metadata: Record<string, string> }>> {
  const c = blobServiceClient(azurite.account).getContainerClient(container);
  if (!(await c.exists())) return [];
  const out: Array<{ name: string; snapshot: string; metadata: Record<string, string> }> = [];
  for await (const b of c.listBlobsFlat({ includeSnapshots: true, includeMetadata: true })) if (b.snapshot) out.push({ name: b.name, snapshot: b.snapshot, metadata: b.metadata ?? {} });
  return out.sort((a, b) => a.snapshot.localeCompare(b.snapshot));
}

async function blobNames(container: string): Promise<string[]> {
  const c = blobServiceClient(azurite.account).getContainerClient(container);
  if (!(await c.exists())) return [];
  const names: string[] = [];
  for await (const b of c.listBlobsFlat({ includeSnapshots: true })) names.push(b.name);
  return names.sort();
}

/** Writes through NBD, takes a bookmark and waits until the MT applied it; returns the point it made. */
async function round(s: Stack, w: Writer, writes: number, kind: 'app' | 'crash', id: string): Promise<ListedPoint> {
  await w.random(writes, 8);
  await w.client.flush();
  s.agent!.bookmark(DISK, kind, id);
  await s.sync(DISK);
  const p = s.mt.listPoints(DISK).find((x) => x.bookmarkId === id);
  assert.ok(p, `bookmark ${id} made a recovery point`);
  return p;
}

test('every recovery point of a page-blob replica gets a snapshot holding exactly its state; a restore from it equals the journal restore; release deletes them', async () => {
  await withDir('blob-points', async (dir) => {
    const SIZE = 16 * MiB;
    const container = 'bp-replicas';
    await mkdir(join(dir, 'site-a'), { recursive: true });
    await writeImage(join(dir, 'site-a', `${DISK}.img`), SIZE, 601);
    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE }], replicaLocation: (id) => blob(container, id), mt: { diskStore: store, blobSnapshots: true } });
    let w: Writer | undefined;
    try {
      await s.sync(DISK);
      const model = await readFile(join(dir, 'site-a', `${DISK}.img`));
      const expected = new Map<string, string>();
      const first = s.mt.listPoints(DISK);
      assert.equal(first.length, 1, 'the initial replication made one point');
      expected.set(first[0]!.id, sha256(model));

      w = await Writer.connect(s.nbdSocket, DISK, model, 700);
      for (let i = 0; i < 4; i++) {
        const p = await round(s, w, 40, i % 2 === 0 ? 'app' : 'crash', `bm-${i}`);
        expected.set(p.id, sha256(model));
      }
      // Writes after the last point: the replica's newest state is no point's.
      await w.random(40, 8);
      await w.client.flush();
      await s.sync(DISK);

      const points = s.mt.listPoints(DISK);
      assert.deepEqual(points.map((p) => p.id).sort(), [...expected.keys()].sort());
      const status = s.mt.diskStatus(DISK);
      assert.equal(status.blobSnapshots.enabled, true);
      assert.equal(status.blobSnapshots.taken, expected.size);
      assert.equal(status.blobSnapshots.failures, 0);
      const inAzure = await snapshotsIn(container);
      assert.equal(inAzure.length, expected.size, 'one snapshot per point (one state each)');

      for (const [i, p] of points.entries()) {
        assert.ok(p.blobSnapshot, `point ${p.id} is listed with its snapshot`);
        const snap = inAzure.find((x) => x.snapshot === p.blobSnapshot);
        assert.ok(snap && snap.name === DISK, 'the snapshot is one of the replica blob');
        assert.ok(snap.metadata.boomerangpoints?.split(' ').includes(p.id), 'its metadata names the point');
        assert.equal(snap.metadata.boomeranglineage, p.lineage);
        assert.equal(snap.metadata.boomerangseq, String(p.seq));
        const fromSnapshot = await hashBlob(container, DISK, p.blobSnapshot);
        const journal = join(dir, `journal-${i}.img`);
        await s.mt.disk(DISK).restore(p.id, journal);
        assert.equal(await sha256File(journal), fromSnapshot, `point ${p.id}: the snapshot equals the journal restore`);
        assert.equal(fromSnapshot, expected.get(p.id), `point ${p.id}: the snapshot equals the source at the bookmark`);
      }

      // restoreDiskTo a blob of the account: a server-side copy of the snapshot.
      const target = points[2]!;
      const r = await s.mt.restoreDiskTo(DISK, target.id, blob('bp-restores', 'from-snapshot'));
      assert.equal(s.mt.diskStatus(DISK).blobSnapshots.restored, 1, 'restored from the snapshot');
      assert.equal(r.pointId, target.id);
      assert.equal(await hashBlob('bp-restores', 'from-snapshot'), expected.get(target.id));
      await s.mt.restoreDiskTo(DISK, target.id, join(dir, 'restored.img'));
      assert.equal(s.mt.diskStatus(DISK).blobSnapshots.restored, 1, 'a file is restored through the journal');
      assert.equal(await sha256File(join(dir, 'restored.img')), expected.get(target.id));
      assert.deepEqual(await blobNames('bp-restores'), ['from-snapshot'], 'no temporary copy is left');
      const record = JSON.parse(await readFile(join(dir, 'site-b', 'retention', DISK, 'blob-points.json'), 'utf8')) as { snapshots: Array<{ snapshot: string }> };
      assert.deepEqual(record.snapshots.map((x) => x.snapshot).sort(), inAzure.map((x) => x.snapshot).sort(), 'the record lists exactly the snapshots taken');

      await w.close();
      w = undefined;
      await s.stopAgent();
      // A restart reads the record back: the same points list the same snapshots.
      const listed = (ps: ListedPoint[]) => ps.filter((p) => expected.has(p.id)).map((p) => [p.id, p.blobSnapshot]);
      const beforeRestart = listed(s.mt.listPoints(DISK));
      await s.mt.stop();
      s.mt = await MasterTarget.start(s.mtOptions());
      assert.deepEqual(listed(s.mt.listPoints(DISK)), beforeRestart);
      await s.mt.releaseDisk(DISK);
      assert.deepEqual(await snapshotsIn(container), [], 'release deleted the snapshots');
      assert.deepEqual(await blobNames(container), [], 'and the replica');
    } finally {
      await w?.close();
      await s.stop();
    }
  });
});

test('pruning the journal deletes the snapshots of the points it drops; the kept ones still equal their journal restore; a disk without the option takes none', async () => {
  await withDir('blob-points-prune', async (dir) => {
    const SIZE = 16 * MiB;
    const container = 'bp-prune';
    await mkdir(join(dir, 'site-a'), { recursive: true });
    await writeImage(join(dir, 'site-a', `${DISK}.img`), SIZE, 611);
    // A journal cap that a few rounds of overwrites exceed, so the oldest segments go.
    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE }], attach: false, startAgent: false, replicaLocation: (id) => blob(container, id), mt: { diskStore: store, maxJournalBytes: 6 * MiB } });
    let w: Writer | undefined;
    try {
      // The option per disk, on a MT without it; attached before the agent sends anything.
      await s.mt.attachDisk({ id: DISK, target: blob(container, DISK), sizeBytes: SIZE, blobSnapshots: true });
      await s.startAgent();
      await s.sync(DISK);
      const model = await readFile(join(dir, 'site-a', `${DISK}.img`));
      w = await Writer.connect(s.nbdSocket, DISK, model, 800);
      const made: string[] = [s.mt.listPoints(DISK)[0]!.id];
      const expected = new Map<string, string>([[made[0]!, sha256(model)]]);
      for (let i = 0; i < 8; i++) {
        const p = await round(s, w, 60, 'crash', `p-${i}`);
        made.push(p.id);
        expected.set(p.id, sha256(model));
      }
      const points = s.mt.listPoints(DISK);
      const dropped = made.filter((id) => !points.some((p) => p.id === id));
      assert.ok(dropped.length > 0, `the cap pruned points (kept ${points.length} of ${made.length})`);
      assert.ok(points.every((p) => p.blobSnapshot !== undefined), 'every kept point has its snapshot');
      const inAzure = await snapshotsIn(container);
      assert.deepEqual(inAzure.map((x) => x.snapshot).sort(), points.map((p) => p.blobSnapshot!).sort(), 'exactly the kept points have snapshots');
      for (const x of inAzure) assert.ok(!dropped.some((id) => x.metadata.boomerangpoints?.split(' ').includes(id)), 'no snapshot of a dropped point is left');
      assert.equal(s.mt.diskStatus(DISK).blobSnapshots.deleted, dropped.length);
      const oldest = points[0]!;
      await s.mt.disk(DISK).restore(oldest.id, join(dir, 'oldest.img'));
      assert.equal(await sha256File(join(dir, 'oldest.img')), expected.get(oldest.id));
      assert.equal(await hashBlob(container, DISK, oldest.blobSnapshot), expected.get(oldest.id));

      // Switched off by attaching again: new points get none, the kept ones stay.
      assert.deepEqual(await s.mt.attachDisk({ id: DISK, target: blob(container, DISK), sizeBytes: SIZE, blobSnapshots: false }), { created: false, adopted: false });
      const off = await round(s, w, 10, 'crash', 'after-off');
      assert.equal(off.blobSnapshot, undefined);
      assert.equal((await snapshotsIn(container)).length, inAzure.length);

      // Released with a hand-over: the blob moves, its snapshots do not survive.
      await w.close();
      w = undefined;
      await s.stopAgent();
      await s.mt.releaseDisk(DISK, { handTo: blob('bp-machines', DISK) });
      assert.deepEqual(await snapshotsIn(container), []);
      assert.deepEqual(await snapshotsIn('bp-machines'), [], 'the handed-over disk carries no snapshot');
      assert.deepEqual(await blobNames('bp-machines'), [DISK]);
    } finally {
      await w?.close();
      await s.stop();
    }
  });
});

test('64 MiB disk: a point restored from its snapshot and, once the snapshot is gone, through the journal give the same disk (times reported)', async (t) => {
  await withDir('blob-points-64', async (dir) => {
    const SIZE = 64 * MiB;
    const container = 'bp-64';
    await mkdir(join(dir, 'site-a'), { recursive: true });
    await writeImage(join(dir, 'site-a', `${DISK}.img`), SIZE, 621);
    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE }], replicaLocation: (id) => blob(container, id), mt: { diskStore: store, blobSnapshots: true } });
    let w: Writer | undefined;
    try {
      await s.sync(DISK);
      const model = await readFile(join(dir, 'site-a', `${DISK}.img`));
      w = await Writer.connect(s.nbdSocket, DISK, model, 900);
      const point = await round(s, w, 100, 'app', 'the-point');
      const expected = sha256(model);
      // Changes after the point that the journal restore must undo.
      await w.random(300, 8);
      await w.client.flush();
      await s.sync(DISK);
      const journalBytes = s.mt.diskStatus(DISK).health.journalBytes;

      let start = performance.now();
      await s.mt.restoreDiskTo(DISK, point.id, blob('bp-64-restores', 'snap'));
      const snapshotMs = performance.now() - start;
      assert.equal(s.mt.diskStatus(DISK).blobSnapshots.restored, 1, 'restored from the snapshot');
      assert.equal(await hashBlob('bp-64-restores', 'snap'), expected);

      // The snapshot deleted behind the MT's back: the restore falls back to the journal.
      await pageBlob(container, DISK).withSnapshot(point.blobSnapshot!).delete();
      start = performance.now();
      await s.mt.restoreDiskTo(DISK, point.id, blob('bp-64-restores', 'journal'));
      const journalMs = performance.now() - start;
      assert.equal(s.mt.diskStatus(DISK).blobSnapshots.restored, 1, 'restored through the journal');
      assert.equal(await hashBlob('bp-64-restores', 'journal'), expected, 'the journal restore equals the snapshot restore');
      assert.equal(s.mt.listPoints(DISK).find((p) => p.id === point.id)?.blobSnapshot, undefined, 'the missing snapshot is forgotten');
      t.diagnostic(JSON.stringify({ diskBytes: SIZE, journalBytes, restoreFromSnapshotMs: Math.round(snapshotMs), restoreThroughJournalMs: Math.round(journalMs), note: 'Azurite on loopback, not Azure' }));
    } finally {
      await w?.close();
      await s.stop();
    }
  });
});

test('the blobSnapshots option in the MT config: MT-wide and per disk, booleans only', () => {
  const base = { name: 'm', listen: '127.0.0.1:1', retention: { dir: 'r' }, tokenFile: 't' };
  const cfg = validateConfig({ ...base, blobSnapshots: true, disks: [{ id: DISK, target: blob('x', DISK), size: '1MiB', blobSnapshots: false }] }, MtConfigSchema, 'mt');
  assert.equal(cfg.blobSnapshots, true);
  assert.equal(cfg.disks?.[0]?.blobSnapshots, false);
  assert.throws(() => validateConfig({ ...base, blobSnapshots: 'yes' }, MtConfigSchema, 'mt'), (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID');
});
