import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSeededImage } from '../../src/lab/images.js';
import { Prng } from '../../src/lab/prng.js';
import { FileDisk } from '../../src/replication/disk.js';
import { runResync, type ResyncOptions, type ResyncResult } from '../../src/replication/resync/engine.js';
import { StandaloneSink } from '../../src/replication/resync/standalone-sink.js';
import { RemoteTarget } from '../../src/replication/resync/target-client.js';
import { createResyncTargetServer, type ResyncTargetSession } from '../../src/replication/resync/target-service.js';
import type { Endpoint, TlsMaterial } from '../../src/replication/transport.js';
import { ensureDevPki, loadTlsMaterial } from '../../src/security/pki.js';

/** Shared by the resync tests: seeded disk images, a target server, a standalone run. */

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const BLOCK = 4096;
export const TOKEN = 'resync-test-token';

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-resync-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

let material: Promise<TlsMaterial> | undefined;

/** One dev CA and certificate per test process, kept in memory (its directory is removed). */
export function tlsMaterial(): Promise<TlsMaterial> {
  material ??= withTempDir(async (dir) => loadTlsMaterial(await ensureDevPki(join(dir, 'pki'))));
  return material;
}

/** Writes a disk image of seeded random bytes, with the given [offset, length) ranges zero. */
export async function writeImage(path: string, size: number, seed: number, zeroRanges: [number, number][] = []): Promise<void> {
  await writeSeededImage(path, size, seed);
  if (zeroRanges.length === 0) return;
  const fh = await open(path, 'r+');
  try {
    for (const [offset, length] of zeroRanges) await fh.write(Buffer.alloc(length), 0, length, offset);
  } finally {
    await fh.close();
  }
}

/** `count` distinct block indexes out of `blocks`, ascending (seeded). */
export function pickBlocks(count: number, blocks: number, seed: number): number[] {
  const prng = new Prng(seed);
  const chosen = new Set<number>();
  for (let guard = 0; chosen.size < count && guard < count * 100; guard++) chosen.add(prng.int(blocks));
  return [...chosen].sort((a, b) => a - b);
}

/** Overwrites whole blocks (the last one may be short at the end) with fresh random bytes, or zeroes. */
export async function changeBlocks(path: string, blocks: number[], seed: number, options: { zero?: boolean } = {}): Promise<number> {
  const prng = new Prng(seed);
  const fh = await open(path, 'r+');
  let bytes = 0;
  try {
    const size = (await fh.stat()).size;
    for (const b of blocks) {
      const length = Math.min(BLOCK, size - b * BLOCK);
      const data = options.zero ? Buffer.alloc(length) : prng.fill(Buffer.allocUnsafe(length));
      await fh.write(data, 0, length, b * BLOCK);
      bytes += length;
    }
  } finally {
    await fh.close();
  }
  return bytes;
}

export interface TestTarget {
  endpoint: Endpoint;
  /** Resolves with the next session to end, in the order they end. */
  nextSession(): Promise<ResyncTargetSession>;
  close(): Promise<void>;
}

/** A resync target server in this process, serving the file `path` for any disk id. */
export async function startTarget(path: string, options: { readAhead?: number } = {}): Promise<TestTarget> {
  const ended: ResyncTargetSession[] = [];
  const waiting: ((s: ResyncTargetSession) => void)[] = [];
  const server = createResyncTargetServer({
    material: await tlsMaterial(),
    token: TOKEN,
    openDisk: () => FileDisk.open(path),
    ...options,
    onSession: (s) => {
      const w = waiting.shift();
      if (w) w(s);
      else ended.push(s);
    },
  });
  const endpoint = await server.listen({ host: '127.0.0.1', port: 0 });
  return {
    endpoint,
    nextSession: () => {
      const s = ended.shift();
      return s ? Promise.resolve(s) : new Promise((resolve) => waiting.push(resolve));
    },
    close: () => server.close(),
  };
}

export type RunOptions = Partial<Omit<ResyncOptions, 'source' | 'remote' | 'sink'>>;

/** A standalone resync of the file at `sourcePath` to a target server; the connection's frame bytes too. */
export async function resyncTo(endpoint: Endpoint, sourcePath: string, options: RunOptions = {}): Promise<{ result: ResyncResult; bytes: { sent: number; received: number } }> {
  const remote = await RemoteTarget.connect(endpoint, await tlsMaterial(), TOKEN);
  const source = await FileDisk.open(sourcePath, { readOnly: true });
  try {
    const result = await runResync({ diskId: 'disk-0', source, remote, sink: new StandaloneSink(remote), ...options });
    return { result, bytes: remote.bytes };
  } finally {
    await remote.close();
    await source.close();
  }
}
