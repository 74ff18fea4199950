/**
 * bench:reprotect — the agent's resync of a protected disk through the real data path: agent,
 * process server and master target as separate processes on loopback (the lab's Cluster), TLS on
 * every hop, the MT's undo journal on. Prints one JSON document.
 *
 * The situation of an original-location reprotect: the MT's replica is the machine's old disk
 * (a seeded image, BENCH_DISK_MIB, default 2 GiB) and the protected disk is that image with
 * BENCH_CHANGED_PERCENT (default 1) of its 4 KiB blocks rewritten at random (seeded). The agent
 * serves the disk in passthrough; the run starts with `protectDisk` (a new lineage) and ends when
 * the MT has applied the lineage's last batch (the first recovery point: replica consistent).
 * Two runs on fresh copies, page cache dropped before each (when root):
 *   - delta: protectDisk with the MT's resync target — the agent compares its disk with the
 *     replica over a connection to the MT and sends only the differing blocks through the PS;
 *   - copy: protectDisk without one — today's resync, every region copied through the PS
 *     (the baseline in the same run).
 * Bytes: frame bytes per hop (agent → PS batches, the compare connection each way, PS → MT
 * batches; TLS adds ~22 bytes per 16 KiB record), and every byte that crossed the loopback
 * interface during the run (/proc/net/dev, TCP/IP headers included: all hops together).
 * Every replica is verified byte for byte (sha256 of the whole file).
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Cluster } from '../src/lab/cluster.js';
import { hashFile } from '../src/lab/hash.js';
import { changeRandomBlocks, coldCache, writeSeededImage } from '../src/lab/images.js';
import type { Endpoint } from '../src/replication/transport.js';

const MiB = 1024 * 1024;
const BLOCK = 4096;
const SEED = 0x7e9d;
const DISK = 'disk0';

const round = (n: number, digits = 3) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Bytes the loopback interface received so far (each loopback byte is counted once there). */
async function loopbackBytes(): Promise<number | undefined> {
  const text = await readFile('/proc/net/dev', 'utf8').catch(() => '');
  const line = text.split('\n').find((l) => l.trim().startsWith('lo:'));
  if (!line) return undefined;
  const fields = line.split(':')[1]!.trim().split(/\s+/);
  return Number(fields[0]);
}

interface AgentStatus {
  sender: { bytesSent: number; batchesSent: number };
  disks: Record<string, { lineage: string; resync: { mode?: string; delta?: { compareBytes: { sent: number; received: number }; bytesChanged: number; bytesCopied: number } }; stats: { resyncBytesRead: number; resyncBytesSent: number } }>;
}
interface PsStatus {
  forwarding: { stats?: { batches: number; bytes: number; wireBytes: number } };
}
interface MtStatus {
  apply: { batches: number; bytes: number };
  resync: { endpoint?: Endpoint };
  disks: Record<string, { health: { journalBytes: number } }>;
}

