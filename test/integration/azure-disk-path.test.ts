import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentConfigSchema } from '../../src/cli/agent.js';
import { MtConfigSchema } from '../../src/cli/mt.js';
import { blobServiceClient } from '../../src/fabrics/azure/azure-storage.js';
import { hashDevice } from '../../src/lab/hash.js';
import { validateConfig } from '../../src/runtime/config.js';
import type { BlobLocation } from '../../src/replication/disk-location.js';
import { DiskStore } from '../../src/replication/disk-store.js';
import type { BoomerangError } from '../../src/replication/errors.js';
import { startTestAzurite, type TestAzurite } from '../helpers/azurite.js';
import { MiB, Stack, Writer, sha256, sha256File, withDir } from '../helpers/stack.js';
import { BLOCK, changeBlocks, KiB, pickBlocks, writeImage } from './resync-fixtures.js';

/**
 * Page-blob disks in the data path, against a real Azurite over HTTPS: the agent serving and
 * capturing a disk that is a page blob, the master target writing its replica into a page blob,
 * adopting a page blob (original-location reprotect with a delta resync) and handing it back,
 * the disk store's rename and copy of blobs, and the typed refusals of bad locations.
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

/** sha256 of the whole disk at `location`, read through the store (no lease is taken). */
async function hashDisk(location: string): Promise<string> {
  const disk = await store.open(store.locate(location), { readOnly: true });
  try {
    return await hashDevice(disk);
  } finally {
    await disk.close();
  }
}

/** The written page ranges of a blob, as [start, end) pairs. */
async function pageRanges(location: string): Promise<Array<[number, number]>> {
  const loc = store.locate(location) as BlobLocation;
  const client = blobServiceClient(azurite.account).getContainerClient(loc.container).getPageBlobClient(loc.blob);
  const out: Array<[number, number]> = [];
  for await (const r of client.listPageRanges()) out.push([r.start, r.end + 1]);
  return out.sort((a, b) => a[0] - b[0]);
}

async function blobNames(container: string): Promise<string[]> {
  const c = blobServiceClient(azurite.account).getContainerClient(container);
  if (!(await c.exists())) return [];
  const names: string[] = [];
  for await (const b of c.listBlobsFlat()) names.push(b.name);
  return names.sort();
}

function rejectsWith(code: string) {
  return (err: unknown) => {
    assert.equal((err as BoomerangError).code, code, String(err));
    return true;
  };
}

test('disk store: a page blob renamed (server-side copy, delete) keeps its exact content and only its written pages', async () => {
  await withDir('azure-store', async (dir) => {
    const SIZE = 8 * MiB;
    const from = store.locate(blob('store', 'a'));
    const to = store.locate(blob('store', 'b'));
    const disk = await store.open(from, { size: SIZE, create: true });
    const model = Buffer.alloc(SIZE);
    for (const [offset, len, fill] of [[0, 64 * KiB, 1], [3 * MiB, 512, 2], [7 * MiB, MiB, 3]] as const) {
      const data = Buffer.alloc(len, fill);
      await disk.write(offset, data);
      data.copy(model, offset);
    }
    await disk.flush();
    const written = await pageRanges(from.text);

    // Open for writing (leased): the rename is refused and changes nothing.
    await assert.rejects(store.rename(from, to), rejectsWith('DISK_LEASED'));
    assert.deepEqual(await blobNames('store'), ['a']);
    await disk.close();

    await store.rename(from, to);
    assert.deepEqual(await blobNames('store'), ['b'], 'the source is gone');
    assert.equal(await hashDisk(to.text), sha256(model), 'the content is exact');
    assert.deepEqual(await pageRanges(to.text), written, 'pages never written stay unwritten (sparse)');

    // Blob to file and back: exact, and the file copy of a blob is usable as a disk.
    const file = store.locate(join(dir, 'copy.img'));
    await store.copy(to, file);
    assert.equal(await sha256File(file.text), sha256(model));
    const back = store.locate(blob('store', 'c'));
    await store.copy(file, back);
    assert.equal(await hashDisk(back.text), sha256(model));
    await assert.rejects(store.copy(file, back), rejectsWith('DISK_EXISTS'), 'a copy never replaces a disk');
    await assert.rejects(store.rename(file, back), rejectsWith('DISK_LOCATION'), 'a file is not renamed into a blob');
  });
});

