import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NbdClient } from '../../src/agent/nbd/client.js';
import { ConfigurationServer } from '../../src/cs/server.js';
import { HttpsJsonClient } from '../../src/runtime/https-client.js';
import { createLogger } from '../../src/runtime/log.js';
import { runWorkload } from '../../src/lab/workload.js';
import { sameDisks, startCluster } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
const DISK = 'disk0';

interface ComponentView {
  kind: string;
  name: string;
  status: string;
  alert: { code: string } | null;
  health: Record<string, unknown> | null;
}

test('agent, PS and MT register with the CS, replicate with the certificates it issued, and report health; a dead PS raises 806', async () => {
  let cs: ConfigurationServer | undefined;
  const { cluster, dir, done } = await startCluster({
    disks: [{ id: DISK, sizeBytes: 16 * MiB }],
    agent: { bookmarkIntervalSec: 0 },
    beforeStart: async (c) => {
      const csDir = join(c.o.dir, 'cs');
      cs = await ConfigurationServer.start({ dataDir: csDir, port: 0, heartbeatIntervalSeconds: 0.5, heartbeatTimeoutSeconds: 5, logger: createLogger('cs', 'silent') });
      c.trustCa(await readFile(join(csDir, 'ca.pem'), 'utf8'));
      const passphraseFile = join(c.o.dir, 'passphrase');
      await writeFile(passphraseFile, await cs.passphrase(), { mode: 0o600 });
      const link = (role: string) => ({ cs: { url: cs!.url, ca: join(csDir, 'ca.pem'), passphraseFile, stateDir: join(c.o.dir, role, 'cs-state') } });
      // Rewrite the three configs with a CS section (and no dev PKI): they must register to run.
      for (const role of ['agent', 'ps', 'mt'] as const) {
        const file = join(c.o.dir, role, `${role}.json`);
        const cfg = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
        delete cfg.tls;
        await writeFile(file, JSON.stringify({ ...cfg, ...link(role) }));
      }
    },
  });
  const adminToken = (await readFile(join(dir, 'cs', 'admin.token'), 'utf8')).trim();
  const operator = new HttpsJsonClient(cs!.url, await readFile(join(dir, 'cs', 'ca.pem'), 'utf8'), adminToken);
  const components = async () => operator.call<ComponentView[]>('GET', '/v1/components');
  try {
    await cluster.sync(DISK);
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    await runWorkload(client, { seed: 4, blockBytes: 64 * 1024, pattern: 'random', concurrency: 4, maxWrites: 64 });
    await client.disconnect();
    await cluster.sync(DISK);
    const { source, replica } = await sameDisks(cluster, DISK);
    assert.equal(replica, source, 'replicated over TLS with CS-issued certificates');

    // Bounded wait for heartbeats from all three sent after the replication above.
    type MtReport = { mt: { volumes: { fsType: string; capacityBytes: number }[]; journals: { diskId: string }[] } };
    const mtJournal = (l: ComponentView[]) => (l.find((c) => c.kind === 'mt')?.health as MtReport | null | undefined)?.mt.journals[0]?.diskId;
    let list: ComponentView[] = [];
    for (let i = 0; i < 100; i++) {
      list = await components();
      if (list.length === 3 && list.every((c) => c.health !== null) && mtJournal(list) === DISK) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(list.map((c) => c.kind).sort(), ['agent', 'mt', 'ps']);
    for (const c of list) assert.equal(c.status, 'healthy', `${c.kind} is healthy`);
    const mt = list.find((c) => c.kind === 'mt')!.health as MtReport;
    assert.ok(mt.mt.volumes[0]!.capacityBytes > 0 && mt.mt.volumes[0]!.fsType.length > 0);
    assert.equal(mt.mt.journals[0]?.diskId, DISK);

    await cluster.kill('ps');
    let alert: string | undefined;
    for (let i = 0; i < 300 && alert === undefined; i++) {
      alert = (await components()).find((c) => c.kind === 'ps')?.alert?.code;
      if (alert === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(alert, '806');

    // Restart without the passphrase: the kept registration is reused, the alert clears.
    await rm(join(dir, 'passphrase'));
    await cluster.start('ps');
    let cleared = false;
    for (let i = 0; i < 100 && !cleared; i++) {
      cleared = (await components()).find((c) => c.kind === 'ps')?.alert === null;
      if (!cleared) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(cleared, true);
  } finally {
    await operator.close();
    await done();
    await cs?.stop();
  }
});
