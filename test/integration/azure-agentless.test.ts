import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ContainerClient, PageBlobClient } from '@azure/storage-blob';
import { AgentlessRunner } from '../../src/agentless/runner.js';
import { readAgentlessState, statePath } from '../../src/agentless/state.js';
import type { RoundReport } from '../../src/agentless/disk-replicator.js';
import { AZURITE_ACCOUNT, blobServiceClient, ensureContainer } from '../../src/fabrics/azure/azure-storage.js';
import { PageBlobDisk } from '../../src/fabrics/azure/page-blob-disk.js';
import { hashDevice } from '../../src/lab/hash.js';
import { Prng } from '../../src/lab/prng.js';
import type { Endpoint } from '../../src/replication/transport.js';
import { createLogger } from '../../src/runtime/log.js';
import { startTestAzurite, type TestAzurite } from '../helpers/azurite.js';
import { runCli } from '../helpers/cli.js';
import { MiB, Stack, sha256File, testPki, until, withDir } from '../helpers/stack.js';

const SIZE = 16 * MiB;

let azurite: TestAzurite;
let container: ContainerClient;

before(async () => {
  azurite = await startTestAzurite();
  container = await ensureContainer(blobServiceClient(azurite.account), 'disks');
});

after(async () => {
  await azurite?.stop();
});

/** sha256 of a page blob (or one of its snapshots), read in 4 MiB pieces. */
async function hashBlob(client: PageBlobClient): Promise<string> {
  const disk = await PageBlobDisk.open(client, { readOnly: true });
  try {
    return await hashDevice(disk);
  } finally {
    await disk.close();
  }
}

/** Bytes of the blob's written pages (what Azurite's "diff" returns, whatever the base). */
async function writtenBytes(client: PageBlobClient): Promise<number> {
  let n = 0;
  for await (const r of client.listPageRanges()) n += r.end - r.start + 1;
  return n;
}

async function snapshotsOf(blob: string): Promise<string[]> {
  const out: string[] = [];
  for await (const item of container.listBlobsFlat({ includeSnapshots: true, prefix: blob })) if (item.name === blob && item.snapshot) out.push(item.snapshot);
  return out;
}

/** Random aligned writes and clears on the live blob. */
async function change(disk: PageBlobDisk, rng: Prng, writes: number, clears: number): Promise<void> {
  for (let i = 0; i < writes; i++) {
    const length = 4096 * (1 + rng.int(64));
    await disk.write(4096 * rng.int((SIZE - length) / 4096), rng.fill(Buffer.alloc(length)));
  }
  for (let i = 0; i < clears; i++) {
    const length = 4096 * (1 + rng.int(256));
    await disk.writeZeroes(4096 * rng.int((SIZE - length) / 4096), length);
  }
  await disk.flush();
}

function startRunner(s: Stack, dir: string, blob: PageBlobClient, diskId: string, o: { processServer?: Endpoint; roundTimeoutMs?: number } = {}): Promise<AgentlessRunner> {
  return AgentlessRunner.start({
    name: 'agentless-test',
    processServer: o.processServer ?? s.ps.endpoint!,
    material: s.material,
    token: s.token,
    stateDir: join(dir, 'agentless'),
    disks: [{ id: diskId, blob, intervalMs: 0 }],
    log: createLogger('agentless', process.env.BOOMERANG_TEST_LOG ?? 'silent'),
    minBackoffMs: 20,
    maxBackoffMs: 200,
    ...(o.roundTimeoutMs === undefined ? {} : { roundTimeoutMs: o.roundTimeoutMs }),
  });
}

/** One round, then waits until the MT applied it; returns the report and the hash of the round's snapshot (now the base). */
async function roundThrough(s: Stack, runner: AgentlessRunner, blob: PageBlobClient, diskId: string): Promise<{ report: RoundReport; hash: string }> {
  const report = await runner.roundNow(diskId);
  assert.ok(await s.ps.drainDisk(diskId, 60_000), 'the PS forwarded every batch of the round to the MT');
  return { report, hash: await hashBlob(blob.withSnapshot(report.snapshot)) };
}

