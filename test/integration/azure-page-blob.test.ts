import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlobServiceClient, ContainerClient } from '@azure/storage-blob';
import { blobServiceClient, ensureContainer } from '../../src/fabrics/azure/azure-storage.js';
import { MAX_PAGE_BLOB_SIZE, MAX_PAGE_WRITE, PageBlobDisk } from '../../src/fabrics/azure/page-blob-disk.js';
import type { RetryPolicy } from '../../src/fabrics/azure/retry.js';
import { hashDevice, hashFile } from '../../src/lab/hash.js';
import { Prng } from '../../src/lab/prng.js';
import { FileDisk } from '../../src/replication/disk.js';
import { BoomerangError } from '../../src/replication/errors.js';
import { startTestAzurite, type TestAzurite } from '../helpers/azurite.js';
import { startFaultProxy, type FaultProxy } from './azure-fault-proxy.js';

const MiB = 1024 * 1024;
const FAST_RETRY: RetryPolicy = { maxAttempts: 4, maxElapsedMs: 10_000, baseDelayMs: 5, maxDelayMs: 20 };

let azurite: TestAzurite;
let proxy: FaultProxy;
/** Through the fault proxy, which counts what is sent. */
let viaProxy: ContainerClient;
/** Straight to Azurite. */
let direct: BlobServiceClient;
let workDir: string;
let blobCount = 0;

before(async () => {
  azurite = await startTestAzurite();
  proxy = await startFaultProxy(azurite.process.origin, azurite.ca);
  direct = blobServiceClient(azurite.account);
  await ensureContainer(direct, 'disks');
  viaProxy = blobServiceClient({ ...azurite.account, url: `${proxy.origin}/${azurite.account.accountName}` }).getContainerClient('disks');
  workDir = await mkdtemp(join(tmpdir(), 'boomerang-pageblob-'));
});

after(async () => {
  await proxy?.close();
  await azurite?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

function newBlob(): string {
  return `disk-${++blobCount}`;
}

async function writtenRanges(blob: string): Promise<number> {
  let n = 0;
  for await (const _ of direct.getContainerClient('disks').getPageBlobClient(blob).listPageRanges()) n++;
  return n;
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof BoomerangError && err.code === code);
}

test('unaligned, out-of-range and invalid-size requests fail with typed errors and send nothing', async () => {
  const blob = newBlob();
  const disk = await PageBlobDisk.create(viaProxy.getPageBlobClient(blob), 8 * MiB);
  const sent = proxy.requests;
  await rejectsWith(disk.write(100, Buffer.alloc(512, 1)), 'DISK_UNALIGNED');
  await rejectsWith(disk.write(512, Buffer.alloc(1000, 1)), 'DISK_UNALIGNED');
  await rejectsWith(disk.writeZeroes(0, 700), 'DISK_UNALIGNED');
  await rejectsWith(disk.write(8 * MiB - 512, Buffer.alloc(1024, 1)), 'DISK_RANGE');
  await rejectsWith(disk.read(8 * MiB, 1), 'DISK_RANGE');
  assert.equal(proxy.requests, sent, 'no request reached the service');
  await disk.flush();
  assert.equal(await writtenRanges(blob), 0);
  assert.equal(await hashDevice(disk), createHash('sha256').update(Buffer.alloc(8 * MiB)).digest('hex'));
  await disk.close();
  await rejectsWith(disk.write(0, Buffer.alloc(512)), 'DISK_CLOSED');

  await rejectsWith(PageBlobDisk.create(viaProxy.getPageBlobClient(newBlob()), 1000), 'DISK_SIZE');
  await rejectsWith(PageBlobDisk.create(viaProxy.getPageBlobClient(newBlob()), MAX_PAGE_BLOB_SIZE + 512), 'DISK_SIZE');
  await rejectsWith(PageBlobDisk.create(viaProxy.getPageBlobClient(blob), 8 * MiB), 'DISK_EXISTS');
  await rejectsWith(PageBlobDisk.open(viaProxy.getPageBlobClient(blob), { size: 4 * MiB }), 'DISK_SIZE');
  await rejectsWith(PageBlobDisk.open(viaProxy.getPageBlobClient('no-such-disk')), 'DISK_NOT_FOUND');
  // The largest size Azure allows is accepted (sparse).
  const huge = await PageBlobDisk.create(viaProxy.getPageBlobClient(newBlob()), MAX_PAGE_BLOB_SIZE);
  assert.equal(huge.size, MAX_PAGE_BLOB_SIZE);
  await huge.close();
});

test('a 9 MiB write is sent as Put Pages of at most 4 MiB and reads back identical', async () => {
  const disk = await PageBlobDisk.create(viaProxy.getPageBlobClient(newBlob()), 16 * MiB);
  const data = new Prng(9).fill(Buffer.alloc(9 * MiB));
  proxy.resetStats();
  await disk.write(1536, data);
  assert.deepEqual(
    [...proxy.pageWrites].sort((a, b) => b - a),
    [MAX_PAGE_WRITE, MAX_PAGE_WRITE, MiB],
  );
  const back = await disk.read(1536, data.length);
  assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(data).digest('hex'));
  const around = await disk.read(0, 1536);
  assert.ok(around.equals(Buffer.alloc(1536)), 'bytes before the write are still zero');
  await disk.close();
});

