/**
 * bench:replication — the data path measured end to end on loopback, agent, PS and MT as
 * separate processes (what a deployment runs), printing one JSON document:
 *   - sustained throughput agent → PS → MT for sequential and random 64 KiB writes
 *     (from the first write until the MT has applied the last one);
 *   - RPO at a fixed churn of 54 MB/s: time from a batch's first write to durable on the MT;
 *   - capture overhead: NBD write throughput through the agent vs plain file writes of the
 *     same blocks in the same run (the baseline).
 * Sizes can be scaled with BENCH_SCALE (default 1) to fit slower machines.
 */
import { mkdtemp, rm, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdClient } from '../src/agent/nbd/client.js';
import { Cluster } from '../src/lab/cluster.js';
import { hashFile } from '../src/lab/hash.js';
import { Prng } from '../src/lab/prng.js';
import { runWorkload } from '../src/lab/workload.js';
import { NbdServer, fileExport, type NbdExport } from '../src/agent/nbd/server.js';
import { DiskCapture } from '../src/agent/capture.js';
import { DirtyMap } from '../src/agent/dirty-map.js';
import { BufferBudget } from '../src/agent/budget.js';
import { FileDisk } from '../src/replication/disk.js';
import { newLineage } from '../src/replication/position.js';

const MiB = 1024 * 1024;
const scale = Number(process.env.BENCH_SCALE ?? '1');
const DISK = 'disk0';
const BLOCK = 64 * 1024;
const DISK_BYTES = 2048 * MiB;

interface MtStatus {
  disks: Record<string, { rpoMs?: { count: number; p50: number; p99: number; max: number } }>;
}

async function withCluster<T>(name: string, fn: (c: Cluster, dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), `boomerang-bench-${name}-`));
  const cluster = new Cluster({ dir, disks: [{ id: DISK, sizeBytes: DISK_BYTES }], agent: { bookmarkIntervalSec: 0 }, logLevel: 'warn' });
  try {
    await cluster.prepare();
    await cluster.startAll();
    await cluster.sync(DISK, 600_000);
    return await fn(cluster, dir);
  } finally {
    await cluster.killAll();
    await rm(dir, { recursive: true, force: true });
  }
}

async function throughput(pattern: 'sequential' | 'random', bytes: number) {
  return withCluster(pattern, async (cluster) => {
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    const t0 = Date.now();
    const w = await runWorkload(client, { seed: 1, blockBytes: BLOCK, pattern, concurrency: 32, maxWrites: Math.floor(bytes / BLOCK), range: [0, Math.min(DISK_BYTES, bytes)] });
    await client.disconnect();
    await cluster.sync(DISK, 600_000);
    const ms = Date.now() - t0;
    const [a, b] = await Promise.all([hashFile(cluster.paths.source(DISK)), hashFile(cluster.paths.replica(DISK))]);
    return {
      pattern,
      bytes: w.bytes,
      nbdWriteMBps: round(w.bytes / MiB / (w.ms / 1000)),
      endToEndMBps: round(w.bytes / MiB / (ms / 1000)),
      endToEndSeconds: round(ms / 1000),
      replicaVerified: a === b,
    };
  });
}

async function rpoAtChurn(mbPerSecond: number, seconds: number) {
  return withCluster('rpo', async (cluster) => {
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    const w = await runWorkload(client, { seed: 2, blockBytes: BLOCK, pattern: 'random', concurrency: 8, durationMs: seconds * 1000, bytesPerSecond: mbPerSecond * 1e6 });
    await client.disconnect();
    await cluster.sync(DISK, 600_000);
    const st = await cluster.client('mt').call<MtStatus>('GET', '/status');
    const rpo = st.disks[DISK]?.rpoMs;
    return { targetChurnMBps: mbPerSecond, achievedChurnMBps: round(w.bytes / 1e6 / (w.ms / 1000)), seconds, batches: rpo?.count ?? 0, p50Ms: rpo?.p50 ?? null, p99Ms: rpo?.p99 ?? null, maxMs: rpo?.max ?? null };
  });
}