test('a page blob written and cleared over three rounds reaches the MT; every round is a recovery point equal to its snapshot', async () => {
  await withDir('agentless-rounds', async (dir) => {
    const ID = 'cloud-rounds';
    const s = await Stack.start({ dir, disks: [{ id: ID, sizeBytes: SIZE }], startAgent: false });
    const blob = container.getPageBlobClient('vm-rounds-disk0');
    const source = await PageBlobDisk.create(blob, SIZE);
    const runner = await startRunner(s, dir, blob, ID);
    try {
      const rng = new Prng(7);
      const rounds: { report: RoundReport; hash: string }[] = [];

      await change(source, rng, 40, 0);
      rounds.push(await roundThrough(s, runner, blob, ID));
      await change(source, rng, 20, 6);
      // Writes keep landing while round 2 runs: the round must carry its snapshot, not a mix with the live disk.
      const writing = change(source, new Prng(8), 30, 3);
      rounds.push(await roundThrough(s, runner, blob, ID));
      await writing;
      // Round 3 clears the whole disk and writes a little: almost everything travels as zero extents.
      await source.writeZeroes(0, SIZE);
      await change(source, rng, 3, 0);
      rounds.push(await roundThrough(s, runner, blob, ID));

      const [first, second, third] = rounds.map((r) => r.report) as [RoundReport, RoundReport, RoundReport];
      assert.equal(first.full, true, 'the first round of a new lineage covers the whole disk');
      assert.equal(first.firstSeq, 1);
      assert.equal(first.dataBytes + first.zeroBytes, SIZE);
      assert.equal(second.full, false);
      assert.equal(third.full, false);
      assert.equal(second.lineage, first.lineage, 'every round continues the one lineage');
      assert.equal(third.lineage, first.lineage);
      assert.equal(second.firstSeq, first.lastSeq + 1);
      assert.equal(third.firstSeq, second.lastSeq + 1);
      assert.ok(third.zeroBytes > 0, 'the cleared pages travel as zero extents');
      assert.notEqual(rounds[0]!.hash, rounds[1]!.hash);
      assert.notEqual(rounds[1]!.hash, rounds[2]!.hash);

      // The replica after the last round is the last snapshot, and only that snapshot is kept.
      assert.equal(await sha256File(s.replica(ID)), rounds[2]!.hash);
      assert.deepEqual(await snapshotsOf('vm-rounds-disk0'), [third.snapshot]);

      const points = s.mt.diskStatus(ID).points;
      for (const [i, r] of rounds.entries()) {
        const p = points.find((x) => x.bookmarkId === r.report.bookmarkId);
        assert.ok(p, `round ${i + 1} made a recovery point`);
        assert.equal(p.kind, 'crash');
        assert.equal(p.time, Date.parse(r.report.snapshot), 'the point is dated by its snapshot');
        const out = join(dir, `restored-${i + 1}.img`);
        await s.mt.restoreDiskTo(ID, r.report.bookmarkId, out);
        assert.equal(await sha256File(out), r.hash, `round ${i + 1}'s point restores to its snapshot byte for byte`);
      }

      const state = await readAgentlessState(statePath(join(dir, 'agentless'), ID));
      assert.deepEqual(state, { lineage: first.lineage, lastSeq: third.lastSeq, consistent: true, base: third.snapshot });
      const status = runner.status();
      assert.equal(status.disks[0]!.rounds, 3);
      assert.equal(status.disks[0]!.failures, 0);
    } finally {
      await runner.stop({ drainTimeoutMs: 10_000 });
      await source.close();
      await s.stop();
    }
  });
});

