import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFile, rm, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { NbdClient } from '../../src/agent/nbd/client.js';
import { runWorkload } from '../../src/lab/workload.js';
import { Prng } from '../../src/lab/prng.js';
import type { Cluster, Role } from '../../src/lab/cluster.js';
import { checkpoint, sameDisks, startCluster, verifyCheckpoints } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
const DISK = 'disk0';
const exec = promisify(execFile);

/** Runs writes and kills `role` (SIGKILL) after `killAfter` of them, mid-stream. */
async function writeAndKill(cluster: Cluster, client: NbdClient, role: Role, seed: number, killAfter: number): Promise<void> {
  let n = 0;
  let killed: Promise<void> | undefined;
  await runWorkload(client, {
    seed,
    blockBytes: 64 * 1024,
    pattern: 'random',
    concurrency: 4,
    maxWrites: killAfter + 60,
    onWrite: () => {
      if (++n === killAfter) killed = cluster.kill(role);
    },
  });
  await killed;
}

for (const role of ['ps', 'mt'] as const) {
  test(`kill -9 of the ${role} at several points mid-stream loses nothing acknowledged`, async () => {
    const { cluster, dir, done } = await startCluster({ disks: [{ id: DISK, sizeBytes: 32 * MiB }], agent: { bookmarkIntervalSec: 0 } });
    try {
      await cluster.sync(DISK);
      const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
      const prng = new Prng(role === 'ps' ? 11 : 12);
      const checkpoints = [await checkpoint(cluster, DISK)];
      await cluster.sync(DISK); // this point is acknowledged by the MT before any crash
      for (let round = 0; round < 3; round++) {
        await writeAndKill(cluster, client, role, 1000 + round, 10 + prng.int(80));
        checkpoints.push(await checkpoint(cluster, DISK)); // taken while the component is down
        await cluster.start(role);
      }
      await client.disconnect();
      await cluster.sync(DISK);
      const { source, replica } = await sameDisks(cluster, DISK);
      assert.equal(replica, source, 'replica converges to the source');
      assert.deepEqual(await verifyCheckpoints(cluster, dir, DISK, checkpoints), [], 'every recovery point restores correctly');
    } finally {
      await done();
    }
  });
}

test('kill -9 of the agent: a new lineage, a resync bounded by the write-intent map, old points intact', async () => {
  const { cluster, dir, done } = await startCluster({ disks: [{ id: DISK, sizeBytes: 64 * MiB }], agent: { bookmarkIntervalSec: 0, regionBytes: MiB } });
  try {
    const first = await cluster.sync(DISK);
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    await runWorkload(client, { seed: 5, blockBytes: 64 * 1024, pattern: 'random', concurrency: 4, maxWrites: 100, range: [0, 8 * MiB] });
    const checkpoints = [await checkpoint(cluster, DISK)];
    await cluster.sync(DISK);
    // Writes confined to the first 8 MiB, agent killed while they are in flight.
    let n = 0;
    let killed: Promise<void> | undefined;
    await runWorkload(client, {
      seed: 6,
      blockBytes: 64 * 1024,
      pattern: 'random',
      concurrency: 4,
      maxWrites: 400,
      range: [0, 8 * MiB],
      onWrite: () => {
        if (++n === 150) killed = cluster.kill('agent');
      },
    }).catch(() => undefined); // writes in flight when the agent dies fail, as they would for a real workload
    await killed;
    await client.disconnect().catch(() => undefined);
    await cluster.start('agent');
    const status = await cluster.client('agent').call<{ disks: Record<string, { start: string; lineage: string; resync: { total: number } }> }>('GET', '/status');
    const d = status.disks[DISK]!;
    assert.equal(d.start, 'crash-recovery');
    assert.notEqual(d.lineage, first.lineage, 'a new lineage starts after a crash');
    const synced = await cluster.sync(DISK);
    const after = await cluster.client('agent').call<{ disks: Record<string, { resync: { total: number }; stats: { resyncBytesRead: number } }> }>('GET', '/status');
    const read = after.disks[DISK]!.stats.resyncBytesRead;
    assert.ok(read > 0 && read <= 8 * MiB, `resync read ${read} bytes: only the regions written before the crash (≤ 8 MiB of 64)`);
    assert.notEqual(synced.lineage, first.lineage);
    const { source, replica } = await sameDisks(cluster, DISK);
    assert.equal(replica, source);
    const c2 = await checkpoint(cluster, DISK);
    await cluster.sync(DISK);
    assert.deepEqual(await verifyCheckpoints(cluster, dir, DISK, [...checkpoints, c2]), []);
  } finally {
    await done();
  }
});

