import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { NbdClient } from '../agent/nbd/client.js';
import { Cluster } from './cluster.js';
import { hashFile } from './hash.js';
import { runWorkload } from './workload.js';

export interface ReplicationRunOptions {
  dir: string;
  diskBytes: number;
  durationMs: number;
  bookmarkEveryMs: number;
  seed: number;
  keep: boolean;
  print: (line: string) => void;
}

interface Checkpoint {
  id: string;
  sourceHash: string;
}

/**
 * The one-machine replication run: agent, process server and master target as separate
 * processes on loopback; a workload writes through the agent's NBD export while live figures
 * are printed; bookmarks are taken with writes paused (so the source state at each is known);
 * at the end the replica is compared with the source, and every bookmark is restored and
 * compared with the source as it was then. Returns true when everything verified.
 */
export async function replicationRun(o: ReplicationRunOptions): Promise<boolean> {
  if (!o.keep) await rm(o.dir, { recursive: true, force: true });
  const disk = 'disk0';
  const cluster = new Cluster({ dir: o.dir, disks: [{ id: disk, sizeBytes: o.diskBytes }], agent: { bookmarkIntervalSec: 0 } });
  await cluster.prepare();
  o.print(`lab: ${o.dir}  (logs in ${join(o.dir, 'logs')})`);
  await cluster.startAll();
  let ok = true;
  try {
    o.print(`agent, process server and master target running; initial replication of ${fmtBytes(o.diskBytes)}…`);
    const first = await cluster.sync(disk);
    o.print(`initial replication done (lineage ${first.lineage.slice(0, 8)}, seq ${first.seq})`);
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: disk });
    const checkpoints: Checkpoint[] = [];
    let written = 0;
    let lastWritten = 0;
    const started = Date.now();
    const ticker = setInterval(() => {
      void (async () => {
        const agent = await cluster.client('agent').call<{ disks: Record<string, { rpoMs: number; mode: string }> }>('GET', '/status');
        const mt = await cluster.client('mt').call<{ disks: Record<string, { rpoMs?: { p50: number; p99: number } }> }>('GET', '/status');
        const mbps = (written - lastWritten) / 1024 / 1024;
        lastWritten = written;
        o.print(
          `  t=${((Date.now() - started) / 1000).toFixed(0).padStart(3)}s  write ${mbps.toFixed(1).padStart(6)} MB/s  agent RPO ${agent.disks[disk]?.rpoMs ?? 0} ms  MT RPO p50/p99 ${mt.disks[disk]?.rpoMs?.p50 ?? 0}/${mt.disks[disk]?.rpoMs?.p99 ?? 0} ms  mode ${agent.disks[disk]?.mode}`,
        );
      })().catch(() => undefined);
    }, 1000);
    try {
      const rounds = Math.max(1, Math.round(o.durationMs / o.bookmarkEveryMs));
      for (let round = 0; round < rounds; round++) {
        await runWorkload(client, {
          seed: o.seed + round,
          blockBytes: 64 * 1024,
          pattern: round % 2 === 0 ? 'random' : 'sequential',
          concurrency: 16,
          durationMs: o.bookmarkEveryMs,
          zeroEvery: 50,
          onWrite: (n) => (written += n),
        });
        // Writes are paused here: the source file is exactly the state the bookmark names.
        const b = await cluster.client('agent').call<{ id: string }>('POST', `/disks/${disk}/bookmarks`, { kind: 'app' });
        checkpoints.push({ id: b.id, sourceHash: await hashFile(cluster.paths.source(disk)) });
        o.print(`  bookmark ${b.id.slice(0, 8)} taken`);
      }
    } finally {
      clearInterval(ticker);
      await client.disconnect();
    }
    const synced = await cluster.sync(disk);
    const [source, replica] = await Promise.all([hashFile(cluster.paths.source(disk)), hashFile(cluster.paths.replica(disk))]);
    const latestOk = source === replica;
    ok &&= latestOk;
    o.print(`wrote ${fmtBytes(written)} in ${((Date.now() - started) / 1000).toFixed(1)} s; replica at seq ${synced.seq}`);
    o.print(`${latestOk ? 'OK  ' : 'FAIL'} replica at latest == source  (sha256 ${replica.slice(0, 16)}…)`);
    for (const c of checkpoints) {
      const out = join(o.dir, 'site-b', `restore-${c.id.slice(0, 8)}.img`);
      await cluster.client('mt').call('POST', `/disks/${disk}/restore`, { point: c.id, outPath: out });
      const got = await hashFile(out);
      await rm(out, { force: true });
      const pass = got === c.sourceHash;
      ok &&= pass;
      o.print(`${pass ? 'OK  ' : 'FAIL'} recovery point ${c.id.slice(0, 8)} restored == source at that bookmark`);
    }
  } finally {
    await cluster.stopAll();
  }
  o.print(ok ? 'lab run verified: every byte replicated and every recovery point restorable.' : 'lab run FAILED verification.');
  return ok;
}

export function fmtBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${n} B`;
}