test('a runner restarted between rounds resumes from its base: the next round continues the lineage and sends only changes', async () => {
  await withDir('agentless-restart', async (dir) => {
    const ID = 'cloud-restart';
    const s = await Stack.start({ dir, disks: [{ id: ID, sizeBytes: SIZE }], startAgent: false });
    const blob = container.getPageBlobClient('vm-restart-disk0');
    const source = await PageBlobDisk.create(blob, SIZE);
    let runner = await startRunner(s, dir, blob, ID);
    try {
      const rng = new Prng(11);
      await change(source, rng, 12, 0);
      const first = await roundThrough(s, runner, blob, ID);
      assert.deepEqual(await runner.stop({ drainTimeoutMs: 10_000 }), { drained: true });

      await change(source, rng, 4, 2);
      runner = await startRunner(s, dir, blob, ID);
      const second = await roundThrough(s, runner, blob, ID);
      const written = await writtenBytes(blob.withSnapshot(second.report.snapshot));
      assert.equal(second.report.full, false, 'resumed from the persisted base, not a full round');
      assert.equal(second.report.lineage, first.report.lineage, 'the lineage continues');
      assert.equal(second.report.firstSeq, first.report.lastSeq + 1);
      // Azurite answers a diff with every written range: the round sends those, never the whole disk.
      assert.ok(second.report.dataBytes <= written, `data sent ${second.report.dataBytes} ≤ written pages ${written}`);
      assert.ok(second.report.dataBytes + second.report.zeroBytes < SIZE);
      assert.equal(await sha256File(s.replica(ID)), second.hash, 'the replica equals the second snapshot');
      const p = s.mt.diskStatus(ID).points.find((x) => x.bookmarkId === second.report.bookmarkId);
      assert.ok(p && p.lineage === first.report.lineage);
      process.stdout.write(
        `# agentless bytes sent: ${JSON.stringify({ diskBytes: SIZE, fullRound: { data: first.report.dataBytes, zero: first.report.zeroBytes }, resumedRound: { data: second.report.dataBytes, zero: second.report.zeroBytes, writtenPages: written } })}\n`,
      );
    } finally {
      await runner.stop({ drainTimeoutMs: 10_000 });
      await source.close();
      await s.stop();
    }
  });
});

/** A loopback port nothing listens on (a PS that is down). */
async function deadEndpoint(): Promise<Endpoint> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return { host: '127.0.0.1', port };
}

test('a round the PS never acknowledges is abandoned; a run that ended mid-round resumes in a new lineage from the base and converges', async () => {
  await withDir('agentless-abandon', async (dir) => {
    const ID = 'cloud-abandon';
    const s = await Stack.start({ dir, disks: [{ id: ID, sizeBytes: SIZE }], startAgent: false });
    const blob = container.getPageBlobClient('vm-abandon-disk0');
    const source = await PageBlobDisk.create(blob, SIZE);
    let runner = await startRunner(s, dir, blob, ID);
    try {
      const rng = new Prng(13);
      await change(source, rng, 10, 0);
      const first = await roundThrough(s, runner, blob, ID);
      await runner.stop({ drainTimeoutMs: 10_000 });

      // The PS is unreachable: the round is abandoned, its snapshot deleted, the base kept.
      await change(source, rng, 6, 2);
      runner = await startRunner(s, dir, blob, ID, { processServer: await deadEndpoint(), roundTimeoutMs: 1_000 });
      await assert.rejects(runner.roundNow(ID), (err: Error & { code?: string }) => err.code === 'ROUND_STALLED');
      assert.deepEqual(await snapshotsOf('vm-abandon-disk0'), [first.report.snapshot]);
      assert.equal(runner.status().disks[0]!.failures, 1);
      assert.deepEqual(await runner.stop({ drainTimeoutMs: 100 }), { drained: false });
      const open = JSON.parse(await readFile(statePath(join(dir, 'agentless'), ID), 'utf8')) as { roundOpen?: boolean; base?: string };
      assert.equal(open.roundOpen, true, 'the state says batches may have left');
      assert.equal(open.base, first.report.snapshot);

      await change(source, rng, 2, 1);
      runner = await startRunner(s, dir, blob, ID);
      const next = await roundThrough(s, runner, blob, ID);
      assert.notEqual(next.report.lineage, first.report.lineage, 'sequence numbers that may have left are never reused: a new lineage');
      assert.equal(next.report.firstSeq, 1);
      assert.equal(next.report.full, false, 'the new lineage is diffed from the persisted base');
      assert.equal(await sha256File(s.replica(ID)), next.hash, 'the replica equals the snapshot of the resumed round');
      const p = s.mt.diskStatus(ID).points.find((x) => x.bookmarkId === next.report.bookmarkId);
      assert.ok(p, 'the resync round of the new lineage ends in a recovery point');
      assert.equal(s.mt.diskStatus(ID).position?.consistent, true);
    } finally {
      await runner.stop({ drainTimeoutMs: 10_000 });
      await source.close();
      await s.stop();
    }
  });
});

