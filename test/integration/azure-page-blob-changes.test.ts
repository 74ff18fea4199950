import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { blobServiceClient, ensureContainer } from '../../src/fabrics/azure/azure-storage.js';
import { applyRound, PageBlobChangeSource } from '../../src/fabrics/azure/page-blob-changes.js';
import { PageBlobDisk } from '../../src/fabrics/azure/page-blob-disk.js';
import { hashDevice, hashFile } from '../../src/lab/hash.js';
import { Prng } from '../../src/lab/prng.js';
import { FileDisk } from '../../src/replication/disk.js';
import { startTestAzurite, type TestAzurite } from '../helpers/azurite.js';

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;

let azurite: TestAzurite;
let container: ContainerClient;
let workDir: string;

before(async () => {
  azurite = await startTestAzurite();
  container = await ensureContainer(blobServiceClient(azurite.account), 'disks');
  workDir = await mkdtemp(join(tmpdir(), 'boomerang-pagechanges-'));
});

after(async () => {
  await azurite?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

/** sha256 of the blob as one snapshot saw it. */
async function hashSnapshot(blob: string, snapshot: string): Promise<string> {
  const disk = await PageBlobDisk.open(container.getPageBlobClient(blob).withSnapshot(snapshot), { readOnly: true });
  try {
    return await hashDevice(disk);
  } finally {
    await disk.close();
  }
}

async function snapshotsOf(blob: string): Promise<string[]> {
  const out: string[] = [];
  for await (const item of container.listBlobsFlat({ includeSnapshots: true, prefix: blob })) if (item.name === blob && item.snapshot) out.push(item.snapshot);
  return out;
}

/** Random aligned writes (and, when asked, clears) on the source disk. */
async function changeSource(disk: PageBlobDisk, rng: Prng, writes: number, clears: number): Promise<void> {
  for (let i = 0; i < writes; i++) {
    const length = 512 * (1 + rng.int(2048));
    const offset = 512 * rng.int((SIZE - length) / 512);
    await disk.write(offset, rng.fill(Buffer.alloc(length)));
  }
  for (let i = 0; i < clears; i++) {
    const length = 512 * (1 + rng.int(8192));
    await disk.writeZeroes(512 * rng.int((SIZE - length) / 512), length);
  }
  await disk.flush();
}

test('rounds of snapshot diffs replicate writes and clears to a local file, each round a crash-consistent point', async () => {
  const blob = 'agentless-1';
  const source = await PageBlobDisk.create(container.getPageBlobClient(blob), SIZE);
  const replica = await FileDisk.open(join(workDir, 'replica.img'), { size: SIZE, create: true });
  // The replica starts as garbage: the first, full round must overwrite every byte.
  await replica.write(0, new Prng(99).fill(Buffer.alloc(SIZE)));
  const rng = new Prng(1);
  const changes = new PageBlobChangeSource(container.getPageBlobClient(blob), { maxInFlight: 4 });

  await changeSource(source, rng, 20, 0);
  const first = await changes.nextRound();
  assert.equal(first.full, true);
  assert.equal(first.dataBytes + first.zeroBytes, SIZE, 'a first round covers the whole disk');
  // Writes after the snapshot belong to the next round, not this one.
  await changeSource(source, rng, 5, 0);
  await applyRound(first, replica);
  await first.commit();
  assert.equal(await hashFile(replica.path), await hashSnapshot(blob, first.snapshot));
  assert.notEqual(await hashFile(replica.path), await hashDevice(source), 'the replica is at the snapshot, not at the live disk');

  for (let round = 0; round < 2; round++) {
    await changeSource(source, rng, 10, 3);
    const next = await changes.nextRound();
    assert.equal(next.full, false);
    await applyRound(next, replica);
    await next.commit();
    assert.equal(await hashFile(replica.path), await hashDevice(source), `round ${round + 1}: replica equals the disk`);
    assert.deepEqual(await snapshotsOf(blob), [next.snapshot], 'only the latest round is kept as a snapshot');
    assert.equal(changes.base, next.snapshot);
  }

  // An abandoned round leaves the base; the next round from it still brings the replica up to date.
  const base = changes.base;
  await changeSource(source, rng, 4, 2);
  const lost = await changes.nextRound();
  await lost.abandon();
  assert.equal(changes.base, base);
  assert.deepEqual(await snapshotsOf(blob), [base]);
  await changeSource(source, rng, 4, 2);
  const again = await changes.nextRound();
  await applyRound(again, replica);
  await again.commit();
  assert.equal(await hashFile(replica.path), await hashDevice(source));

  // A new change source resumes from a persisted base.
  await changeSource(source, rng, 3, 1);
  const resumed = new PageBlobChangeSource(container.getPageBlobClient(blob), { base: again.snapshot });
  const round = await resumed.nextRound();
  assert.equal(round.full, false);
  await applyRound(round, replica);
  await round.commit();
  assert.equal(await hashFile(replica.path), await hashDevice(source));

  await replica.close();
  await source.close();
});

test('a clear of every written page replicates as zeroes even though Azurite reports no cleared ranges', async () => {
  const blob = 'agentless-2';
  const source = await PageBlobDisk.create(container.getPageBlobClient(blob), 8 * MiB);
  const replica = await FileDisk.open(join(workDir, 'replica-2.img'), { size: 8 * MiB, create: true });
  const changes = new PageBlobChangeSource(container.getPageBlobClient(blob));
  await source.write(MiB, new Prng(2).fill(Buffer.alloc(2 * MiB)));
  await source.flush();
  const first = await changes.nextRound();
  await applyRound(first, replica);
  await first.commit();
  await source.writeZeroes(0, 8 * MiB);
  await source.flush();
  const cleared = await changes.nextRound();
  assert.equal(cleared.dataBytes, 0);
  assert.equal(cleared.zeroBytes, 2 * MiB);
  await applyRound(cleared, replica);
  await cleared.commit();
  assert.equal(await hashFile(replica.path), createHash('sha256').update(Buffer.alloc(8 * MiB)).digest('hex'));
  await replica.close();
  await source.close();
});
