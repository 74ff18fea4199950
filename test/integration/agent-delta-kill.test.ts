import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readDiskState } from '../../src/agent/state.js';
import { startComponent, type ComponentProcess } from '../../src/lab/process.js';
import type { Endpoint } from '../../src/replication/transport.js';
import { HttpsJsonClient, httpsUrl } from '../../src/runtime/https-client.js';
import { writeTokenFile } from '../../src/security/token.js';
import { MiB, Stack, sha256File, until, withDir } from '../helpers/stack.js';
import { BLOCK, changeBlocks, KiB, pickBlocks, writeImage } from './resync-fixtures.js';
import { copyFile, mkdir } from 'node:fs/promises';

/**
 * kill -9 of the agent (a `boomerang agent` process) in the middle of a delta resync, then a
 * restart: the resync resumes from the cursor it persisted (everything below it is applied at
 * the MT), sends no more than the differences above it, and the replica ends byte-identical. The
 * batches the killed run left in the PS spool belong to a lineage the restart fences off: the MT
 * drops them.
 */

const DISK = 'disk0';
const SIZE = 96 * MiB;
const CHECKPOINT = 2 * MiB;

interface DiskView {
  mode: string;
  lineage: string;
  deltaResync?: { cursor: number };
  resync: { running: boolean; mode?: string; delta?: { bytesCopied: number; compareBytes: { sent: number } } };
}
interface StatusView {
  sender: { bytesSent: number };
  disks: Record<string, DiskView>;
}

test('kill -9 of the agent mid delta resync: the restart resumes from the persisted cursor', async (t) => {
  await withDir('delta-kill', async (dir) => {
    await mkdir(join(dir, 'site-a'), { recursive: true });
    await mkdir(join(dir, 'site-b'), { recursive: true });
    const source = join(dir, 'site-a', `${DISK}.img`);
    await writeImage(source, SIZE, 91);
    await copyFile(source, join(dir, 'site-b', `${DISK}.img`));
    const changed = pickBlocks(Math.round((SIZE / BLOCK) * 0.02), SIZE / BLOCK, 92);
    await changeBlocks(join(dir, 'site-b', `${DISK}.img`), changed, 93);

    const s = await Stack.start({ dir, disks: [{ id: DISK, sizeBytes: SIZE, protect: false }], startAgent: false });
    const pem = { ca: join(dir, 'ca.pem'), cert: join(dir, 'agent.pem'), key: join(dir, 'agent.key') };
    await writeFile(pem.ca, s.material.ca);
    await writeFile(pem.cert, s.material.cert);
    await writeFile(pem.key, s.material.key, { mode: 0o600 });
    await writeTokenFile(join(dir, 'token'), s.token);
    const stateDir = join(dir, 'agent', 'state');
    const configPath = join(dir, 'agent', 'agent.json');
    await writeFile(
      configPath,
      JSON.stringify({
        name: 'agent-kill',
        stateDir,
        nbdSocket: s.nbdSocket,
        processServer: `127.0.0.1:${s.ps.endpoint!.port}`,
        control: '127.0.0.1:0',
        tls: pem,
        tokenFile: join(dir, 'token'),
        disks: [{ id: DISK, path: source, size: SIZE, protect: false }],
        regionBytes: '256KiB',
        bookmarkIntervalSec: 0,
        resync: { checkpointBytes: CHECKPOINT, windowBatches: 4 },
      }),
    );
    const statePath = join(stateDir, `${DISK}.state`);
    let agent: ComponentProcess<{ control: Endpoint }> | undefined;
    let client: HttpsJsonClient | undefined;
    const startAgent = async () => {
      agent = await startComponent<{ event?: string; control: Endpoint }>(['agent', '--config', configPath, '--log-level', 'info'], join(dir, 'agent.log'), 'agent');
      await client?.close();
      client = new HttpsJsonClient(httpsUrl(agent.ready.control), s.material.ca, s.token);
      return client;
    };
    try {
      const first = await startAgent();
      await first.call('POST', `/disks/${DISK}/protect?newLineage=true`, { resyncTarget: s.mt.resyncEndpoint });

      // Two checkpoints in, the MT stops applying: the run gets at most one more checkpoint
      // further, and what it sends after that waits in the PS spool. Then kill -9.
      const early = await until('a persisted cursor', async () => {
        const st = await readDiskState(statePath);
        return st?.resync && st.resync.cursor >= 2 * CHECKPOINT ? st.resync : undefined;
      });
      await s.mt.freezeDisk(DISK);
      await until('batches of the resync waiting in the spool', () => (s.ps.spool.pending(DISK).length > 0 ? true : undefined));
      agent!.proc.kill('SIGKILL');
      await agent!.exited;
      const persisted = (await readDiskState(statePath))!.resync!;
      assert.equal(persisted.lineage, early.lineage);
      assert.ok(persisted.cursor >= early.cursor && persisted.cursor < SIZE, `the kill landed mid-resync (cursor ${persisted.cursor} of ${SIZE})`);
      const fencedBefore = s.mt.disk(DISK).fencedBatches;

      // The restart resumes in a new lineage; its session's fence drops what the killed run left.
      const second = await startAgent();
      await until('the resumed session', () => (s.mt.status().resync.open.some((o) => o.fence !== undefined && o.fence.lineage !== persisted.lineage) ? true : undefined));
      await s.mt.attachDisk({ id: DISK, target: s.replica(DISK), sizeBytes: SIZE });
      const done = await until('the end of the resumed resync', async () => {
        const st = await second.call<StatusView>('GET', '/status');
        const d = st.disks[DISK]!;
        return d.mode === 'replicating' && d.deltaResync === undefined && !d.resync.running ? st : undefined;
      });
      const { drained } = await second.call<{ drained: boolean }>('POST', '/drain?timeoutMs=60000');
      assert.equal(drained, true);
      assert.equal(await s.ps.drainDisk(DISK, 60_000), true);

      assert.equal(await sha256File(s.replica(DISK)), await sha256File(source), 'the replica equals the source');
      const d = done.disks[DISK]!;
      assert.equal(d.resync.mode, 'delta');
      assert.equal(d.resync.delta?.bytesCopied, 0, 'nothing below the cursor had to be copied');
      const remaining = changed.filter((b) => b * BLOCK >= persisted.cursor).length * BLOCK;
      t.diagnostic(`killed at cursor ${persisted.cursor} of ${SIZE}; resumed run sent ${done.sender.bytesSent} bytes to the PS and ${d.resync.delta?.compareBytes.sent} compare bytes for ${remaining} differing above the cursor; MT dropped ${s.mt.disk(DISK).fencedBatches - fencedBefore} batches`);
      assert.ok(done.sender.bytesSent <= 1.2 * remaining + 64 * KiB, `the resumed run sent ${done.sender.bytesSent} bytes for ${remaining} differing above the cursor`);
      assert.ok(s.mt.disk(DISK).fencedBatches > fencedBefore, 'the killed run’s batches were dropped');
      const pos = s.mt.diskStatus(DISK).position!;
      assert.equal(pos.lineage, d.lineage);
      assert.equal(pos.consistent, true);
      assert.equal((await readDiskState(statePath))?.resync, undefined);
    } finally {
      agent?.proc.kill('SIGKILL');
      await agent?.exited;
      await client?.close();
      await s.stop();
    }
  });
});
