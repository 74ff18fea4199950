import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster, type ClusterOptions } from '../../src/lab/cluster.js';
import { hashFile } from '../../src/lab/hash.js';

export const execFileP = promisify(execFile);

/** A cluster in a fresh temp dir; `done()` stops every process and removes the dir. */
export async function startCluster(
  options: Omit<ClusterOptions, 'dir'> & { beforeStart?: (c: Cluster) => Promise<void> },
): Promise<{ cluster: Cluster; dir: string; done: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-e2e-'));
  const { beforeStart, ...rest } = options;
  const cluster = new Cluster({ ...rest, dir });
  await cluster.prepare();
  try {
    await beforeStart?.(cluster);
    await cluster.startAll();
  } catch (err) {
    await cluster.killAll();
    throw err;
  }
  return {
    cluster,
    dir,
    done: async () => {
      await cluster.killAll();
      // BOOMERANG_KEEP_TEST_DIRS=1 keeps configs and component logs for a post-mortem.
      if (process.env.BOOMERANG_KEEP_TEST_DIRS !== '1') await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Asks the agent for a bookmark while the caller has writes paused; records the source hash. */
export async function checkpoint(cluster: Cluster, disk: string, kind: 'crash' | 'app' = 'app'): Promise<{ id: string; hash: string }> {
  const b = await cluster.client('agent').call<{ id: string }>('POST', `/disks/${disk}/bookmarks`, { kind });
  return { id: b.id, hash: await hashFile(cluster.paths.source(disk)) };
}

/** Restores every checkpoint on the MT into a file and returns the ones whose hash differs. */
export async function verifyCheckpoints(cluster: Cluster, dir: string, disk: string, checkpoints: { id: string; hash: string }[]): Promise<string[]> {
  const bad: string[] = [];
  for (const c of checkpoints) {
    const out = join(dir, `restore-${c.id}.img`);
    await cluster.client('mt').call('POST', `/disks/${disk}/restore`, { point: c.id, outPath: out });
    if ((await hashFile(out)) !== c.hash) bad.push(c.id);
    await rm(out, { force: true });
  }
  return bad;
}

export async function sameDisks(cluster: Cluster, disk: string): Promise<{ source: string; replica: string }> {
  const [source, replica] = await Promise.all([hashFile(cluster.paths.source(disk)), hashFile(cluster.paths.replica(disk))]);
  return { source, replica };
}
