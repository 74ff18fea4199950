/**
 * bench:azure — the page-blob disk backend (src/fabrics/azure/page-blob-disk.ts) against Azurite,
 * printing one JSON document. These are Azurite's figures (an emulator writing to local files,
 * sharing this machine's cores with the client), not Azure's: Azure's limits are per blob and per
 * account (throughput and IOPS caps, network latency) and differ by orders of magnitude.
 *
 * For 1, 4 and 16 requests in flight (the disk's maxInFlight and as many outstanding calls):
 *   - sequential 4 MiB writes over a fresh blob of BENCH_MIB (default 128) MiB, then sequential
 *     4 MiB reads of it: MB/s (10^6 bytes per second); the bytes read are checked (sha256)
 *     against those written;
 *   - random 4 KiB writes at 4 KiB-aligned offsets for BENCH_SECONDS (default 5) s: IOPS;
 *   - baseline: the same sequential writes sent with the SDK's PageBlobClient.uploadPages alone
 *     (no lease, limiter or retry layer), to show what the backend itself costs.
 * Azurite runs over HTTPS with a certificate from our PKI, as in the tests.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AZURITE_ACCOUNT, blobServiceClient, ensureContainer } from '../src/fabrics/azure/azure-storage.js';
import { PageBlobDisk } from '../src/fabrics/azure/page-blob-disk.js';
import { azuriteVersion, startAzurite } from '../src/lab/azurite.js';
import { Prng } from '../src/lab/prng.js';
import { createCa, issueCertificate } from '../src/security/pki.js';

const MiB = 1024 * 1024;
const SEQ_BLOCK = 4 * MiB;
const RANDOM_BLOCK = 4096;
const IN_FLIGHT = [1, 4, 16];
const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Runs `job(i)` for i in [0, count) with `concurrency` at a time, stopping early once `until()` says so. */
async function pool(count: number, concurrency: number, job: (i: number) => Promise<void>, until: () => boolean = () => false): Promise<number> {
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < count && !until()) {
      const i = next++;
      await job(i);
      done++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return done;
}

async function main(): Promise<void> {
  const sizeMiB = Number(process.env['BENCH_MIB'] ?? 128);
  const seconds = Number(process.env['BENCH_SECONDS'] ?? 5);
  const size = sizeMiB * MiB;
  if (!Number.isSafeInteger(sizeMiB) || sizeMiB < 4 || sizeMiB % 4 !== 0) throw new Error('BENCH_MIB must be a multiple of 4, at least 4');
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-bench-azure-'));
  const ca = await createCa({ commonName: 'Boomerang bench CA' });
  const leaf = await issueCertificate(ca, { commonName: '127.0.0.1', ipAddresses: ['127.0.0.1'], usage: 'server' });
  await writeFile(join(dir, 'cert.pem'), leaf.certPem, { mode: 0o600 });
  await writeFile(join(dir, 'key.pem'), leaf.keyPem, { mode: 0o600 });
  const azurite = await startAzurite({ location: join(dir, 'data'), certPath: join(dir, 'cert.pem'), keyPath: join(dir, 'key.pem') });
  const loadBefore = loadavg();
  try {
    const container = await ensureContainer(
      blobServiceClient({ url: `${azurite.origin}/${AZURITE_ACCOUNT.accountName}`, ...AZURITE_ACCOUNT, caPem: ca.certPem }),
      'bench',
    );
    const data = new Prng(0xa2).fill(Buffer.alloc(size));
    const expected = createHash('sha256').update(data).digest('hex');
    const results = [];
    for (const inFlight of IN_FLIGHT) {
      const disk = await PageBlobDisk.create(container.getPageBlobClient(`seq-${inFlight}`), size, { maxInFlight: inFlight });
      const blocks = size / SEQ_BLOCK;
      let t = performance.now();
      await pool(blocks, inFlight, (i) => disk.write(i * SEQ_BLOCK, data.subarray(i * SEQ_BLOCK, (i + 1) * SEQ_BLOCK)));
      await disk.flush();
      const writeSeconds = (performance.now() - t) / 1000;
      const back = Buffer.alloc(size);
      t = performance.now();
      await pool(blocks, inFlight, (i) => disk.readInto(back.subarray(i * SEQ_BLOCK, (i + 1) * SEQ_BLOCK), i * SEQ_BLOCK));
      const readSeconds = (performance.now() - t) / 1000;
      if (createHash('sha256').update(back).digest('hex') !== expected) throw new Error(`read back differs from what was written (${inFlight} in flight)`);
      await disk.close();

      const raw = container.getPageBlobClient(`raw-${inFlight}`);
      await raw.create(size);
      t = performance.now();
      await pool(blocks, inFlight, async (i) => {
        await raw.uploadPages(data.subarray(i * SEQ_BLOCK, (i + 1) * SEQ_BLOCK), i * SEQ_BLOCK, SEQ_BLOCK);
      });
      const rawSeconds = (performance.now() - t) / 1000;

      const random = await PageBlobDisk.create(container.getPageBlobClient(`random-${inFlight}`), size, { maxInFlight: inFlight });
      const rng = new Prng(inFlight);
      const block = new Prng(7).fill(Buffer.alloc(RANDOM_BLOCK));
      const deadline = performance.now() + seconds * 1000;
      t = performance.now();
      const writes = await pool(1_000_000, inFlight, () => random.write(RANDOM_BLOCK * rng.int(size / RANDOM_BLOCK), block), () => performance.now() > deadline);
      await random.flush();
      const randomSeconds = (performance.now() - t) / 1000;
      await random.close();
      results.push({
        inFlight,
        sequentialWriteMBps: round(size / 1e6 / writeSeconds),
        sequentialReadMBps: round(size / 1e6 / readSeconds),
        sdkBaselineSequentialWriteMBps: round(size / 1e6 / rawSeconds),
        random4KiBWriteIops: round(writes / randomSeconds, 0),
        randomWrites: writes,
      });
    }
    process.stdout.write(
      `${JSON.stringify(
        {
          bench: 'azure',
          note: "Azurite's figures (the Azure Storage emulator on this machine, over HTTPS on loopback), not Azure's",
          azurite: azuriteVersion(),
          blobMiB: sizeMiB,
          sequentialBlockBytes: SEQ_BLOCK,
          randomBlockBytes: RANDOM_BLOCK,
          randomSeconds: seconds,
          cpus: cpus().length,
          loadAverageBefore: loadBefore.map((n) => round(n, 2)),
          loadAverageAfter: loadavg().map((n) => round(n, 2)),
          results,
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await azurite.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
