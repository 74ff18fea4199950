/**
 * bench:resync — the delta resync engine against rsync on loopback, printing one JSON document.
 *
 * A seeded disk image (BENCH_DISK_MIB, default 2 GiB; BENCH_ZERO_PERCENT of its 1 MiB regions
 * zero, default none) is the pristine target. For 0%, 1% and 10% of its 4 KiB blocks changed at
 * random (seeded), the changed copy is the source and, for each run, the target is recreated from
 * the pristine copy, `sync`ed, and the page cache dropped when this process may (root):
 *   - boomerang: the engine in this process (source side), the target service in a child process
 *     (its own core, as on another machine), one TLS connection, the standalone sink; wall time
 *     from connecting to the final fsync on the target; bytes on the wire counted at the TCP
 *     socket by the kernel (`ss`), TLS included;
 *   - rsync: `rsync --inplace --no-whole-file --stats` to an rsync daemon on 127.0.0.1 started
 *     here (stopped by pid), wall time of the client, bytes from its --stats.
 * The 1% pair is run again with both files in the page cache. Alternate location: the image to an
 * empty sparse target, against `cp --sparse=always` of the same file (a local copy, no network).
 * Every target is verified byte for byte (sha256 of the whole file).
 *
 * BENCH_REGION_KIB, BENCH_SUB_REGION_KIB (comma-separated, largest first; empty for none) and
 * BENCH_HASH (gmac-aes128 | sha256) override the engine's defaults;
 * BENCH_DIR chooses where the images go (default: the OS temp dir; needs about 4 × the disk).
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { hashFile } from '../src/lab/hash.js';
import { changeRandomBlocks, coldCache, writeSeededImage } from '../src/lab/images.js';
import { FileDisk } from '../src/replication/disk.js';
import { runResync, RESYNC_DEFAULTS, type ResyncResult } from '../src/replication/resync/engine.js';
import { isHashSuite, type HashSuite } from '../src/replication/resync/hashing.js';
import { resolveLayout, type ResyncLayout } from '../src/replication/resync/layout.js';
import { StandaloneSink } from '../src/replication/resync/standalone-sink.js';
import { RemoteTarget } from '../src/replication/resync/target-client.js';
import { createResyncTargetServer } from '../src/replication/resync/target-service.js';
import type { TlsMaterial } from '../src/replication/transport.js';
import { ensureDevPki, loadTlsMaterial } from '../src/security/pki.js';
import { generateToken } from '../src/security/token.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const BLOCK = 4096;
const SEED = 0x5e5c;

interface TargetConfig {
  path: string;
  material: TlsMaterial;
  token: string;
}

/** Child mode: serve one resync session on 127.0.0.1, print its summary, exit. */
async function serveTarget(configPath: string): Promise<void> {
  const c = JSON.parse(await readFile(configPath, 'utf8')) as TargetConfig;
  const server = createResyncTargetServer({
    material: c.material,
    token: c.token,
    openDisk: () => FileDisk.open(c.path),
    onSession: (s) => {
      process.stdout.write(`session ${JSON.stringify({ ...s, error: s.error === undefined ? undefined : String(s.error) })}\n`);
      void server.close().then(() => process.exit(0));
    },
  });
  const endpoint = await server.listen({ host: '127.0.0.1', port: 0 });
  process.stdout.write(`listening ${endpoint.port}\n`);
}

const round = (n: number, digits = 3) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Reads a file once so that it is in the page cache. */
async function warm(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 * MiB);
    for (let at = 0; ; at += buf.length) if ((await fh.read(buf, 0, buf.length, at)).bytesRead === 0) break;
  } finally {
    await fh.close();
  }
}

/** Kernel TCP counters of our connection to `port` (payload bytes, so TLS records included). */
async function socketBytes(port: number): Promise<{ sent: number; received: number } | undefined> {
  try {
    const { stdout } = await run('ss', ['-tinH', 'dst', `127.0.0.1:${port}`]);
    const sent = /bytes_sent:(\d+)/.exec(stdout);
    const received = /bytes_received:(\d+)/.exec(stdout);
    if (!sent) return undefined;
    return { sent: Number(sent[1]), received: Number(received?.[1] ?? 0) };
  } catch {
    return undefined;
  }
}

interface EngineSettings {
  material: TlsMaterial;
  token: string;
  dir: string;
  hash: HashSuite;
  layout: ResyncLayout;
}

