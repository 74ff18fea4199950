import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, open, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hashFile } from '../../src/lab/hash.js';
import { BoomerangError } from '../../src/replication/errors.js';
import { DIGEST_BYTES } from '../../src/replication/resync/hashing.js';
import { DEFAULT_LAYOUT } from '../../src/replication/resync/layout.js';
import { BLOCK, changeBlocks, KiB, MiB, pickBlocks, resyncTo, startTarget, withTempDir, writeImage } from './resync-fixtures.js';

/** Standalone resyncs over TLS between two files: the target must end equal byte for byte. */

const R = DEFAULT_LAYOUT.regionBytes;

test('byte for byte for disks of many sizes, with changes at the first and last block and zero regions on either side', async () => {
  await withTempDir(async (dir) => {
    const source = join(dir, 'source.img');
    const target = join(dir, 'target.img');
    const server = await startTarget(target);
    try {
      for (const size of [4096, 3 * 4096 + 512, R + 4096 + 512, 3 * MiB + 512, 6 * MiB]) {
        const blocks = Math.ceil(size / BLOCK);
        // Source: random, with region 1 all zero when the disk has one.
        await writeImage(source, size, size, size >= 2 * R ? [[R, R]] : []);
        await copyFile(source, target);
        const changed = new Set([0, blocks - 1, ...pickBlocks(Math.min(6, blocks), blocks, size + 1)]);
        await changeBlocks(target, [...changed], 11);
        if (size >= 4 * R) {
          const zeroOnSource = [R / BLOCK, R / BLOCK + 3]; // data on the target where the source is zero
          const zeroOnTarget = [3 * (R / BLOCK), 3 * (R / BLOCK) + 1, 3 * (R / BLOCK) + 2]; // zero on the target only
          await changeBlocks(target, zeroOnSource, 12);
          await changeBlocks(target, zeroOnTarget, 0, { zero: true });
          for (const b of [...zeroOnSource, ...zeroOnTarget]) changed.add(b);
        }
        const { result } = await resyncTo(server.endpoint, source);
        assert.equal(await hashFile(target), await hashFile(source), `size ${size}`);
        assert.equal(result.blocksDifferent, changed.size, `size ${size}`);
        assert.equal(result.bytesCompared, size);
        assert.deepEqual(result.cursor, { offset: size });
        const session = await server.nextSession();
        assert.equal(session.error, undefined);
        // A second run finds nothing to do.
        const again = await resyncTo(server.endpoint, source);
        assert.equal(again.result.blocksDifferent, 0);
        await server.nextSession();
      }
    } finally {
      await server.close();
    }
  });
});

test('a target smaller than the source, or larger without opt-in, is refused with RESYNC_SIZE_MISMATCH and left as it was', async () => {
  await withTempDir(async (dir) => {
    const source = join(dir, 'source.img');
    const target = join(dir, 'target.img');
    await writeImage(source, 2 * MiB, 1);
    const server = await startTarget(target);
    try {
      for (const targetSize of [2 * MiB - 4096, 2 * MiB + 512]) {
        await writeImage(target, targetSize, 2);
        const before = await hashFile(target);
        await assert.rejects(
          resyncTo(server.endpoint, source),
          (e: unknown) => e instanceof BoomerangError && e.code === 'RESYNC_SIZE_MISMATCH' && e.message.includes(String(targetSize)) && e.message.includes(String(2 * MiB)),
        );
        assert.equal((await server.nextSession()).diskId, 'disk-0');
        assert.equal(await hashFile(target), before);
      }
      // Opted in: the common prefix becomes equal, the tail stays.
      const tail = Buffer.alloc(512);
      const fh = await open(target, 'r');
      await fh.read(tail, 0, 512, 2 * MiB);
      await fh.close();
      const { result } = await resyncTo(server.endpoint, source, { allowLargerTarget: true });
      assert.equal(result.targetSize, 2 * MiB + 512);
      const after = await open(target, 'r');
      const prefix = Buffer.alloc(2 * MiB);
      const tailAfter = Buffer.alloc(512);
      await after.read(prefix, 0, 2 * MiB, 0);
      await after.read(tailAfter, 0, 512, 2 * MiB);
      await after.close();
      const src = await open(source, 'r');
      const expected = Buffer.alloc(2 * MiB);
      await src.read(expected, 0, 2 * MiB, 0);
      await src.close();
      assert.deepEqual(prefix, expected);
      assert.deepEqual(tailAfter, tail);
    } finally {
      await server.close();
    }
  });
});

test('alternate location: an empty sparse target becomes a sparse full copy', async () => {
  await withTempDir(async (dir) => {
    const source = join(dir, 'source.img');
    const target = join(dir, 'target.img');
    const size = 8 * MiB;
    // A quarter of the source is zero: four runs of 512 KiB.
    const zeroRanges: [number, number][] = [0, 3, 5, 7].map((m) => [m * MiB + 256 * KiB, 512 * KiB]);
    await writeImage(source, size, 21, zeroRanges);
    await writeFile(target, '');
    await truncate(target, size);
    const server = await startTarget(target);
    try {
      const { result } = await resyncTo(server.endpoint, source);
      assert.equal(await hashFile(target), await hashFile(source));
      assert.equal(result.bytesSent, size - 2 * MiB);
      assert.equal(result.zeroBytes, 0);
      const allocated = (await stat(target)).blocks * 512;
      assert.ok(allocated <= size - 2 * MiB + 64 * KiB, `the target holds ${allocated} bytes on disk; the zero quarter must stay holes`);
    } finally {
      await server.close();
    }
  });
});

test('wire bytes for a sparse change set: at most 1.2 × the changed bytes plus the digests and framing', async () => {
  await withTempDir(async (dir) => {
    const source = join(dir, 'source.img');
    const target = join(dir, 'target.img');
    const size = 16 * MiB;
    await writeImage(source, size, 31);
    await copyFile(source, target);
    const changed = await changeBlocks(source, pickBlocks(size / BLOCK / 100, size / BLOCK, 32), 33); // 1% of the blocks
    const server = await startTarget(target);
    try {
      const { result, bytes } = await resyncTo(server.endpoint, source);
      assert.equal(await hashFile(target), await hashFile(source));
      assert.equal(result.bytesChanged, changed);
      const regions = size / R;
      const batches = size / DEFAULT_LAYOUT.batchBytes;
      const blocksPerRegion = R / BLOCK;
      // Every region's digest and bit; per batch two headers; per differing region its block digests
      // and bitmap; per extent its header; the session's hello, open and flushes.
      const overhead = regions * (DIGEST_BYTES + 1) + batches * 64 + result.regionsDifferent * (blocksPerRegion * DIGEST_BYTES + 8) + result.blocksDifferent * 16 + 2048;
      const wire = bytes.sent + bytes.received;
      assert.ok(wire <= 1.2 * changed + overhead, `${wire} bytes on the wire for ${changed} changed bytes (allowed ${1.2 * changed + overhead})`);
      assert.ok(wire <= 1.2 * changed, `digests and framing stay within the 20%: ${wire} for ${changed}`);
    } finally {
      await server.close();
    }
  });
});