test('trimmed ranges read as zeroes and stop counting as written', async () => {
  const blob = newBlob();
  const disk = await PageBlobDisk.create(viaProxy.getPageBlobClient(blob), 4 * MiB);
  const reference = new Prng(3).fill(Buffer.alloc(2 * MiB));
  await disk.write(0, reference);
  await disk.writeZeroes(64 * 1024, 128 * 1024);
  await disk.writeZeroes(MiB, MiB);
  reference.fill(0, 64 * 1024, 192 * 1024);
  reference.fill(0, MiB, 2 * MiB);
  assert.ok((await disk.read(0, 2 * MiB)).equals(reference));
  let written = 0;
  for await (const r of direct.getContainerClient('disks').getPageBlobClient(blob).listPageRanges()) written += r.end - r.start + 1;
  assert.equal(written, MiB - 128 * 1024);
  await disk.close();
});

test('concurrent random writes are bounded in flight and leave the blob equal to a reference file', async () => {
  const size = 64 * MiB;
  const SLOT = 256 * 1024;
  const disk = await PageBlobDisk.create(viaProxy.getPageBlobClient(newBlob()), size, { maxInFlight: 8 });
  const reference = await FileDisk.open(join(workDir, 'reference.img'), { size, create: true });
  const rng = new Prng(42);
  // Distinct slots, so that no two concurrent writes overlap and the final content is defined.
  const slots = Array.from({ length: size / SLOT }, (_, i) => i);
  for (let i = slots.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [slots[i], slots[j]] = [slots[j]!, slots[i]!];
  }
  proxy.resetStats();
  const writes: Promise<void>[] = [];
  for (const slot of slots.slice(0, 200)) {
    const length = 512 * (1 + rng.int(SLOT / 512));
    const offset = slot * SLOT + 512 * rng.int((SLOT - length) / 512 + 1);
    const data = rng.fill(Buffer.alloc(length));
    writes.push(disk.write(offset, data));
    await reference.write(offset, data);
  }
  await Promise.all(writes);
  await disk.flush();
  await reference.flush();
  assert.ok(proxy.maxConcurrent <= 8, `at most 8 requests in flight, saw ${proxy.maxConcurrent}`);
  assert.ok(proxy.maxConcurrent > 1, 'writes did run concurrently');
  assert.equal(await hashDevice(disk), await hashFile(reference.path));
  await reference.close();
  await disk.close();
});