async function boomerang(source: string, target: string, s: EngineSettings, cache: 'cold' | 'warm') {
  const configPath = join(s.dir, 'target.json');
  await writeFile(configPath, JSON.stringify({ path: target, material: s.material, token: s.token } satisfies TargetConfig));
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve-target', configPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  try {
    const first = await lines.next();
    const port = Number(/^listening (\d+)$/.exec(first.done ? '' : first.value)?.[1]);
    if (!port) throw new Error('the target process did not start');
    const dropped = cache === 'cold' ? await coldCache() : (await Promise.all([warm(source), warm(target)]), false);
    const t0 = performance.now();
    const remote = await RemoteTarget.connect({ host: '127.0.0.1', port }, s.material, s.token);
    const disk = await FileDisk.open(source, { readOnly: true });
    let result: ResyncResult;
    try {
      result = await runResync({ diskId: 'disk-0', source: disk, remote, sink: new StandaloneSink(remote), hash: s.hash, layout: s.layout });
    } finally {
      await disk.close();
    }
    const wallSeconds = (performance.now() - t0) / 1000;
    const wire = await socketBytes(port);
    const frames = remote.bytes;
    await remote.close();
    const session = await lines.next();
    await exited;
    const verified = (await hashFile(source)) === (await hashFile(target));
    return {
      wallSeconds: round(wallSeconds),
      cachesDropped: dropped,
      wireBytes: wire ? { ...wire, total: wire.sent + wire.received } : null,
      frameBytes: { ...frames, total: frames.sent + frames.received },
      payloadBytes: result.bytesSent,
      zeroBytes: result.zeroBytes,
      blocksDifferent: result.blocksDifferent,
      regionsDifferent: result.regionsDifferent,
      readMBps: round(result.bytesCompared / MiB / wallSeconds, 0),
      targetSession: session.done ? null : (JSON.parse(session.value.replace(/^session /, '')) as unknown),
      verified,
    };
  } finally {
    child.kill('SIGKILL');
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startRsyncDaemon(dir: string) {
  const moduleDir = join(dir, 'rsync-module');
  await mkdir(moduleDir);
  const conf = join(dir, 'rsyncd.conf');
  await writeFile(conf, ['use chroot = no', '[bench]', `  path = ${moduleDir}`, '  read only = no', `  uid = ${process.getuid?.() ?? 0}`, `  gid = ${process.getgid?.() ?? 0}`, ''].join('\n'));
  const port = await freePort();
  const daemon = spawn('rsync', ['--daemon', '--no-detach', `--config=${conf}`, '--port', String(port), '--address', '127.0.0.1'], { stdio: 'ignore' });
  const exited = once(daemon, 'exit');
  // Wait (bounded) until it accepts connections.
  for (let attempt = 0; ; attempt++) {
    if (daemon.exitCode !== null) throw new Error(`rsync daemon exited with ${daemon.exitCode}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (attempt >= 100) throw new Error('the rsync daemon did not start listening');
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    moduleTarget: join(moduleDir, 'disk.img'),
    url: `rsync://127.0.0.1:${port}/bench/disk.img`,
    async stop() {
      daemon.kill('SIGTERM');
      await exited;
    },
  };
}

function statNumber(stats: string, label: string): number {
  const m = new RegExp(`${label}: ([\\d,]+)`).exec(stats);
  return m ? Number(m[1]!.replaceAll(',', '')) : NaN;
}

async function rsync(source: string, daemon: { moduleTarget: string; url: string }, cache: 'cold' | 'warm') {
  const dropped = cache === 'cold' ? await coldCache() : (await Promise.all([warm(source), warm(daemon.moduleTarget)]), false);
  const t0 = performance.now();
  const { stdout } = await run('rsync', ['--inplace', '--no-whole-file', '--stats', source, daemon.url], { maxBuffer: 1024 * 1024 });
  const wallSeconds = (performance.now() - t0) / 1000;
  const sent = statNumber(stdout, 'Total bytes sent');
  const received = statNumber(stdout, 'Total bytes received');
  return {
    wallSeconds: round(wallSeconds),
    cachesDropped: dropped,
    bytesSent: sent,
    bytesReceived: received,
    totalBytes: sent + received,
    literalBytes: statNumber(stdout, 'Literal data'),
    verified: (await hashFile(source)) === (await hashFile(daemon.moduleTarget)),
  };
}

async function main(): Promise<void> {
  const diskBytes = Number(process.env.BENCH_DISK_MIB ?? 2048) * MiB;
  const zeroPercent = Number(process.env.BENCH_ZERO_PERCENT ?? 0);
  const hash = process.env.BENCH_HASH ?? RESYNC_DEFAULTS.hash;
  if (!isHashSuite(hash)) throw new Error(`BENCH_HASH must be gmac-aes128 or sha256, not ${hash}`);
  const sub = process.env.BENCH_SUB_REGION_KIB;
  const layout: ResyncLayout = resolveLayout({
    ...(process.env.BENCH_REGION_KIB ? { regionBytes: Number(process.env.BENCH_REGION_KIB) * 1024 } : {}),
    ...(sub !== undefined ? { subRegionBytes: sub === '' ? [] : sub.split(',').map((k) => Number(k) * 1024) } : {}),
  });
  const loadBefore = loadavg();
  const dir = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'boomerang-bench-resync-'));
  let daemon: Awaited<ReturnType<typeof startRsyncDaemon>> | undefined;
  try {
    const material = await loadTlsMaterial(await ensureDevPki(join(dir, 'pki')));
    const settings: EngineSettings = { material, token: generateToken(), dir, hash, layout };
    const pristine = join(dir, 'pristine.img');
    const source = join(dir, 'source.img');
    const target = join(dir, 'target.img');
    await writeSeededImage(pristine, diskBytes, SEED, zeroPercent);
    daemon = await startRsyncDaemon(dir);
    const rsyncVersion = (await run('rsync', ['--version'])).stdout.split('\n')[0];

    const runs = [];
    for (const [percent, cache] of [[0, 'cold'], [1, 'cold'], [10, 'cold'], [1, 'warm']] as const) {
      await copyFile(pristine, source);
      const changed = await changeRandomBlocks(source, diskBytes, percent, SEED + percent, BLOCK);
      await copyFile(pristine, target);
      const load1 = round(loadavg()[0]!, 2); // other jobs on the same cores slow both tools
      const ours = await boomerang(source, target, settings, cache);
      await copyFile(pristine, daemon.moduleTarget);
      const theirs = await rsync(source, daemon, cache);
      const wire = ours.wireBytes?.total ?? ours.frameBytes.total;
      runs.push({
        changedPercent: percent,
        cache,
        loadAverage1mBefore: load1,
        changedBlocks: changed.blocks,
        bytesChanged: changed.bytes,
        boomerang: ours,
        rsync: theirs,
        wallVsRsync: round(ours.wallSeconds / theirs.wallSeconds),
        boomerangWirePerChangedByte: changed.bytes > 0 ? round(wire / changed.bytes) : null,
        rsyncWirePerChangedByte: changed.bytes > 0 ? round(theirs.totalBytes / changed.bytes) : null,
      });
      await rm(daemon.moduleTarget, { force: true });
    }

    // Alternate location: the image into an empty sparse disk, against a local sparse copy.
    await rm(target, { force: true });
    await writeFile(target, '');
    await truncate(target, diskBytes);
    const ours = await boomerang(pristine, target, settings, 'cold');
    const copy = join(dir, 'copy.img');
    const dropped = await coldCache();
    const t0 = performance.now();
    await run('cp', ['--sparse=always', pristine, copy]);
    const cpSeconds = (performance.now() - t0) / 1000;
    const fh = await open(copy, 'r');
    await fh.datasync();
    await fh.close();
    const cpAndSyncSeconds = (performance.now() - t0) / 1000;
    const alternateLocation = {
      boomerang: ours,
      cpSparse: { command: 'cp --sparse=always (local copy, no network)', wallSeconds: round(cpSeconds), withFdatasyncSeconds: round(cpAndSyncSeconds), cachesDropped: dropped, verified: (await hashFile(copy)) === (await hashFile(pristine)) },
      wallVsCp: round(ours.wallSeconds / cpAndSyncSeconds),
    };

    const onePercent = runs.find((r) => r.changedPercent === 1 && r.cache === 'cold')!;
    const onePercentWarm = runs.find((r) => r.changedPercent === 1 && r.cache === 'warm')!;
    const result = {
      benchmark: 'resync',
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? '', node: process.version, loadAverageBefore: loadBefore.map((n) => round(n, 2)), loadAverageAfter: loadavg().map((n) => round(n, 2)) },
      disk: { bytes: diskBytes, blockBytes: BLOCK, zeroPercentOfMiBRegions: zeroPercent, seed: SEED },
      engine: { hash, ...layout, windowBatches: RESYNC_DEFAULTS.windowBatches, readAhead: RESYNC_DEFAULTS.readAhead, transport: 'TLS 1.3 (AES-128-GCM), one connection', targetSide: 'separate process', fsyncAtEnd: true },
      rsync: { version: rsyncVersion, command: 'rsync --inplace --no-whole-file --stats <source> rsync://127.0.0.1:<port>/bench/disk.img (daemon, no fsync)' },
      pageCache: 'before each cold run: target recreated from the pristine copy, sync, echo 3 > /proc/sys/vm/drop_caches (cachesDropped says whether it worked); warm runs read both files first',
      runs,
      alternateLocation,
      targets: {
        wallAtMostOneFifthOfRsync: { cold: onePercent.wallVsRsync <= 0.2, warm: onePercentWarm.wallVsRsync <= 0.2 },
        wireAtMost1_2xChanged: (onePercent.boomerangWirePerChangedByte ?? Infinity) <= 1.2,
        allVerified: [...runs.flatMap((r) => [r.boomerang.verified, r.rsync.verified]), ours.verified, alternateLocation.cpSparse.verified].every(Boolean),
      },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await daemon?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--serve-target') await serveTarget(process.argv[3] ?? '');
else await main();
