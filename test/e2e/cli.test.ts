import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { NbdClient } from '../../src/agent/nbd/client.js';
import { runWorkload } from '../../src/lab/workload.js';
import { hashFile } from '../../src/lab/hash.js';
import { checkpoint, execFileP, startCluster } from '../helpers/cluster.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const MiB = 1024 * 1024;
const DISK = 'disk0';

function boomerang(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return execFileP(process.execPath, [CLI, ...args]).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

test('rp list and rp restore through a running MT, then offline from the retention directory', async () => {
  const { cluster, dir, done } = await startCluster({ disks: [{ id: DISK, sizeBytes: 16 * MiB }], agent: { bookmarkIntervalSec: 0 } });
  try {
    await cluster.sync(DISK);
    const client = await NbdClient.connect({ socketPath: cluster.paths.nbdSocket, exportName: DISK });
    await runWorkload(client, { seed: 21, blockBytes: 64 * 1024, pattern: 'random', concurrency: 4, maxWrites: 60 });
    const c1 = await checkpoint(cluster, DISK);
    await runWorkload(client, { seed: 22, blockBytes: 64 * 1024, pattern: 'random', concurrency: 4, maxWrites: 60 });
    await cluster.sync(DISK);
    await client.disconnect();
    const mt = cluster.controlAddress('mt');
    const auth = ['--ca', cluster.paths.ca, '--token-file', cluster.paths.token];

    const list = await boomerang(['rp', 'list', '--disk', DISK, '--mt', mt, ...auth, '--output', 'json']);
    assert.equal(list.code, 0, list.stderr);
    const points = JSON.parse(list.stdout) as { bookmarkId: string; kind: string }[];
    assert.ok(points.some((p) => p.bookmarkId === c1.id && p.kind === 'app'));
    const table = await boomerang(['rp', 'list', '--disk', DISK, '--mt', mt, ...auth]);
    assert.match(table.stdout, new RegExp(`${c1.id}\\s+app`));

    const out = join(dir, 'restored-online.img');
    const restored = await boomerang(['rp', 'restore', '--disk', DISK, '--point', c1.id, '--out', out, '--mt', mt, ...auth]);
    assert.equal(restored.code, 0, restored.stderr);
    assert.equal(await hashFile(out), c1.hash);

    const wrongToken = join(dir, 'wrong-token');
    await writeFile(wrongToken, 'not-the-token', { mode: 0o600 });
    const refused = await boomerang(['rp', 'list', '--disk', DISK, '--mt', mt, '--ca', cluster.paths.ca, '--token-file', wrongToken]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /AUTH_FAILED/);

    // Offline: the MT is stopped, the retention directory is read directly.
    await cluster.stop('agent');
    await cluster.stop('ps');
    await cluster.stop('mt');
    const retention = join(cluster.paths.retention, DISK);
    const offline = await boomerang(['rp', 'restore', '--disk', DISK, '--point', c1.id, '--out', join(dir, 'restored-offline.img'), '--retention', retention]);
    assert.equal(offline.code, 0, offline.stderr);
    assert.equal(await hashFile(join(dir, 'restored-offline.img')), c1.hash);
    const unknown = await boomerang(['rp', 'restore', '--disk', DISK, '--point', 'nope', '--out', join(dir, 'x.img'), '--retention', retention]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /UNKNOWN_POINT/);
  } finally {
    await done();
  }
});

test('a config file that does not validate exits 2 and names every bad field; --help answers', async () => {
  const { dir, done } = await startCluster({ disks: [{ id: DISK, sizeBytes: MiB }] });
  try {
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'name: x\nlisten: 127.0.0.1:99999999\nspool: {}\n');
    const r = await boomerang(['ps', '--config', bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /CONFIG_INVALID/);
    for (const field of ['/listen', '/spool/dir', '/masterTarget', '/tokenFile']) assert.ok(r.stderr.includes(field), `${field} in ${r.stderr}`);
    const help = await boomerang(['agent', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /nbdSocket/);
    const usage = await boomerang(['rp', 'list', '--disk', DISK]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--mt|--retention/);
  } finally {
    await done();
  }
});
