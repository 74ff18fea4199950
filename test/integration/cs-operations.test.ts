import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { lifecycleJobKinds } from '../../src/cs/lifecycle/index.js';
import type { Fabric } from '../../src/fabrics/fabric.js';
import { withCs, type CsHarness } from './cs-fixtures.js';

// The lifecycle's jobs against the real CS API, with this test playing the components: it
// fetches the commands each job sends (GET /v1/commands with the component's token), checks
// them and answers. Machines are powered through a recording fabric: the physical fabric's hooks
// are exercised by the lab tests.

interface Command {
  id: string;
  kind: string;
  params: Record<string, unknown>;
}

const powered: string[] = [];
const recordingFabric = (): Fabric => ({
  kind: 'physical',
  power: async (m, action) => void powered.push(`${m.name}:${action}`),
  powerState: async () => 'running',
});


async function setup(h: CsHarness, o: { power?: object; retentionFs?: string; policy?: object } = {}) {
  const power = o.power;
  const a = (await h.post('/v1/fabrics', { kind: 'physical', name: 'site-a' })).json;
  const b = (await h.post('/v1/fabrics', { kind: 'physical', name: 'site-b' })).json;
  const machine = (await h.post('/v1/machines', { fabricId: a.id, name: 'web01', ...(power ? { power } : {}) })).json;
  const recovery = (await h.post('/v1/machines', { fabricId: b.id, name: 'web01', ...(power ? { power } : {}) })).json;
  const policy = (await h.post('/v1/policies', { name: 'gold', ...o.policy })).json;
  const agent = await h.register('agent', 'web01.site-a');
  const psA = await h.register('ps', 'ps-a');
  const mtB = await h.register('mt', 'mt-b');
  const psB = await h.register('ps', 'ps-b');
  const mtA = await h.register('mt', 'mt-a');
  for (const c of [agent, psA, mtB, psB, mtA]) {
    const kind = c === agent ? 'agent' : c === psA || c === psB ? 'ps' : 'mt';
    const body =
      kind === 'agent'
        ? { agent: { disks: [] } }
        : kind === 'ps'
          ? { ps: { spoolUsedBytes: 0, spoolCapacityBytes: 100, spoolState: 'ok', throughputBytesPerSecond: 0, pendingBatches: 0, quarantinedFiles: 0 } }
          : { mt: { platform: 'linux', retentionPath: '/mnt/retention', volumes: [{ path: '/mnt/retention', fsType: o.retentionFs ?? 'ext4', locked: false, inUseAsTarget: false, cacheOrInstall: false, capacityBytes: 8 * 2 ** 30, freeBytes: 4 * 2 ** 30 }], journals: [] } };
    assert.equal((await h.post('/v1/heartbeat', body, c.token)).status, 200);
  }
  const created = await h.post('/v1/items', {
    machineId: machine.id,
    policyId: policy.forward.id,
    agentId: agent.componentId,
    psId: psA.componentId,
    mtId: mtB.componentId,
    disks: [{ diskId: 'web01-disk0', sizeBytes: 1 << 20, sourcePath: '/a/web01.img', targetPath: '/b/web01.img' }],
    recoveryMachineId: recovery.id,
    failbackAgentName: 'web01.site-b',
    failbackPsId: psB.componentId,
    failbackMtId: mtA.componentId,
  });
  assert.equal(created.status, 202, created.text);
  return { itemId: created.json.item.id as string, enableJob: created.json.job.id as string, agent, psA, mtB };
}

/** Plays the components through enable: attach, protect, first point of the new lineage. */
async function enable(h: CsHarness, s: Awaited<ReturnType<typeof setup>>): Promise<string> {
  await h.answer(s.mtB.token, await h.nextCommand(s.mtB.token, 'attachDisk'), { ok: true, result: { created: true, adopted: false } });
  const lineage = randomUUID();
  await h.answer(s.agent.token, await h.nextCommand(s.agent.token, 'protectDisk'), { ok: true, result: { lineage } });
  const point = { pointId: `${lineage}/3/crash`, bookmarkId: 'b3', kind: 'crash', time: new Date(h.clock.now()).toISOString(), lineage, seq: 3 };
  await h.post('/v1/recovery-points', { disks: [{ diskId: 'web01-disk0', points: [point] }] }, s.mtB.token);
  assert.equal((await h.waitForJob(s.enableJob)).state, 'succeeded');
  return lineage;
}

