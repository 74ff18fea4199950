import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { defineJobKind } from '../../src/cs/jobs/types.js';
import { ENABLE_JOB_KIND, ItemJobParams, transitionItem } from '../../src/cs/inventory/items.js';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { withCs, type CsHarness } from './cs-fixtures.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

// Enabling replication is a lifecycle job the CS does not have yet; this one only marks the item
// Protected so that the pre-flight checks have an item to look at.
const enableKind = defineJobKind({
  name: ENABLE_JOB_KIND,
  params: ItemJobParams,
  tasks: [{ name: 'mark-protected', resumable: true, run: (ctx) => ctx.db.transaction().execute(async (trx) => void (await transitionItem(trx, ctx.clock, ctx.params.itemId, 'initialReplicationDone'))) }],
});

interface Report {
  ok: boolean;
  lang: string;
  results: { id: string; code?: number; passed: boolean; severity: string; message: string; remedy: string }[];
}

async function protectedItem(h: CsHarness) {
  const fabric = (await h.post('/v1/fabrics', { kind: 'physical', name: 'site-a' })).json;
  const machine = (await h.post('/v1/machines', { fabricId: fabric.id, name: 'web01', power: { manual: true } })).json;
  const recoveryFabric = (await h.post('/v1/fabrics', { kind: 'physical', name: 'site-b' })).json;
  const recovery = (await h.post('/v1/machines', { fabricId: recoveryFabric.id, name: 'web01', power: { manual: true } })).json;
  const policy = (await h.post('/v1/policies', { name: 'gold' })).json;
  const agent = await h.register('agent', 'web01');
  const ps = await h.register('ps', 'ps-1');
  const mt = await h.register('mt', 'mt-1');
  const enabled = await h.post('/v1/items', {
    machineId: machine.id,
    policyId: policy.forward.id,
    agentId: agent.componentId,
    psId: ps.componentId,
    mtId: mt.componentId,
    disks: [{ diskId: 'web01-disk0', sizeBytes: 1 << 30, sourcePath: '/dev/vdb', targetPath: '/srv/replica/web01-disk0.img' }],
    // The way back goes through the same PS and MT in this test: their health is what it trips.
    recoveryMachineId: recovery.id,
    failbackAgentName: 'web01-azure',
    failbackPsId: ps.componentId,
    failbackMtId: mt.componentId,
  });
  assert.equal(enabled.status, 202, enabled.text);
  await h.waitForJob(enabled.json.job.id);
  return { itemId: enabled.json.item.id as string, agent, ps, mt };
}

const failed = (r: Report) => r.results.filter((x) => !x.passed && x.severity === 'error');

test('pre-flight over the API: facts from the database and heartbeats, every failure at once, English and Japanese', async () => {
  await withCs({ jobKinds: [enableKind], heartbeatIntervalSeconds: 30 }, async (h) => {
    const { itemId, agent, ps, mt } = await protectedItem(h);
    const ok = (token: string, body: unknown) => h.post('/v1/heartbeat', body, token).then((r) => assert.equal(r.status, 200, r.text));
    await ok(agent.token, { agent: { disks: [] } });
    await ok(ps.token, { ps: { spoolUsedBytes: 100, spoolCapacityBytes: 100, spoolState: 'full', throughputBytesPerSecond: 0, pendingBatches: 5, quarantinedFiles: 0 } });
    await ok(mt.token, {
      mt: {
        platform: 'linux',
        volumes: [{ path: '/mnt/retention', fsType: 'vfat', locked: false, inUseAsTarget: false, cacheOrInstall: false, capacityBytes: 4 * 2 ** 30, freeBytes: 2 * 2 ** 30 }],
        journals: [],
      },
    });

    const en = (await h.get(`/v1/items/${itemId}/preflight/reprotect`)).json as Report;
    assert.equal(en.ok, false);
    // Reprotect replicates from the recovery machine: its power state is unknown to the CS until
    // its fabric reports it (78093), and its agent has not registered yet (95226).
    assert.deepEqual(failed(en).map((r) => r.id).sort(), ['agent-not-registered', 'item-not-failed-over', 'ps-spool-full', 'retention-volume-fat', 'source-not-running'].sort());
    assert.equal(en.results.find((r) => r.id === 'source-not-running')!.code, 78093);
    const fat = en.results.find((r) => r.id === 'retention-volume-fat')!;
    assert.match(fat.message, /FAT/);
    assert.ok(fat.remedy.length > 0);

    const ja = await h.cs.app.inject({ method: 'GET', url: `/v1/items/${itemId}/preflight/reprotect`, headers: { authorization: `Bearer ${h.operatorToken}`, 'accept-language': 'ja-JP,ja;q=0.9' } });
    assert.equal(ja.statusCode, 200);
    const jaReport = ja.json() as Report;
    assert.equal(jaReport.lang, 'ja');
    assert.match(jaReport.results.find((r) => r.id === 'retention-volume-fat')!.message, /リテンション/);

    // Silence: after the heartbeat timeout the MT check fails with the source's code.
    h.clock.advance(10 * 60_000);
    const later = (await h.get(`/v1/items/${itemId}/preflight/failback?lang=ja`)).json as Report;
    const mtSilent = later.results.find((r) => r.id === 'mt-no-heartbeat')!;
    assert.equal(mtSilent.passed, false);
    assert.equal(mtSilent.code, 78022);
    assert.match(mtSilent.message, /マスター ターゲット/);

    // The same through the CLI: every failure with its remedy, exit code 3.
    const cli = await promisify(execFile)(process.execPath, [CLI, 'check', 'reprotect', itemId, '--cs', h.cs.url, '--ca', join(h.dir, 'cs', 'ca.pem'), '--token-file', join(h.dir, 'cs', 'admin.token'), '--lang', 'ja']).then(
      () => ({ code: 0, stdout: '' }),
      (e: { code: number; stdout: string }) => e,
    );
    assert.equal(cli.code, 3);
    assert.match(cli.stdout, /FAIL mt-no-heartbeat \(78022\)/);
    assert.match(cli.stdout, /→ /);

    assert.equal((await h.get(`/v1/items/${randomUUID()}/preflight/reprotect`)).status, 404);
    const bad = await h.get(`/v1/items/${itemId}/preflight/teleport`);
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.json), /operation/);
    assert.equal((await h.get(`/v1/items/${itemId}/preflight/reprotect`, null)).status, 401);
  });
});
