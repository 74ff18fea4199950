import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirtyMap } from '../../src/agent/dirty-map.js';

const MiB = 1024 * 1024;

test('write-intent bits are durable before a write and clear once acknowledged', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-dirty-'));
  try {
    const path = join(dir, 'd.dirty');
    const { map, existed } = await DirtyMap.open(path, 10 * MiB + 512, MiB);
    assert.equal(existed, false);
    assert.equal(map.regions, 11);
    await map.retain(MiB - 512, 1024); // spans regions 0 and 1
    await map.retain(5 * MiB, 4096);
    // A crash now: a fresh open sees the bits.
    const crashed = await DirtyMap.open(path, 10 * MiB + 512, MiB);
    assert.deepEqual(crashed.map.persistedRegions(), [0, 1, 5]);
    await crashed.map.close();
    map.release(MiB - 512, 1024);
    await map.flush();
    const later = await DirtyMap.open(path, 10 * MiB + 512, MiB);
    assert.deepEqual(later.map.persistedRegions(), [5]);
    await later.map.close();
    await map.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('regions needing a resync stay set until their resync event is acknowledged', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-dirty-'));
  try {
    const { map } = await DirtyMap.open(join(dir, 'd.dirty'), 4 * MiB, MiB);
    await map.markNeedsResync(2 * MiB, 512);
    map.release(2 * MiB, 512); // an unrelated acknowledgement must not clear a needed region
    assert.deepEqual(map.regionsNeedingResync(), [2]);
    assert.equal(map.dirtyRegions(), 1);
    map.startResync(2);
    assert.equal(map.needsResync(), 0);
    assert.equal(map.dirtyRegions(), 1, 'still set while the resync read is unacknowledged');
    map.release(2 * MiB, MiB);
    assert.equal(map.dirtyRegions(), 0);
    await map.markAll();
    assert.deepEqual(map.regionsNeedingResync(), [0, 1, 2, 3]);
    await map.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