/** The files a `boomerang agentless` process needs to reach this stack and Azurite; returns the config path. */
async function writeCliConfig(dir: string, s: Stack, config: Record<string, unknown>): Promise<string> {
  const file = (name: string, text: string) => writeFile(join(dir, name), text, { mode: 0o600 }).then(() => join(dir, name));
  const cfg = {
    name: 'agentless-cli',
    stateDir: join(dir, 'agentless-cli'),
    processServer: `${s.ps.endpoint!.host}:${s.ps.endpoint!.port}`,
    tls: { ca: await file('ca.pem', s.material.ca), cert: await file('cert.pem', s.material.cert), key: await file('key.pem', s.material.key) },
    tokenFile: await file('token', s.token),
    azure: { accounts: { lab: { url: azurite.account.url, accountName: AZURITE_ACCOUNT.accountName, keyFile: await file('lab.key', AZURITE_ACCOUNT.accountKey), caFile: await file('azurite-ca.pem', azurite.caPem) } } },
    intervalSec: 1,
    ...config,
  };
  return file('agentless.json', JSON.stringify(cfg));
}

test('boomerang agentless runs a round every interval until SIGTERM, then stops with everything acknowledged', async () => {
  await withDir('agentless-cli', async (dir) => {
    const ID = 'cloud-cli';
    const s = await Stack.start({ dir, disks: [{ id: ID, sizeBytes: SIZE }], startAgent: false });
    const blob = container.getPageBlobClient('vm-cli-disk0');
    const source = await PageBlobDisk.create(blob, SIZE);
    await change(source, new Prng(17), 8, 0);
    const config = await writeCliConfig(dir, s, { disks: [{ id: ID, location: 'azblob://lab/disks/vm-cli-disk0' }] });
    const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
    const child = spawn(process.execPath, [cli, 'agentless', '-c', config, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await until('two recovery points from two rounds', () => (s.mt.diskStatus(ID).points.length >= 2 ? true : undefined), 60_000);
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      assert.match(stdout, /"event":"ready"/);
      assert.match(stdout, /agentless round committed/);
      assert.ok(!stdout.includes(AZURITE_ACCOUNT.accountKey) && !stdout.includes(s.token), 'no secret in the log');
      const state = await readAgentlessState(statePath(join(dir, 'agentless-cli'), ID));
      assert.ok(state?.base && !state.roundOpen, 'stopped drained: the next run continues the lineage');
      assert.ok(await s.ps.drainDisk(ID, 60_000));
      assert.equal(await sha256File(s.replica(ID)), await hashBlob(blob.withSnapshot(state.base)), 'the replica is at the last committed snapshot');
    } finally {
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      await exited;
      await source.close();
      await s.stop();
    }
  });
});

test('boomerang agentless refuses a disk that names an unknown storage account, with a typed error and exit code 2', async () => {
  await withDir('agentless-cli-bad', async (dir) => {
    const s = await Stack.start({ dir, disks: [], attach: false, startAgent: false });
    try {
      const config = await writeCliConfig(dir, s, { disks: [{ id: 'd0', location: 'azblob://nowhere/disks/d0' }] });
      const run = await runCli(['agentless', '-c', config], {});
      assert.equal(run.code, 2);
      assert.match(run.stderr, /DISK_ACCOUNT_UNKNOWN/);
    } finally {
      await s.stop();
    }
  });
});

test('a malformed state file is refused with STATE_INVALID and left as it is', async () => {
  await withDir('agentless-state', async (dir) => {
    const stateDir = join(dir, 'agentless');
    const { material, token } = await testPki();
    await mkdir(stateDir, { recursive: true });
    const path = statePath(stateDir, 'd0');
    for (const bad of ['{"lineage":"x","lastSeq":1,"consistent":true}', '{"lineage":"6f1c2a4e-9d0b-4c1e-8a57-0b6a3c2d1e0f","lastSeq":-1,"consistent":true}', 'not json']) {
      await writeFile(path, bad);
      await assert.rejects(
        AgentlessRunner.start({ name: 'x', processServer: await deadEndpoint(), material, token, stateDir, disks: [{ id: 'd0', blob: container.getPageBlobClient('d0'), intervalMs: 0 }], log: createLogger('agentless', 'silent') }),
        (err: Error & { code?: string }) => err.code === 'STATE_INVALID',
      );
      assert.equal(await readFile(path, 'utf8'), bad);
    }
  });
});