/** The baseline: the same 64 KiB blocks written to a plain file with the same concurrency. */
async function plainFileWrite(bytes: number) {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-bench-plain-'));
  try {
    const fh = await open(join(dir, 'plain.img'), 'w+');
    await fh.truncate(DISK_BYTES);
    const prng = new Prng(1);
    const writes = Math.floor(bytes / BLOCK);
    let next = 0;
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < writes) {
          const i = next++;
          await fh.write(prng.fill(Buffer.allocUnsafe(BLOCK)), 0, BLOCK, (i * BLOCK) % DISK_BYTES);
        }
      }),
    );
    const ms = Date.now() - t0;
    await fh.close();
    return { bytes: writes * BLOCK, MBps: round((writes * BLOCK) / MiB / (ms / 1000)) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Capture alone, in one process: the same workload through an NBD export that is a plain file
 * (protocol cost) and through the agent's capture (range lock, write-intent map, sequencing,
 * batch encoding) whose batches are acknowledged at once instead of travelling to a PS.
 */
async function nbdExportWrite(kind: 'plain' | 'capture', bytes: number) {
  const dir = await mkdtemp(join(tmpdir(), `boomerang-bench-${kind}-`));
  try {
    const disk = await FileDisk.open(join(dir, 'disk.img'), { size: DISK_BYTES, create: true });
    let exp: NbdExport;
    let dirty: DirtyMap | undefined;
    if (kind === 'plain') exp = fileExport(DISK, disk);
    else {
      dirty = (await DirtyMap.open(join(dir, 'disk.dirty'), DISK_BYTES, MiB)).map;
      const budget = new BufferBudget(256 * MiB);
      const map = dirty;
      exp = new DiskCapture(
        {
          diskId: DISK,
          backing: disk,
          dirty: map,
          budget,
          maxBatchBytes: 4 * MiB,
          maxBatchDelayMs: 20,
          onSealed: (b) => {
            budget.give(b.held);
            for (const [o, l] of b.ranges) map.release(o, l);
          },
          onResyncNeeded: () => undefined,
        },
        { lineage: newLineage(), lastSeq: 0 },
      );
    }
    const server = new NbdServer({ socketPath: join(dir, 'nbd.sock'), exports: [exp] });
    await server.listen();
    const client = await NbdClient.connect({ socketPath: join(dir, 'nbd.sock'), exportName: DISK });
    const w = await runWorkload(client, { seed: 1, blockBytes: BLOCK, pattern: 'sequential', concurrency: 32, maxWrites: Math.floor(bytes / BLOCK) });
    await client.disconnect();
    await server.close();
    if (exp instanceof DiskCapture) exp.close();
    await dirty?.close();
    await disk.close();
    return round(w.bytes / MiB / (w.ms / 1000));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

const seqBytes = Math.round(1024 * MiB * scale);
const randBytes = Math.round(512 * MiB * scale);
const plain = await plainFileWrite(seqBytes);
const nbdPlain = await nbdExportWrite('plain', seqBytes);
const nbdCapture = await nbdExportWrite('capture', seqBytes);
const sequential = await throughput('sequential', seqBytes);
const random = await throughput('random', randBytes);
const rpo = await rpoAtChurn(54, Math.max(5, Math.round(30 * scale)));
const result = {
  benchmark: 'replication',
  machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
  throughput: { sequential, random },
  rpoAt54MBps: rpo,
  capture: {
    plainFileWriteMBps: plain.MBps,
    nbdPlainExportMBps: nbdPlain,
    nbdCaptureMBps: nbdCapture,
    captureVsPlainFile: Math.round((nbdCapture / plain.MBps) * 100) / 100,
    captureVsNbdPlain: Math.round((nbdCapture / nbdPlain) * 100) / 100,
    withReplicationRunningMBps: sequential.nbdWriteMBps,
  },
  targets: { throughputMBps: 300, rpoP99Ms: 2000, captureRatio: 0.5 },
};
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
