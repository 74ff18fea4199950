import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NbdClient } from '../../src/agent/nbd/client.js';
import { runWorkload } from '../../src/lab/workload.js';
import { Prng } from '../../src/lab/prng.js';
import { checkpoint, execFileP, sameDisks, startCluster, verifyCheckpoints } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
const DISK = 'disk0';

test('agent → PS → MT as separate processes: our NBD client and qemu-io, replica and every bookmark verified byte for byte', async () => {
  const { cluster, dir, done } = await startCluster({ disks: [{ id: DISK, sizeBytes: 64 * MiB }], agent: { bookmarkIntervalSec: 0 } });
  try {
    await cluster.sync(DISK);
    const checkpoints: { id: string; hash: string }[] = [];

    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    for (let round = 0; round < 3; round++) {
      await runWorkload(client, { seed: 100 + round, blockBytes: 64 * 1024, pattern: 'random', concurrency: 8, maxWrites: 250, zeroEvery: 17 });
      await client.trim(round * MiB, 128 * 1024);
      checkpoints.push(await checkpoint(cluster, DISK));
    }
    await client.disconnect();

    // qemu-io from Debian qemu-utils as a second, independent NBD client.
    const prng = new Prng(42);
    const url = `nbd+unix:///${DISK}?socket=${cluster.paths.nbdSocket}`;
    for (let round = 0; round < 2; round++) {
      const cmds: string[] = [];
      for (let i = 0; i < 40; i++) {
        const off = prng.int(64 * 16 - 4) * 64 * 1024;
        const kind = prng.int(10);
        if (kind < 7) cmds.push('-c', `write -P 0x${(prng.int(255) + 1).toString(16)} ${off} ${64 * 1024 * (1 + prng.int(4))}`);
        else if (kind < 9) cmds.push('-c', `write -z ${off} 65536`);
        else cmds.push('-c', `discard ${off} 131072`);
      }
      cmds.push('-c', 'flush');
      const { stdout } = await execFileP('qemu-io', ['-f', 'raw', url, ...cmds]);
      assert.match(stdout, /wrote/);
      checkpoints.push(await checkpoint(cluster, DISK));
    }

    await cluster.sync(DISK);
    const { source, replica } = await sameDisks(cluster, DISK);
    assert.equal(replica, source, 'replica at latest equals the source');
    assert.deepEqual(await verifyCheckpoints(cluster, dir, DISK, checkpoints), [], 'every bookmark restores to the source as it was');

    const points = await cluster.client('mt').call<{ points: { bookmarkId: string; kind: string }[] }>('GET', `/disks/${DISK}/recovery-points`);
    for (const c of checkpoints) assert.ok(points.points.some((p) => p.bookmarkId === c.id && p.kind === 'app'), `point ${c.id} is listed as app-consistent`);

    // A clean stop of the agent drains and lets the next run continue the lineage (no resync).
    const before = await cluster.client('agent').call<{ disks: Record<string, { lineage: string }> }>('GET', '/status');
    assert.equal(await cluster.stop('agent'), 0);
    await cluster.start('agent');
    const after = await cluster.client('agent').call<{ disks: Record<string, { lineage: string; start: string; regionsToResync: number }> }>('GET', '/status');
    assert.equal(after.disks[DISK]?.start, 'continued');
    assert.equal(after.disks[DISK]?.lineage, before.disks[DISK]?.lineage);
    assert.equal(after.disks[DISK]?.regionsToResync, 0);
  } finally {
    await done();
  }
});

test('deflate on the PS → MT hop: fewer bytes on the wire, the same replica', async () => {
  const { cluster, done } = await startCluster({ disks: [{ id: DISK, sizeBytes: 16 * MiB }], agent: { bookmarkIntervalSec: 0 }, ps: { compression: 'deflate' } });
  try {
    await cluster.sync(DISK);
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    // Half the writes are zeroes-with-data (compressible), half random.
    const prng = new Prng(3);
    for (let i = 0; i < 64; i++) await client.write(i * 128 * 1024, i % 2 === 0 ? Buffer.alloc(128 * 1024, i) : prng.fill(Buffer.alloc(128 * 1024)));
    await client.disconnect();
    await cluster.sync(DISK);
    const { source, replica } = await sameDisks(cluster, DISK);
    assert.equal(replica, source);
    const ps = await cluster.client('ps').call<{ forwarding: { stats: { bytes: number; wireBytes: number } } }>('GET', '/status');
    assert.ok(ps.forwarding.stats.wireBytes < ps.forwarding.stats.bytes * 0.75, `deflate sent ${ps.forwarding.stats.wireBytes} of ${ps.forwarding.stats.bytes} bytes`);
  } finally {
    await done();
  }
});