test('a bit flipped on the wire is rejected and the data resent', async () => {
  const { cluster, done } = await startCluster({ disks: [{ id: DISK, sizeBytes: 16 * MiB }], agent: { bookmarkIntervalSec: 0 } });
  // A TCP proxy in front of the PS that flips one bit of the agent's stream, once, 300 KB in.
  let flipped = false;
  let seen = 0;
  const psPort = cluster.requirePort('ps');
  const proxy = net.createServer((inbound) => {
    const outbound = net.connect(psPort, '127.0.0.1');
    inbound.on('data', (chunk: Buffer) => {
      if (!flipped && seen + chunk.length > 300_000) {
        const at = 300_000 - seen;
        if (at >= 0 && at < chunk.length) {
          chunk[at]! ^= 0x10;
          flipped = true;
        }
      }
      seen += chunk.length;
      outbound.write(chunk);
    });
    outbound.pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  try {
    await cluster.kill('agent');
    await cluster.start('agent', { psPort: (proxy.address() as net.AddressInfo).port });
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    await runWorkload(client, { seed: 9, blockBytes: 64 * 1024, pattern: 'sequential', concurrency: 4, maxWrites: 200 });
    await client.disconnect();
    await cluster.sync(DISK);
    assert.equal(flipped, true, 'the proxy flipped a bit');
    const status = await cluster.client('agent').call<{ sender: { reconnects: number } }>('GET', '/status');
    assert.ok(status.sender.reconnects >= 1, 'the corrupted stream was refused and the agent reconnected');
    const { source, replica } = await sameDisks(cluster, DISK);
    assert.equal(replica, source);
  } finally {
    proxy.close();
    await done();
  }
});

test('a full retention volume pauses apply, then resumes when space is freed, journal intact', async () => {
  const { cluster, dir, done } = await startCluster({
    disks: [{ id: DISK, sizeBytes: 16 * MiB }],
    agent: { bookmarkIntervalSec: 0 },
    beforeStart: async (c) => {
      await mkdir(c.paths.retention, { recursive: true });
      await exec('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', c.paths.retention]);
    },
  });
  const filler = join(cluster.paths.retention, 'filler');
  try {
    await cluster.sync(DISK);
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    // Fill the first 8 MiB so that overwriting it later needs 8 MiB of before-images.
    await runWorkload(client, { seed: 1, blockBytes: 64 * 1024, pattern: 'sequential', concurrency: 4, maxWrites: 128 });
    const checkpoints = [await checkpoint(cluster, DISK)];
    await cluster.sync(DISK);
    // Leave about 2 MiB free, then overwrite those 8 MiB: the undo journal cannot hold it.
    const { stdout } = await exec('df', ['--output=avail', '-B1', cluster.paths.retention]);
    const avail = Number(stdout.trim().split('\n').pop());
    await writeFile(filler, Buffer.alloc(Math.max(0, avail - 2 * MiB)));
    await runWorkload(client, { seed: 2, blockBytes: 64 * 1024, pattern: 'sequential', concurrency: 4, maxWrites: 128 });
    checkpoints.push(await checkpoint(cluster, DISK));
    // Wait (bounded) until the MT reports that apply is paused on the full volume.
    let paused = false;
    for (let i = 0; i < 300 && !paused; i++) {
      const st = await cluster.client('mt').call<{ disks: Record<string, { health: { paused?: unknown; pausedReason?: unknown } }> }>('GET', '/status');
      const h = st.disks[DISK]!.health as Record<string, unknown>;
      paused = Boolean(h.paused ?? h.pausedReason);
      if (!paused) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(paused, true, 'the MT reports apply paused for a full retention volume');
    await rm(filler);
    await cluster.sync(DISK);
    await client.disconnect();
    const { source, replica } = await sameDisks(cluster, DISK);
    assert.equal(replica, source);
    assert.deepEqual(await verifyCheckpoints(cluster, dir, DISK, checkpoints), []);
  } finally {
    await cluster.killAll();
    await exec('umount', [cluster.paths.retention]).catch(() => undefined);
    await done();
  }
});

test('a full agent buffer switches to the dirty map, marks resync required, drops nothing', async () => {
  const { cluster, dir, done } = await startCluster({ disks: [{ id: DISK, sizeBytes: 32 * MiB }], agent: { bookmarkIntervalSec: 0, bufferBytes: 2 * MiB } });
  try {
    await cluster.sync(DISK);
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    // 1 MiB: fits the 2 MiB buffer however slowly the PS acknowledges.
    await runWorkload(client, { seed: 3, blockBytes: 64 * 1024, pattern: 'random', concurrency: 4, maxWrites: 16 });
    const checkpoints = [await checkpoint(cluster, DISK)];
    await cluster.sync(DISK);
    // With the PS down nothing drains: 6 MiB of writes cannot fit a 2 MiB buffer.
    await cluster.kill('ps');
    await runWorkload(client, { seed: 4, blockBytes: 64 * 1024, pattern: 'random', concurrency: 4, maxWrites: 96 });
    const during = await cluster.client('agent').call<{ disks: Record<string, { mode: string; resyncRequired: boolean; regionsToResync: number; stats: { overflows: number } }> }>('GET', '/status');
    const d = during.disks[DISK]!;
    assert.equal(d.mode, 'overflow');
    assert.equal(d.resyncRequired, true);
    assert.ok(d.regionsToResync > 0 && d.stats.overflows === 1);
    await assert.rejects(cluster.client('agent').call('POST', `/disks/${DISK}/bookmarks`, {}), /RESYNC_IN_PROGRESS|resync|overflow/);
    await cluster.start('ps');
    await cluster.sync(DISK);
    const { source, replica } = await sameDisks(cluster, DISK);
    assert.equal(replica, source, 'after the resync the replica equals the source');
    checkpoints.push(await checkpoint(cluster, DISK));
    await cluster.sync(DISK);
    await client.disconnect();
    assert.deepEqual(await verifyCheckpoints(cluster, dir, DISK, checkpoints), []);
  } finally {
    await done();
  }
});