test('agent on a page-blob disk → PS → MT writing a page-blob replica: initial replication under live NBD writes, then equal blobs, and a restore to a blob', async () => {
  await withDir('azure-forward', async (dir) => {
    const SIZE = 16 * MiB;
    const model = Buffer.alloc(SIZE);
    const s = await Stack.start({
      dir,
      disks: [{ id: DISK, sizeBytes: SIZE }],
      sourceLocation: (id) => blob('fwd-sources', id),
      replicaLocation: (id) => blob('fwd-replicas', id),
      agent: { diskStore: store, regionBytes: 256 * KiB },
      mt: { diskStore: store },
    });
    let w: Writer | undefined;
    try {
      w = await Writer.connect(s.nbdSocket, DISK, model, 900);
      // The initial resync of the new (all-zero) disk runs while these writes go through NBD.
      await w.random(150, 8);
      await w.client.flush();
      await s.sync(DISK);
      const expected = sha256(model);
      assert.equal(await hashDisk(s.source(DISK)), expected, 'the source blob holds every write');
      assert.equal(await hashDisk(s.replica(DISK)), expected, 'the replica blob equals the source blob');
      const pos = s.mt.diskStatus(DISK).position!;
      assert.equal(pos.consistent, true);
      assert.equal(s.mt.diskStatus(DISK).target, blob('fwd-replicas', DISK));

      const restored = blob('fwd-restores', DISK);
      await s.mt.restoreDiskTo(DISK, 'latest', restored);
      assert.equal(await hashDisk(restored), expected, 'the restored blob is the newest state');
      assert.deepEqual(await blobNames('fwd-restores'), [DISK], 'no temporary copy is left');
    } finally {
      await w?.close();
      await s.stop();
    }
  });
});

test('MT adopts an existing page blob (original-location reprotect): the delta resync sends only the differences, the replica ends byte-identical and is handed back by name', async (t) => {
  await withDir('azure-adopt', async (dir) => {
    const SIZE = 32 * MiB;
    await mkdir(join(dir, 'site-a'), { recursive: true });
    const source = join(dir, 'site-a', `${DISK}.img`);
    await writeImage(source, SIZE, 131);
    // The machine's old disk, a page blob: the source but for 1% of its blocks.
    const oldDisk = join(dir, 'old.img');
    await copyFile(source, oldDisk);
    const blocks = SIZE / BLOCK;
    const changed = pickBlocks(Math.round(blocks * 0.01), blocks, 132);
    await changeBlocks(oldDisk, changed, 133);
    const changedBytes = changed.length * BLOCK;
    const machineDisk = blob('adopt-machines', DISK);
    await store.copy(store.locate(oldDisk), store.locate(machineDisk));
    const replica = blob('adopt-replicas', `${DISK}.replica`);

    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE, protect: false }], attach: false, agent: { regionBytes: 256 * KiB }, mt: { diskStore: store } });
    try {
      assert.deepEqual(await s.mt.attachDisk({ id: DISK, target: replica, sizeBytes: SIZE, adopt: machineDisk }), { created: false, adopted: true });
      assert.deepEqual(await blobNames('adopt-machines'), [], 'the machine’s blob was renamed to the replica');
      assert.equal(await hashDisk(replica), await sha256File(oldDisk), 'the adopted replica is the old disk');

      await s.agent!.protectDisk(DISK, { newLineage: true, resyncTarget: s.mt.resyncEndpoint! });
      await s.sync(DISK);
      const expected = await sha256File(source);
      assert.equal(await hashDisk(replica), expected, 'the replica blob equals the source file');

      const status = s.agent!.status();
      const delta = (status.disks[DISK] as unknown as { resync: { mode: string; delta: { compareBytes: { sent: number }; bytesCopied: number } } }).resync;
      assert.equal(delta.mode, 'delta');
      assert.equal(delta.delta.bytesCopied, 0, 'no region was copied whole');
      const wire = status.sender.bytesSent + delta.delta.compareBytes.sent;
      t.diagnostic(`${changedBytes} bytes differ; sent ${status.sender.bytesSent} in batches + ${delta.delta.compareBytes.sent} compare; MT applied ${s.mt.applyStats.bytes}`);
      assert.ok(wire <= 1.2 * changedBytes + 128 * KiB, `sent ${wire} bytes for ${changedBytes} changed`);
      assert.ok(s.mt.applyStats.bytes <= 1.2 * changedBytes + 128 * KiB, `the MT applied ${s.mt.applyStats.bytes} bytes for ${changedBytes} changed`);
      assert.equal(s.mt.diskStatus(DISK).position?.consistent, true);

      await s.mt.releaseDisk(DISK, { handTo: machineDisk });
      assert.deepEqual(await blobNames('adopt-machines'), [DISK], 'handed back under the machine’s blob name');
      assert.deepEqual(await blobNames('adopt-replicas'), [], 'the replica blob is gone');
      assert.equal(await hashDisk(machineDisk), expected, 'the machine’s blob holds the replicated disk');
    } finally {
      await s.stop();
    }
  });
});