test('a second writer is refused while the first holds the lease; readers and reopen after close work', async () => {
  const blob = newBlob();
  const first = await PageBlobDisk.create(viaProxy.getPageBlobClient(blob), 2 * MiB);
  const data = new Prng(5).fill(Buffer.alloc(MiB));
  await first.write(0, data);
  await rejectsWith(PageBlobDisk.open(viaProxy.getPageBlobClient(blob)), 'DISK_LEASED');
  // A client that ignores our disk layer is refused by the service too: the lease id is required.
  await assert.rejects(direct.getContainerClient('disks').getPageBlobClient(blob).uploadPages(Buffer.alloc(512, 9), 0, 512), (err: { statusCode?: number }) => err.statusCode === 412);
  const reader = await PageBlobDisk.open(viaProxy.getPageBlobClient(blob), { readOnly: true });
  assert.ok((await reader.read(0, MiB)).equals(data));
  await rejectsWith(reader.write(0, Buffer.alloc(512)), 'DISK_READ_ONLY');
  await reader.close();
  await first.close();

  const second = await PageBlobDisk.open(viaProxy.getPageBlobClient(blob));
  assert.equal(second.size, 2 * MiB);
  assert.ok((await second.read(0, MiB)).equals(data), 'data survives close and reopen');
  await second.write(MiB, data);
  await second.resize(4 * MiB);
  assert.equal(second.size, 4 * MiB);
  assert.ok((await second.read(3 * MiB, MiB)).equals(Buffer.alloc(MiB)), 'grown space reads as zeroes');
  // A writer that died without closing leaves its lease; takeOver breaks it.
  const taken = await PageBlobDisk.open(viaProxy.getPageBlobClient(blob), { takeOver: true });
  await rejectsWith(second.write(0, Buffer.alloc(512)), 'DISK_LEASED');
  assert.ok((await taken.read(MiB, MiB)).equals(data));
  await taken.close();
  await assert.rejects(second.close(), (err: unknown) => err instanceof BoomerangError);
});

test('transient 503s are retried with backoff; persistent ones surface from write and flush', async () => {
  const disk = await PageBlobDisk.create(viaProxy.getPageBlobClient(newBlob()), 4 * MiB, { retry: FAST_RETRY });
  const data = new Prng(7).fill(Buffer.alloc(MiB));
  proxy.resetStats();
  proxy.failNext(3, (method) => method === 'PUT');
  await disk.write(0, data);
  await disk.flush();
  assert.equal(proxy.failed, 3);
  assert.ok((await disk.read(0, MiB)).equals(data));

  proxy.resetStats();
  proxy.failNext(FAST_RETRY.maxAttempts, (method) => method === 'PUT');
  const failing = disk.write(MiB, data);
  await assert.rejects(failing, (err: unknown) => err instanceof BoomerangError && err.code === 'AZURE_STORAGE' && err.retryable && /HTTP 503/.test(err.message));
  assert.equal(proxy.failed, FAST_RETRY.maxAttempts, 'bounded number of tries');
  await rejectsWith(disk.flush(), 'AZURE_STORAGE');
  await disk.flush(); // reported once, as fsync does
  assert.ok((await disk.read(MiB, MiB)).equals(Buffer.alloc(MiB)), 'the failed write changed nothing');
  await disk.close();
});

test('a client that does not trust the endpoint certificate is refused at once, not retried', async () => {
  const { caPem: _, ...untrusting } = azurite.account;
  const container = blobServiceClient({ ...untrusting, url: `${proxy.origin}/${azurite.account.accountName}` }).getContainerClient('disks');
  proxy.resetStats();
  await assert.rejects(
    PageBlobDisk.open(container.getPageBlobClient('disk-1'), { retry: FAST_RETRY }),
    (err: unknown) => err instanceof BoomerangError && err.code === 'AZURE_STORAGE' && !err.retryable && /certificate/i.test(err.message),
  );
  assert.equal(proxy.requests, 0, 'no HTTP request was sent over the untrusted connection');
});
