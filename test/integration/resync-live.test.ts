import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RangeLock } from '../../src/agent/range-lock.js';
import { hashFile } from '../../src/lab/hash.js';
import { Prng } from '../../src/lab/prng.js';
import { FileDisk, type BlockDevice } from '../../src/replication/disk.js';
import { runResync } from '../../src/replication/resync/engine.js';
import type { ResyncExtent, ResyncSink } from '../../src/replication/resync/sink.js';
import { RemoteTarget } from '../../src/replication/resync/target-client.js';
import { BLOCK, changeBlocks, MiB, pickBlocks, startTarget, tlsMaterial, TOKEN, withTempDir, writeImage } from './resync-fixtures.js';

/**
 * The agent's contract, simulated: the workload keeps writing the source during the resync; each
 * write takes its range in a range lock and enters an ordered stream; the sink re-reads a
 * differing extent under the same lock and enqueues what it read. A replica applies the stream in
 * order, concurrently with the target's compare reads. At the end the replica equals the source.
 */

interface StreamEvent {
  offset: number;
  length: number;
  data?: Buffer;
  resync: boolean;
}

/** The ordered write stream and its in-order applier (what agent → PS → MT does). */
class Stream {
  readonly events: StreamEvent[] = [];
  private applied: Promise<void> = Promise.resolve();
  constructor(private readonly replica: BlockDevice) {}
  push(e: StreamEvent): void {
    this.events.push(e);
    this.applied = this.applied.then(() => (e.data ? this.replica.write(e.offset, e.data) : this.replica.writeZeroes(e.offset, e.length)));
  }
  async drain(): Promise<void> {
    await this.applied;
    await this.replica.flush();
  }
}

test('live writes during the resync never lose the newer write; the replica ends equal to the source', async () => {
  await withTempDir(async (dir) => {
    const sourcePath = join(dir, 'source.img');
    const targetPath = join(dir, 'target.img');
    const size = 8 * MiB;
    const blocks = size / BLOCK;
    await writeImage(sourcePath, size, 41);
    await copyFile(sourcePath, targetPath);
    await changeBlocks(targetPath, pickBlocks(blocks / 50, blocks, 42), 43);
    const server = await startTarget(targetPath);
    const source = await FileDisk.open(sourcePath);
    const replica = await FileDisk.open(targetPath);
    const remote = await RemoteTarget.connect(server.endpoint, await tlsMaterial(), TOKEN);
    const lock = new RangeLock();
    const stream = new Stream(replica);
    const prng = new Prng(44);

    /** A captured write: under the lock, written through, then into the stream in lock order. */
    const liveWrite = async (offset: number): Promise<void> => {
      const zero = prng.int(8) === 0;
      const data = zero ? undefined : prng.fill(Buffer.allocUnsafe(BLOCK));
      const release = await lock.acquire(offset, BLOCK);
      try {
        if (data) await source.write(offset, data);
        else await source.writeZeroes(offset, BLOCK);
        stream.push({ offset, length: BLOCK, ...(data ? { data } : {}), resync: false });
      } finally {
        release();
      }
    };
    const randomBlock = () => prng.int(blocks) * BLOCK;

    // The engine reads the source without the lock, as the agent's would; each read lets the
    // workload write first: once into the very batch being read, once anywhere.
    const engineView: BlockDevice = {
      size,
      read: (offset, length) => source.read(offset, length),
      readInto: async (into, offset) => {
        await liveWrite(offset + prng.int(into.length / BLOCK) * BLOCK);
        await liveWrite(randomBlock());
        await source.readInto(into, offset);
      },
      write: () => Promise.reject(new Error('the engine never writes the source')),
      writeZeroes: () => Promise.reject(new Error('the engine never writes the source')),
      flush: () => Promise.resolve(),
      close: () => Promise.resolve(),
    };

    // The agent's sink: a racing write to the same block first, then re-read under the lock.
    const sink: ResyncSink = {
      async write(e: ResyncExtent) {
        await liveWrite(e.offset);
        const release = await lock.acquire(e.offset, e.length);
        try {
          stream.push({ offset: e.offset, length: e.length, data: await source.read(e.offset, e.length), resync: true });
        } finally {
          release();
        }
      },
      flush: () => stream.drain(),
    };

    try {
      const result = await runResync({ diskId: 'disk-0', source: engineView, remote, sink, layout: { batchBytes: 256 * 1024 }, windowBatches: 4 });
      assert.equal(result.completed, true);
      await stream.drain();
      assert.equal(await hashFile(targetPath), await hashFile(sourcePath));
      const resyncEvents = stream.events.filter((e) => e.resync).length;
      assert.ok(resyncEvents > 0 && stream.events.length - resyncEvents > 2 * (size / (256 * 1024)), `${stream.events.length} events, ${resyncEvents} from the resync`);
    } finally {
      await remote.close();
      await server.close();
      await source.close();
      await replica.close();
    }
  });
});