test('enable and failover run as jobs that command the components and wait for what they report', async () => {
  powered.length = 0;
  await withCs({ jobKinds: (s) => lifecycleJobKinds(s, recordingFabric), lifecyclePollMs: 20, heartbeatIntervalSeconds: 3600 }, async (h) => {
    const { itemId, enableJob, agent, psA, mtB } = await setup(h);

    // Enable: the recovery-site MT attaches a replica next to the recovery machine's disk…
    const attach = await h.nextCommand(mtB.token, 'attachDisk');
    assert.deepEqual(attach.params, { diskId: 'web01-disk0', target: '/b/web01.img.replica', sizeBytes: 1 << 20, adopt: '/b/web01.img' });
    // …a component cannot answer another one's command…
    assert.equal((await h.post(`/v1/commands/${encodeURIComponent(attach.id)}/answer`, { ok: true }, agent.token)).status, 404);
    // …and a malformed answer is refused naming the field.
    const bad = await h.post(`/v1/commands/${encodeURIComponent(attach.id)}/answer`, { ok: false, error: { message: 'x' } }, mtB.token);
    assert.equal(bad.status, 400);
    await h.answer(mtB.token, attach, { ok: true, result: { created: true, adopted: false } });
    // The agent starts a new lineage; the job then waits for the MT's first point of it.
    const protect = await h.nextCommand(agent.token, 'protectDisk');
    assert.deepEqual(protect.params, { diskId: 'web01-disk0', newLineage: true });
    const lineage = randomUUID();
    await h.answer(agent.token, protect, { ok: true, result: { lineage } });
    // A point of another lineage does not count.
    const point = (l: string, seq: number) => ({ pointId: `${l}/${seq}/crash`, bookmarkId: `b${seq}`, kind: 'crash', time: new Date(h.clock.now()).toISOString(), lineage: l, seq });
    await h.post('/v1/recovery-points', { disks: [{ diskId: 'web01-disk0', points: [point(randomUUID(), 1)] }] }, mtB.token);
    assert.equal((await h.get(`/v1/jobs/${enableJob}`)).json.state, 'running');
    await h.post('/v1/recovery-points', { disks: [{ diskId: 'web01-disk0', points: [point(lineage, 7)] }] }, mtB.token);
    assert.equal((await h.waitForJob(enableJob)).state, 'succeeded');
    assert.equal((await h.get(`/v1/items/${itemId}`)).json.state, 'Protected');

    // Failover to a named point: the PS is not drained (not 'latest'), the MT restores that point
    // to the recovery machine's disk, the recovery machine is started.
    const started = await h.post(`/v1/items/${itemId}/failover`, { point: 'b7', shutdownSource: true });
    assert.equal(started.status, 202, started.text);
    const status = await h.nextCommand(mtB.token, 'diskStatus');
    await h.answer(mtB.token, status, { ok: true, result: { position: { lineage, lastSeq: 9 }, points: [{ id: `${lineage}/7/crash`, bookmarkId: 'b7', kind: 'crash', time: 1, lineage, seq: 7 }] } });
    const restore = await h.nextCommand(mtB.token, 'restoreDisk');
    assert.deepEqual(restore.params, { diskId: 'web01-disk0', point: `${lineage}/7/crash`, outPath: '/b/web01.img' });
    await h.answer(mtB.token, restore, { ok: true, result: { pointId: `${lineage}/7/crash`, time: 1 } });
    const job = await h.waitForJob(started.json.job.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    assert.deepEqual(powered, ['web01:stop', 'web01:start']);
    const item = (await h.get(`/v1/items/${itemId}`)).json;
    assert.equal(item.state, 'FailedOver');
    assert.equal(item.failoverPoint.disks['web01-disk0'].pointId, `${lineage}/7/crash`);
    assert.equal((await h.get('/v1/commands?waitSeconds=0', psA.token)).json.length, 0, 'no drain for a named point');
  });
});

test('a component that refuses a command fails the job with its code, and the item rolls back', async () => {
  powered.length = 0;
  await withCs({ jobKinds: (s) => lifecycleJobKinds(s, recordingFabric), lifecyclePollMs: 20, heartbeatIntervalSeconds: 3600 }, async (h) => {
    const { itemId, enableJob, agent, psA, mtB } = await setup(h);
    const attach = await h.nextCommand(mtB.token, 'attachDisk');
    await h.answer(mtB.token, attach, { ok: false, error: { code: 'DISK_SIZE_MISMATCH', message: 'target has 5 bytes' } });
    // The rollback undoes what may have happened, component by component: capture stopped, the
    // replica released (not handed to anyone: it was not adopted), the spool dropped.
    const unprotect = await h.nextCommand(agent.token, 'unprotectDisk');
    await h.answer(agent.token, unprotect, { ok: true, result: { drained: true } });
    const release = await h.nextCommand(mtB.token, 'releaseDisk');
    assert.deepEqual(release.params, { diskId: 'web01-disk0' });
    await h.answer(mtB.token, release, { ok: true });
    const discard = await h.nextCommand(psA.token, 'discardDisk');
    await h.answer(psA.token, discard, { ok: true, result: { batches: 0, bytes: 0 } });
    const job = await h.waitForJob(enableJob);
    assert.equal(job.state, 'failed');
    assert.equal(job.error?.code, 'COMMAND_FAILED');
    assert.match(job.error?.message ?? '', /master target mt-b could not attachDisk: \[DISK_SIZE_MISMATCH\] target has 5 bytes/);
    assert.equal((await h.get(`/v1/items/${itemId}`)).json.state, 'ProtectionDisabled');
  });
});

test('operations: credentials, malformed bodies, pre-flight refusals with every failure in English and Japanese', async () => {
  await withCs({ jobKinds: (s) => lifecycleJobKinds(s, recordingFabric), lifecyclePollMs: 20, heartbeatIntervalSeconds: 3600 }, async (h) => {
    const { itemId, agent } = await setup(h);
    assert.equal((await h.post(`/v1/items/${itemId}/commit`, {}, null)).status, 401);
    assert.equal((await h.post(`/v1/items/${itemId}/commit`, {}, 'not-a-token')).status, 401);
    // A component's token is not an operator's, and an operator's is not a component's.
    assert.equal((await h.post(`/v1/items/${itemId}/commit`, {}, agent.token)).status, 401);
    assert.equal((await h.get('/v1/commands?waitSeconds=0')).status, 401);

    const badPoint = await h.post(`/v1/items/${itemId}/failover`, { point: { newest: true } });
    assert.equal(badPoint.status, 400);
    assert.equal(badPoint.json.field, 'point');
    const extra = await h.post(`/v1/items/${itemId}/reprotect`, { location: 'moon' });
    assert.equal(extra.status, 400);
    assert.equal(extra.json.field, 'location');
    assert.equal((await h.post(`/v1/items/${randomUUID()}/commit`, {})).status, 404);

    // Commit and reprotect while initial replication runs: refused by pre-flight, all problems at once.
    const commit = await h.post(`/v1/items/${itemId}/commit`, {});
    assert.equal(commit.status, 422, commit.text);
    assert.equal(commit.json.code, 'PREFLIGHT_FAILED');
    assert.deepEqual(commit.json.problems.map((p: { id: string }) => p.id), ['item-nothing-to-commit']);
    assert.ok(commit.json.problems[0].remedy.length > 0);
    const reprotect = await h.post(`/v1/items/${itemId}/reprotect`, {});
    assert.equal(reprotect.status, 422);
    // Agent registration (95226) and the machine being up (78093) are waited for by the job, not refused here.
    assert.ok(reprotect.json.problems.some((p: { id: string }) => p.id === 'item-not-failed-over'));
    assert.ok(!reprotect.json.problems.some((p: { code?: number }) => p.code === 95226 || p.code === 78093));
    const ja = await h.cs.app.inject({ method: 'POST', url: `/v1/items/${itemId}/commit`, headers: { authorization: `Bearer ${h.operatorToken}`, 'accept-language': 'ja', 'content-type': 'application/json' }, payload: '{}' });
    assert.equal(ja.statusCode, 422);
    assert.match(ja.json().problems[0].message, /コミット/);
    // The state machine still guards what pre-flight does not cover.
    const change = await h.post(`/v1/items/${itemId}/change-point`, { point: 'latest' });
    assert.equal(change.status, 409);
    assert.equal(change.json.code, 'TRANSITION_NOT_ALLOWED');
  });
});

test('commands are sent once per id, expire unanswered, and late answers change nothing', async () => {
  await withCs({ heartbeatIntervalSeconds: 3600 }, async (h) => {
    const mt = await h.register('mt', 'mt-x');
    const send = { id: 'job/task/attachDisk/d1', componentId: mt.componentId, kind: 'attachDisk', params: { diskId: 'd1' }, timeoutMs: 60_000 };
    await h.cs.commands.send(send);
    await h.cs.commands.send({ ...send, params: { diskId: 'other' } });
    const pending = (await h.get('/v1/commands?waitSeconds=0', mt.token)).json as Command[];
    assert.equal(pending.length, 1);
    assert.deepEqual(pending[0]!.params, { diskId: 'd1' });
    h.clock.advance(61_000);
    assert.equal((await h.get('/v1/commands?waitSeconds=0', mt.token)).json.length, 0, 'an expired command is not delivered');
    await assert.rejects(h.cs.commands.answer(send.id, AbortSignal.timeout(5000)), (e: Error & { code?: string }) => e.code === 'COMMAND_TIMEOUT');
    const late = await h.post(`/v1/commands/${encodeURIComponent(send.id)}/answer`, { ok: true, result: {} }, mt.token);
    assert.equal(late.status, 200);
    assert.equal(late.json.accepted, false);
  });
});

test('machines powered by hand: the job waits for the operator to confirm each power operation', async () => {
  await withCs({ jobKinds: (s) => lifecycleJobKinds(s), lifecyclePollMs: 20, heartbeatIntervalSeconds: 3600 }, async (h) => {
    const s = await setup(h, { power: { manual: true } });
    const lineage = await enable(h, s);
    const started = await h.post(`/v1/items/${s.itemId}/failover`, { point: 'latest-processed', shutdownSource: true });
    assert.equal(started.status, 202, started.text);
    const jobId = started.json.job.id as string;
    const waiting = await h.waitForJob(jobId, (j) => j.tasks.some((t) => t.name === 'shutdown-source' && (t.progress.detail ?? '').includes('boomerang job confirm')));
    assert.match(waiting.tasks.find((t) => t.name === 'shutdown-source')!.progress.detail!, new RegExp(`stop web01, then: boomerang job confirm ${jobId}`));
    const confirm = await h.post(`/v1/jobs/${jobId}/confirm`, {});
    assert.equal(confirm.status, 200, confirm.text);
    assert.deepEqual(confirm.json.confirmed.map((c: { action: string }) => c.action), ['stop']);
    const status = await h.nextCommand(s.mtB.token, 'diskStatus');
    await h.answer(s.mtB.token, status, { ok: true, result: { points: [{ id: `${lineage}/3/crash`, bookmarkId: 'b3', kind: 'crash', time: 1, lineage, seq: 3 }] } });
    await h.answer(s.mtB.token, await h.nextCommand(s.mtB.token, 'restoreDisk'), { ok: true, result: { pointId: `${lineage}/3/crash`, time: 1 } });
    await h.waitForJob(jobId, (j) => j.tasks.some((t) => t.name === 'start-recovery-machine' && (t.progress.detail ?? '').includes('start web01')));
    assert.equal((await h.post(`/v1/jobs/${jobId}/confirm`, {})).status, 200);
    assert.equal((await h.waitForJob(jobId)).state, 'succeeded');
    assert.equal((await h.get(`/v1/items/${s.itemId}`)).json.state, 'FailedOver');
    const nothing = await h.post(`/v1/jobs/${jobId}/confirm`, {});
    assert.equal(nothing.status, 409);
    assert.equal(nothing.json.code, 'NOTHING_TO_CONFIRM');
  });
});

test('enable runs its pre-flight checks on the new item: a FAT retention volume fails the job before anything is attached', async () => {
  await withCs({ jobKinds: (s) => lifecycleJobKinds(s, recordingFabric), lifecyclePollMs: 20, heartbeatIntervalSeconds: 3600 }, async (h) => {
    const s = await setup(h, { retentionFs: 'vfat' });
    const job = await h.waitForJob(s.enableJob);
    assert.equal(job.state, 'failed');
    assert.equal(job.error?.code, 'PREFLIGHT_FAILED');
    assert.match(job.error?.message ?? '', /retention-volume-fat/);
    assert.equal(job.tasks.find((t) => t.name === 'attach-replicas')?.state, 'skipped');
    assert.equal((await h.get(`/v1/items/${s.itemId}`)).json.state, 'ProtectionDisabled');
  });
});

test('a policy that asks for blob snapshots has the MT keep each point of the replica as one', async () => {
  await withCs({ jobKinds: (s) => lifecycleJobKinds(s, recordingFabric), lifecyclePollMs: 20, heartbeatIntervalSeconds: 3600 }, async (h) => {
    const s = await setup(h, { policy: { blobSnapshots: true, failback: { blobSnapshots: false } } });
    const attach = await h.nextCommand(s.mtB.token, 'attachDisk');
    assert.equal(attach.params.blobSnapshots, true);
    const policies = (await h.get('/v1/policies')).json as { name: string; blobSnapshots: boolean }[];
    assert.deepEqual(policies.map((p) => [p.name, p.blobSnapshots]), [['gold', true], ['gold-failback', false]]);
  });
});