test('reverse direction: the agent of a failed-over cloud VM (its disk a page blob) delta-resyncs to an on-premises file replica, then replicates its writes', async (t) => {
  await withDir('azure-reverse', async (dir) => {
    const SIZE = 16 * MiB;
    await mkdir(join(dir, 'site-b'), { recursive: true });
    // The cloud disk (a page blob) and the on-premises disk it came from, which differs in 2% of its blocks.
    const cloudImage = join(dir, 'cloud.img');
    await writeImage(cloudImage, SIZE, 141);
    const cloudDisk = blob('rev-cloud', DISK);
    await store.copy(store.locate(cloudImage), store.locate(cloudDisk));
    const onPrem = join(dir, 'site-b', `${DISK}.img`);
    await copyFile(cloudImage, onPrem);
    const blocks = SIZE / BLOCK;
    const changed = pickBlocks(Math.round(blocks * 0.02), blocks, 142);
    await changeBlocks(onPrem, changed, 143);

    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE, protect: false }], attach: false, sourceLocation: (id) => blob('rev-cloud', id), agent: { diskStore: store, regionBytes: 256 * KiB } });
    let w: Writer | undefined;
    try {
      assert.deepEqual(await s.mt.attachDisk({ id: DISK, target: onPrem, sizeBytes: SIZE }), { created: false, adopted: false });
      await s.agent!.protectDisk(DISK, { newLineage: true, resyncTarget: s.mt.resyncEndpoint! });
      await s.sync(DISK);
      const delta = (s.agent!.status().disks[DISK] as unknown as { resync: { mode: string; delta: { bytesCopied: number } } }).resync;
      assert.equal(delta.mode, 'delta');
      assert.equal(delta.delta.bytesCopied, 0);
      t.diagnostic(`${changed.length * BLOCK} bytes differ; MT applied ${s.mt.applyStats.bytes}`);
      assert.ok(s.mt.applyStats.bytes <= 1.2 * changed.length * BLOCK + 128 * KiB, `the MT applied ${s.mt.applyStats.bytes} bytes`);
      assert.equal(await sha256File(onPrem), await hashDisk(cloudDisk), 'the on-premises replica equals the cloud disk');

      // Writes on the cloud VM (through NBD onto the page blob) keep flowing to the file replica.
      const model = await readFile(cloudImage);
      w = await Writer.connect(s.nbdSocket, DISK, model, 1400);
      await w.random(60, 8);
      await w.client.flush();
      await s.sync(DISK);
      assert.equal(await hashDisk(cloudDisk), sha256(model), 'the cloud disk holds every write');
      assert.equal(await sha256File(onPrem), sha256(model), 'the on-premises replica follows');
    } finally {
      await w?.close();
      await s.stop();
    }
  });
});

test('a malformed location or an unknown account is a typed error and changes nothing', async () => {
  await withDir('azure-bad', async (dir) => {
    const SIZE = 4 * MiB;
    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE }], attach: false, startAgent: false, mt: { diskStore: store } });
    try {
      const attachments = join(dir, 'site-b', 'retention', 'attachments.json');
      const local = join(dir, 'site-b', 'local.img');
      await writeFile(local, Buffer.alloc(SIZE, 7));
      const cases: Array<[string, { target: string; adopt?: string }]> = [
        ['DISK_ACCOUNT_UNKNOWN', { target: 'azblob://elsewhere/bad-replicas/disk0' }],
        ['DISK_LOCATION', { target: `azblob://${ACCOUNT}/Bad_Container/disk0` }],
        ['DISK_LOCATION', { target: `azblob://${ACCOUNT}/bad-replicas/disk0?sig=secret` }],
        ['DISK_LOCATION', { target: `azblob://${ACCOUNT}/bad-replicas/../disk0` }],
        ['DISK_LOCATION', { target: `azblob://${ACCOUNT}/replicas` }],
        ['DISK_LOCATION', { target: 'https://127.0.0.1/devstoreaccount1/bad-replicas/disk0' }],
        ['DISK_LOCATION', { target: blob('bad-replicas', DISK), adopt: local }],
        ['DISK_ACCOUNT_UNKNOWN', { target: join(dir, 'site-b', 'x.img'), adopt: 'azblob://elsewhere/machines/disk0' }],
      ];
      for (const [code, req] of cases) {
        await assert.rejects(s.mt.attachDisk({ id: DISK, sizeBytes: SIZE, ...req }), rejectsWith(code), JSON.stringify(req));
      }
      assert.deepEqual(s.mt.diskIds(), [], 'nothing was attached');
      await assert.rejects(readFile(attachments), (err: NodeJS.ErrnoException) => err.code === 'ENOENT', 'attachments.json was never written');
      assert.deepEqual(await blobNames('bad-replicas'), [], 'no blob was created');
      assert.equal(await sha256File(local), sha256(Buffer.alloc(SIZE, 7)), 'the disk offered for adoption is untouched');

      // An attached disk: a bad handTo or restore location leaves it attached, unfrozen and in place.
      await s.mt.attachDisk({ id: DISK, target: blob('bad-replicas', 'kept'), sizeBytes: SIZE });
      const before = await readFile(attachments, 'utf8');
      await assert.rejects(s.mt.releaseDisk(DISK, { handTo: 'azblob://elsewhere/machines/disk0' }), rejectsWith('DISK_ACCOUNT_UNKNOWN'));
      await assert.rejects(s.mt.releaseDisk(DISK, { handTo: join(dir, 'machine.img') }), rejectsWith('DISK_LOCATION'), 'a blob is not renamed into a file');
      await assert.rejects(s.mt.restoreDiskTo(DISK, 'latest', `azblob://${ACCOUNT}/bad-restores/x#frag`), rejectsWith('DISK_LOCATION'));
      assert.deepEqual(s.mt.diskIds(), [DISK]);
      assert.equal(s.mt.diskStatus(DISK).frozen, false);
      assert.equal(await readFile(attachments, 'utf8'), before, 'attachments.json is unchanged');
      assert.deepEqual(await blobNames('bad-replicas'), ['kept']);

      // The agent refuses a disk in an account it does not know, before creating anything.
      await assert.rejects(s.startAgent({ disks: [{ id: DISK, path: 'azblob://elsewhere/bad-sources/disk0', sizeBytes: SIZE }] }), rejectsWith('DISK_ACCOUNT_UNKNOWN'));
    } finally {
      await s.stop();
    }
  });
});