async function reprotect(mode: 'delta' | 'copy', pristine: string, changedSource: string, diskBytes: number) {
  const dir = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), `boomerang-bench-reprotect-${mode}-`));
  const cluster = new Cluster({ dir, disks: [{ id: DISK, sizeBytes: diskBytes }], agent: { bookmarkIntervalSec: 0 }, logLevel: 'warn' });
  try {
    await cluster.prepare();
    // The agent serves the disk unprotected until the run starts; the MT's replica is the old disk.
    const agentConfig = join(dir, 'agent', 'agent.json');
    const cfg = JSON.parse(await readFile(agentConfig, 'utf8')) as { disks: { protect?: boolean }[] };
    for (const d of cfg.disks) d.protect = false;
    await writeFile(agentConfig, JSON.stringify(cfg));
    await copyFile(pristine, cluster.paths.replica(DISK));
    await copyFile(changedSource, cluster.paths.source(DISK));
    await cluster.startAll();
    const mt = await cluster.client('mt').call<MtStatus>('GET', '/status');
    const target = mt.resync.endpoint!;
    const dropped = await coldCache();
    const lo0 = await loopbackBytes();
    const t0 = performance.now();
    const { lineage } = await cluster.client('agent').call<{ lineage: string }>('POST', `/disks/${DISK}/protect?newLineage=true`, mode === 'delta' ? { resyncTarget: target } : {});
    const reached = await cluster.sync(DISK, 600_000);
    const wallSeconds = (performance.now() - t0) / 1000;
    const lo1 = await loopbackBytes();
    const [agent, ps, mtAfter] = await Promise.all([
      cluster.client('agent').call<AgentStatus>('GET', '/status'),
      cluster.client('ps').call<PsStatus>('GET', '/status'),
      cluster.client('mt').call<MtStatus>('GET', '/status'),
    ]);
    const d = agent.disks[DISK]!;
    const verified = (await hashFile(cluster.paths.source(DISK))) === (await hashFile(cluster.paths.replica(DISK)));
    const compare = d.resync.delta?.compareBytes ?? { sent: 0, received: 0 };
    const frames = agent.sender.bytesSent + compare.sent + compare.received + (ps.forwarding.stats?.wireBytes ?? 0);
    return {
      mode,
      wallSeconds: round(wallSeconds),
      cachesDropped: dropped,
      lineageConsistentAtMt: reached.lineage === lineage,
      agentToPs: { batches: agent.sender.batchesSent, bytes: agent.sender.bytesSent },
      compareConnection: compare,
      psToMt: ps.forwarding.stats ?? null,
      mtApplied: mtAfter.apply,
      mtJournalBytes: mtAfter.disks[DISK]?.health.journalBytes ?? null,
      frameBytesAllHops: frames,
      loopbackBytesAllHops: lo0 !== undefined && lo1 !== undefined ? lo1 - lo0 : null,
      resyncBytesRead: d.stats.resyncBytesRead,
      verified,
    };
  } finally {
    await cluster.killAll();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const diskBytes = Number(process.env.BENCH_DISK_MIB ?? 2048) * MiB;
  const percent = Number(process.env.BENCH_CHANGED_PERCENT ?? 1);
  const loadBefore = loadavg();
  const dir = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'boomerang-bench-reprotect-'));
  try {
    const pristine = join(dir, 'pristine.img');
    const changed = join(dir, 'changed.img');
    await writeSeededImage(pristine, diskBytes, SEED);
    await copyFile(pristine, changed);
    const bytesChanged = (await changeRandomBlocks(changed, diskBytes, percent, SEED + 1, BLOCK)).bytes;
    const delta = await reprotect('delta', pristine, changed, diskBytes);
    const copy = await reprotect('copy', pristine, changed, diskBytes);
    const perChanged = (n: number | null) => (n === null || bytesChanged === 0 ? null : round(n / bytesChanged));
    const result = {
      benchmark: 'reprotect',
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? '', node: process.version, loadAverageBefore: loadBefore.map((n) => round(n, 2)), loadAverageAfter: loadavg().map((n) => round(n, 2)) },
      disk: { bytes: diskBytes, changedPercent: percent, bytesChanged, blockBytes: BLOCK, seed: SEED },
      path: 'agent → PS → MT as three processes on loopback, TLS 1.3 on every hop, MT undo journal; from protectDisk until the MT applied the lineage’s last batch',
      runs: [delta, copy],
      delta: {
        wallVsCopy: round(delta.wallSeconds / copy.wallSeconds),
        frameBytesPerChangedByte: perChanged(delta.frameBytesAllHops),
        agentWirePerChangedByte: perChanged(delta.agentToPs.bytes + delta.compareConnection.sent + delta.compareConnection.received),
        loopbackBytesPerChangedByte: perChanged(delta.loopbackBytesAllHops),
      },
      allVerified: delta.verified && copy.verified && delta.lineageConsistentAtMt && copy.lineageConsistentAtMt,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
