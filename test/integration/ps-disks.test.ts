import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MasterTarget } from '../../src/mt/main.js';
import { ProcessServer } from '../../src/ps/process-server.js';
import { BatchFlags, type Batch } from '../../src/replication/batch.js';
import { newLineage } from '../../src/replication/position.js';
import { createLogger } from '../../src/runtime/log.js';
import { LineageWriter, Model, prng } from '../unit/mt-fixtures.js';
import { MiB, RawSender, sha256File, testPki, withDir } from '../helpers/stack.js';

const SIZE = 4 * MiB;
const START = BatchFlags.lineageStart | BatchFlags.resync | BatchFlags.resyncDone;

/** One disk's history: batches of a lineage and the model of the disk they build. */
class History {
  w: LineageWriter;
  model = new Model(SIZE);
  private t = 1_700_000_000_000;
  private seed: number;

  constructor(
    readonly diskId: string,
    seed: number,
  ) {
    this.seed = seed;
    this.w = new LineageWriter(newLineage(), prng(seed), { size: SIZE });
  }

  /** Starts over in a new lineage on a fresh model (as after a failover). */
  restart(): void {
    this.w = new LineageWriter(newLineage(), prng(++this.seed * 7919), { size: SIZE });
    this.model = new Model(SIZE);
  }

  next(o: { flags?: number; bookmark?: 'crash' } = {}): Batch {
    const b = { ...this.w.next({ time: (this.t += 1000), ...o }), diskId: this.diskId };
    this.model.apply(b);
    return b;
  }
}

async function store(agent: RawSender, batches: Batch[]): Promise<void> {
  for (const b of batches) assert.equal((await agent.send(b)).ack?.status, 'stored');
}

test('drainDisk resolves once the MT acknowledged the disk; discardDisk drops that disk only; freeze keeps batches at the PS', async () => {
  await withDir('ps-disks', async (dir) => {
    const { material, token } = await testPki();
    const mt = await MasterTarget.start({ name: 'mt', listen: { host: '127.0.0.1', port: 0 }, retentionDir: join(dir, 'retention'), disks: [], material, token, log: createLogger('mt', 'silent') });
    const ps = await ProcessServer.start({
      name: 'ps',
      listen: { host: '127.0.0.1', port: 0 },
      spoolDir: join(dir, 'spool'),
      masterTarget: mt.endpoint!,
      material,
      token,
      log: createLogger('ps', 'silent'),
    });
    const agent = await RawSender.open(ps.endpoint!, 'agent');
    try {
      const a = new History('disk-a', 1);
      const b = new History('disk-b', 2);
      await store(agent, [a.next({ flags: START, bookmark: 'crash' }), a.next(), a.next()]);
      await store(agent, [b.next({ flags: START, bookmark: 'crash' }), b.next()]);
      // The MT has neither disk: it refuses retryably and the PS keeps everything.
      assert.equal(await ps.drainDisk('disk-a', 200), false);
      assert.deepEqual(
        Object.fromEntries(Object.entries(ps.pendingByDisk()).map(([id, p]) => [id, p.batches])),
        { 'disk-a': 3, 'disk-b': 2 },
      );
      assert.equal(await ps.drainDisk('disk-never-seen', 0), true);

      // Discard disk-b: its spool is gone, disk-a's is untouched.
      const dropped = await ps.discardDisk('disk-b');
      assert.equal(dropped.batches, 2);
      assert.ok(dropped.bytes > 0);
      assert.deepEqual(Object.keys(ps.pendingByDisk()), ['disk-a']);
      assert.deepEqual(await readdir(join(dir, 'spool', 'disk-b')), []);
      assert.equal((await readdir(join(dir, 'spool', 'disk-a'))).length, 3);
      assert.equal(await ps.drainDisk('disk-b', 0), true);
      assert.deepEqual(await ps.discardDisk('disk-b'), { batches: 0, bytes: 0 });

      // Attach disk-a: the forwarder's retry delivers, drainDisk wakes on the last acknowledgement.
      const drainedA = ps.drainDisk('disk-a', 30_000);
      await mt.attachDisk({ id: 'disk-a', target: join(dir, 'a.img'), sizeBytes: SIZE });
      assert.equal(await drainedA, true);
      assert.equal(await sha256File(join(dir, 'a.img')), a.model.hash());
      assert.deepEqual(ps.pendingByDisk(), {});

      // Frozen on the MT: the PS keeps the batches; attaching again resumes.
      await mt.freezeDisk('disk-a');
      await store(agent, [a.next(), a.next()]);
      assert.equal(await ps.drainDisk('disk-a', 300), false);
      assert.equal(ps.pendingByDisk()['disk-a']?.batches, 2);
      const resumed = ps.drainDisk('disk-a', 30_000);
      await mt.attachDisk({ id: 'disk-a', target: join(dir, 'a.img'), sizeBytes: SIZE });
      assert.equal(await resumed, true);
      assert.equal(await sha256File(join(dir, 'a.img')), a.model.hash());

      // disk-b's later batches (a new lineage) are taken and forwarded as usual; the discarded
      // ones never reached the MT.
      b.restart();
      await mt.attachDisk({ id: 'disk-b', target: join(dir, 'b.img'), sizeBytes: SIZE });
      await store(agent, [b.next({ flags: START, bookmark: 'crash' }), b.next()]);
      assert.equal(await ps.drainDisk('disk-b', 30_000), true);
      assert.equal(await sha256File(join(dir, 'b.img')), b.model.hash());
      assert.equal(mt.diskStatus('disk-b').position?.lineage, b.w.lineage);
      assert.equal(mt.diskStatus('disk-b').points.length, 1);
    } finally {
      agent.close();
      await ps.stop();
      await mt.stop();
    }
  });
});