test('the azure config section: keys come from files and never show in errors', async () => {
  await withDir('azure-config', async (dir) => {
    const keyFile = join(dir, 'lab.key');
    const caFile = join(dir, 'ca.pem');
    await writeFile(keyFile, `${azurite.account.accountKey}\n`, { mode: 0o600 });
    await writeFile(caFile, azurite.caPem);
    const configured = await DiskStore.fromConfig({ accounts: { [ACCOUNT]: { url: azurite.account.url, accountName: azurite.account.accountName, keyFile, caFile } } });
    const loc = configured.locate(blob('config', 'probe'));
    await (await configured.open(loc, { size: MiB, create: true })).close();
    assert.deepEqual(await blobNames('config'), ['probe'], 'the key read from the file authenticates');

    const wrongKey = Buffer.alloc(64, 1).toString('base64');
    await writeFile(keyFile, wrongKey, { mode: 0o600 });
    const wrong = await DiskStore.fromConfig({ accounts: { [ACCOUNT]: { url: azurite.account.url, accountName: azurite.account.accountName, keyFile, caFile } } });
    await assert.rejects(wrong.open(wrong.locate(blob('config', 'probe'))), (err: Error) => {
      assert.ok(!String(err.message).includes(wrongKey) && !String(err.stack).includes(wrongKey), 'the key is not in the error');
      return (err as BoomerangError).code === 'AZURE_STORAGE';
    });
    await assert.rejects(DiskStore.fromConfig({ accounts: { [ACCOUNT]: { url: azurite.account.url, accountName: 'x', keyFile: join(dir, 'missing.key') } } }), rejectsWith('AZURE_CONFIG'));

    // The section in the agent's and the MT's config files.
    const azure = { accounts: { [ACCOUNT]: { url: azurite.account.url, accountName: azurite.account.accountName, keyFile, caFile } } };
    const agentCfg = { name: 'a', stateDir: 's', nbdSocket: 'n', processServer: '127.0.0.1:1', tokenFile: 't', disks: [{ id: DISK, path: blob('x', DISK) }], azure };
    const mtCfg = { name: 'm', listen: '127.0.0.1:1', retention: { dir: 'r' }, tokenFile: 't', disks: [{ id: DISK, target: blob('x', DISK), size: '1MiB' }], azure };
    assert.equal(validateConfig(agentCfg, AgentConfigSchema, 'agent').azure?.accounts[ACCOUNT]?.keyFile, keyFile);
    assert.equal(validateConfig(mtCfg, MtConfigSchema, 'mt').azure?.accounts[ACCOUNT]?.keyFile, keyFile);
    const plain = { accounts: { [ACCOUNT]: { ...azure.accounts[ACCOUNT], url: 'http://127.0.0.1:1/x' } } };
    assert.throws(() => validateConfig({ ...mtCfg, azure: plain }, MtConfigSchema, 'mt'), rejectsWith('CONFIG_INVALID'), 'the endpoint must be https');
    assert.throws(() => validateConfig({ ...agentCfg, azure: { accounts: { [ACCOUNT]: { ...azure.accounts[ACCOUNT], accountKey: 'k' } } } }, AgentConfigSchema, 'agent'), rejectsWith('CONFIG_INVALID'), 'no key in the config itself');
  });
});
