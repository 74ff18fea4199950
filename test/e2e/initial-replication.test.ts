import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { NbdClient } from '../../src/agent/nbd/client.js';
import { Prng } from '../../src/lab/prng.js';
import { runWorkload } from '../../src/lab/workload.js';
import { checkpoint, sameDisks, startCluster, verifyCheckpoints } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
const DISK = 'disk0';

test('a disk that already holds data is copied while live writes continue; zero regions travel as zero extents', async () => {
  const size = 48 * MiB;
  const { cluster, dir, done } = await startCluster({
    disks: [{ id: DISK, sizeBytes: size }],
    agent: { bookmarkIntervalSec: 0 },
    beforeStart: async (c) => {
      // Data in two thirds of the 1 MiB regions, the rest left zero (sparse).
      await mkdir(dirname(c.paths.source(DISK)), { recursive: true });
      const fh = await open(c.paths.source(DISK), 'w');
      await fh.truncate(size);
      const prng = new Prng(77);
      for (let r = 0; r < size / MiB; r++) if (r % 3 !== 2) await fh.write(prng.fill(Buffer.alloc(MiB)), 0, MiB, r * MiB);
      await fh.close();
    },
  });
  try {
    // Live writes race the initial copy (no sync first); they stay in the first 8 MiB so the
    // zero regions beyond stay zero.
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    await runWorkload(client, { seed: 8, blockBytes: 64 * 1024, pattern: 'random', concurrency: 8, maxWrites: 300, range: [0, 8 * MiB] });
    await cluster.sync(DISK);
    const { source, replica } = await sameDisks(cluster, DISK);
    assert.equal(replica, source);
    const status = await cluster.client('agent').call<{ disks: Record<string, { start: string; stats: { resyncBytesRead: number; resyncBytesSent: number } }> }>('GET', '/status');
    const s = status.disks[DISK]!;
    assert.equal(s.start, 'initial');
    assert.equal(s.stats.resyncBytesRead, size, 'every region is read once');
    assert.ok(s.stats.resyncBytesSent <= (size / 3) * 2 + 8 * MiB, `zero regions carry no payload (sent ${s.stats.resyncBytesSent})`);
    const c = await checkpoint(cluster, DISK);
    await cluster.sync(DISK);
    await client.disconnect();
    assert.deepEqual(await verifyCheckpoints(cluster, dir, DISK, [c]), []);
  } finally {
    await done();
  }
});

test('crash-consistent bookmarks are taken on a timer', async () => {
  const { cluster, done } = await startCluster({ disks: [{ id: DISK, sizeBytes: 8 * MiB }], agent: { bookmarkIntervalSec: 0.2 } });
  try {
    await cluster.sync(DISK);
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    // Bounded wait on the observable condition: at least three timed points on the MT.
    let crash = 0;
    for (let i = 0; i < 50 && crash < 3; i++) {
      await runWorkload(client, { seed: i, blockBytes: 4096, pattern: 'random', concurrency: 1, maxWrites: 20 });
      await cluster.sync(DISK);
      const pts = await cluster.client('mt').call<{ points: { kind: string }[] }>('GET', `/disks/${DISK}/recovery-points`);
      crash = pts.points.filter((p) => p.kind === 'crash').length;
      if (crash < 3) await new Promise((r) => setTimeout(r, 100));
    }
    await client.disconnect();
    assert.ok(crash >= 3, `timed crash-consistent points appear (${crash})`);
  } finally {
    await done();
  }
});
