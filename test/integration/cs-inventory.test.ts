import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { CsError } from '../../src/cs/errors.js';
import { ENABLE_JOB_KIND, ItemJobParams, startItemOperation, transitionItem } from '../../src/cs/inventory/items.js';
import { defineJobKind } from '../../src/cs/jobs/types.js';
import { startArmSite } from '../helpers/fake-arm.js';
import { Gate, withCs, type CsHarness } from './cs-fixtures.js';

/** A stand-in for the lifecycle's enable job: reports progress, then marks the item protected. */
const enableKind = defineJobKind({
  name: ENABLE_JOB_KIND,
  params: ItemJobParams,
  tasks: [
    {
      name: 'initial-sync',
      resumable: true,
      async run(ctx) {
        for (let i = 1; i <= 3; i++) await ctx.progress(i, 3, `region ${i}`);
      },
    },
    {
      name: 'mark-protected',
      resumable: true,
      run: (ctx) => ctx.db.transaction().execute(async (trx) => void (await transitionItem(trx, ctx.clock, ctx.params.itemId, 'initialReplicationDone'))),
    },
  ],
});

const failoverGate = { current: new Gate() };
const failoverKind = defineJobKind({
  name: 'failover',
  params: Type.Object({ itemId: Type.String(), point: Type.String() }),
  tasks: [
    { name: 'restore', resumable: true, run: (ctx) => failoverGate.current.wait(ctx.signal) },
    {
      name: 'done',
      resumable: true,
      run: (ctx) => ctx.db.transaction().execute(async (trx) => void (await transitionItem(trx, ctx.clock, ctx.params.itemId, 'failoverDone'))),
    },
  ],
  compensate: (ctx) => ctx.db.transaction().execute(async (trx) => void (await transitionItem(trx, ctx.clock, ctx.params.itemId, 'failoverAborted'))),
});

interface Setup {
  machineId: string;
  policyId: string;
  failbackPolicyId: string;
  agent: { componentId: string; token: string };
  ps: { componentId: string; token: string };
  mt: { componentId: string; token: string };
}

async function setup(h: CsHarness, machineName = 'vm-1'): Promise<Setup> {
  const fabric = await h.post('/v1/fabrics', { kind: 'physical', name: `site-a-${machineName}` });
  assert.equal(fabric.status, 201, fabric.text);
  const machine = await h.post('/v1/machines', { fabricId: fabric.json.id, name: machineName, power: { start: ['/usr/local/bin/start-vm', machineName], stop: ['/usr/local/bin/stop-vm', machineName] } });
  assert.equal(machine.status, 201, machine.text);
  const policy = await h.post('/v1/policies', { name: `gold-${machineName}` });
  return {
    machineId: machine.json.id,
    policyId: policy.json.forward.id,
    failbackPolicyId: policy.json.failback.id,
    agent: await h.register('agent', machineName),
    ps: await h.register('ps', `ps-${machineName}`),
    mt: await h.register('mt', `mt-${machineName}`),
  };
}

function itemBody(s: Setup, disks = [{ diskId: 'vm-1-disk0', sizeBytes: 1 << 30, sourcePath: '/dev/vdb', targetPath: '/srv/replica/vm-1-disk0.img' }]) {
  return { machineId: s.machineId, policyId: s.policyId, agentId: s.agent.componentId, psId: s.ps.componentId, mtId: s.mt.componentId, disks };
}

test('policies: a pair per request, each editable on its own, validated', async () => {
  await withCs({}, async (h) => {
    const created = await h.post('/v1/policies', { name: 'gold', rpoThresholdSeconds: 300, failback: { retentionHours: 48 } });
    assert.equal(created.status, 201, created.text);
    const { forward, failback } = created.json;
    assert.equal(forward.direction, 'forward');
    assert.equal(failback.direction, 'failback');
    assert.equal(failback.name, 'gold-failback');
    assert.equal(forward.pairId, failback.pairId);
    assert.equal(failback.rpoThresholdSeconds, 300);
    assert.equal(forward.retentionHours, 24);
    assert.equal(failback.retentionHours, 48);

    const edited = await h.request('PATCH', `/v1/policies/${failback.id}`, { body: { appConsistentMinutes: 0, crashConsistentMinutes: 15 } });
    assert.equal(edited.status, 200, edited.text);
    assert.equal(edited.json.appConsistentMinutes, 0);
    assert.equal(edited.json.crashConsistentMinutes, 15);
    assert.equal((await h.get(`/v1/policies/${forward.id}`)).json.crashConsistentMinutes, 5, 'the forward policy is unchanged');

    const renamed = await h.request('PATCH', `/v1/policies/${forward.id}`, { body: { name: 'platinum' } });
    assert.equal(renamed.json.name, 'platinum');

    const tooLong = await h.request('PATCH', `/v1/policies/${forward.id}`, { body: { retentionHours: 1, appConsistentMinutes: 90 } });
    assert.equal(tooLong.status, 400);
    assert.equal(tooLong.json.code, 'POLICY_INVALID');
    assert.equal(tooLong.json.field, 'appConsistentMinutes');

    assert.equal((await h.request('PATCH', `/v1/policies/${forward.id}`, { body: {} })).status, 400);
    assert.equal((await h.request('PATCH', `/v1/policies/${randomUUID()}`, { body: { retentionHours: 2 } })).status, 404);
    const taken = await h.post('/v1/policies', { name: 'platinum' });
    assert.equal(taken.status, 409);
    assert.equal(taken.json.code, 'NAME_TAKEN');
    assert.equal((await h.get('/v1/policies')).json.length, 2);
  });
});

test('fabrics and machines', async () => {
  await withCs({}, async (h) => {
    const fabric = await h.post('/v1/fabrics', { kind: 'physical', name: 'site-a' });
    assert.equal(fabric.status, 201);
    const unknownKind = await h.post('/v1/fabrics', { kind: 'openstack', name: 'cloud' });
    assert.equal(unknownKind.status, 400);
    assert.equal(unknownKind.json.code, 'BAD_REQUEST');
    assert.equal(unknownKind.json.field, 'kind');
    assert.equal((await h.get('/v1/fabrics')).json.length, 1, 'nothing stored');
    assert.equal((await h.post('/v1/fabrics', { kind: 'physical', name: 'site-a' })).json.code, 'NAME_TAKEN');

    const machine = await h.post('/v1/machines', { fabricId: fabric.json.id, name: 'db-1', power: { manual: true } });
    assert.equal(machine.status, 201);
    assert.deepEqual(machine.json.power, { manual: true });
    assert.equal(machine.json.state, 'unknown');
    assert.equal(machine.json.itemId, null);
    const orphan = await h.post('/v1/machines', { fabricId: randomUUID(), name: 'db-2' });
    assert.equal(orphan.status, 404);
    assert.equal(orphan.json.field, 'fabricId');
    assert.equal((await h.get(`/v1/machines?fabricId=${fabric.json.id}`)).json.length, 1);
    assert.equal((await h.get(`/v1/machines?fabricId=${randomUUID()}`)).json.length, 0);
    assert.equal((await h.get(`/v1/fabrics/${fabric.json.id}`)).json.name, 'site-a');
  });
});

test('azure fabrics: checked by a token and one ARM read before anything is stored; the client secret is kept and never returned', async () => {
  const arm = await startArmSite();
  try {
    await withCs({}, async (h) => {
      const { tenantId, subscriptionId, credentials: c } = arm;
      const config = { tenantId, clientId: c.clientId, subscriptionId, authorityHost: arm.fake.url, armEndpoint: arm.fake.url, caPem: arm.fake.caPem };
      const stored = async () => (await h.get('/v1/fabrics')).json.length as number;
      const refused = async (body: object, status: number, code: string, field: string | undefined) => {
        const r = await h.post('/v1/fabrics', body);
        assert.equal(r.status, status, r.text);
        assert.equal(r.json.code, code, r.text);
        assert.equal(r.json.field, field, r.text);
        assert.ok(!r.text.includes(c.clientSecret), 'the secret is never echoed');
        assert.equal(await stored(), 0, 'nothing stored');
      };
      await refused({ kind: 'azure', name: 'cloud', config }, 400, 'FABRIC_CONFIG_INVALID', 'clientSecret');
      await refused({ kind: 'azure', name: 'cloud', config, clientSecret: 'not-the-secret' }, 400, 'FABRIC_LOGIN_FAILED', 'clientSecret');
      await refused({ kind: 'azure', name: 'cloud', config: { ...config, subscriptionId: randomUUID() }, clientSecret: c.clientSecret }, 400, 'FABRIC_CONFIG_INVALID', 'config.subscriptionId');
      await refused({ kind: 'azure', name: 'cloud', config: { ...config, clientId: 'app' }, clientSecret: c.clientSecret }, 400, 'FABRIC_CONFIG_INVALID', 'config.clientId');
      await refused({ kind: 'azure', name: 'cloud', config: { ...config, armEndpoint: 'http://127.0.0.1:1' }, clientSecret: c.clientSecret }, 400, 'FABRIC_CONFIG_INVALID', 'config.armEndpoint');
      await refused({ kind: 'azure', name: 'cloud', config: { ...config, caPem: 'not a certificate' }, clientSecret: c.clientSecret }, 400, 'FABRIC_CONFIG_INVALID', 'config.caPem');
      await refused({ kind: 'azure', name: 'cloud', config, password: c.clientSecret }, 400, 'FABRIC_CONFIG_INVALID', 'password');
      await refused({ kind: 'physical', name: 'cloud', clientSecret: c.clientSecret }, 400, 'FABRIC_CONFIG_INVALID', 'clientSecret');
      const { caPem: _ca, ...untrusting } = config;
      await refused({ kind: 'azure', name: 'cloud', config: untrusting, clientSecret: c.clientSecret }, 502, 'FABRIC_UNREACHABLE', 'config.authorityHost');
      arm.fake.failNext({ status: 403, code: 'AuthorizationFailed', pathContains: 'virtualMachines' });
      await refused({ kind: 'azure', name: 'cloud', config, clientSecret: c.clientSecret }, 403, 'FABRIC_PRIVILEGES_MISSING', undefined);

      const created = await h.post('/v1/fabrics', { kind: 'azure', name: 'cloud', config, clientSecret: c.clientSecret });
      assert.equal(created.status, 201, created.text);
      assert.equal(created.json.kind, 'azure');
      assert.equal(created.json.secretSet, true);
      assert.deepEqual(created.json.config, config);
      const listed = await h.get('/v1/fabrics');
      for (const text of [created.text, listed.text, (await h.get(`/v1/fabrics/${created.json.id}`)).text]) assert.ok(!text.includes(c.clientSecret), 'the client secret is never returned');
      // Kept where the vSphere password is: the one secret column of fabric_secrets.
      const secret = await h.cs.context.db.selectFrom('fabric_secrets').select('password').where('fabric_id', '=', created.json.id).executeTakeFirstOrThrow();
      assert.equal(secret.password, c.clientSecret);
      assert.ok(arm.fake.requests.some((r) => r.authorized && /\/virtualMachines$/i.test(r.path)), 'one ARM read with the token');

      // Machines of an azure fabric name their VM (and, in labs, guest hooks); hooks of a physical machine do not fit.
      const vm = { subscriptionId, resourceGroup: 'rg-1', vmName: 'web01' };
      const machine = await h.post('/v1/machines', { fabricId: created.json.id, name: 'web01', power: { ...vm, guest: { start: ['/bin/true'], stop: ['/bin/true'] } } });
      assert.equal(machine.status, 201, machine.text);
      assert.deepEqual(machine.json.power.guest, { start: ['/bin/true'], stop: ['/bin/true'] });
      const wrong = await h.post('/v1/machines', { fabricId: created.json.id, name: 'db01', power: { start: ['/bin/true'] } });
      assert.equal(wrong.status, 400, wrong.text);
      assert.equal(wrong.json.field, 'power');
    });
  } finally {
    await arm.stop();
  }
});

test('enable replication creates the item and its job; the job runs to Protected; refusals are specific', async () => {
  await withCs({ jobKinds: [enableKind, failoverKind] }, async (h) => {
    const s = await setup(h);
    const enabled = await h.post('/v1/items', itemBody(s));
    assert.equal(enabled.status, 202, enabled.text);
    const { item, job } = enabled.json;
    assert.equal(item.state, 'InitialReplication');
    assert.equal(item.direction, 'forward');
    assert.equal(item.failbackPolicyId, s.failbackPolicyId);
    assert.deepEqual(item.allowedOperations, ['initialReplicationDone', 'initialReplicationAborted', 'disable']);
    assert.equal(job.kind, ENABLE_JOB_KIND);
    assert.equal(job.resource, `item/${item.id}`);
    assert.deepEqual(job.params, { itemId: item.id });

    const done = await h.waitForJob(job.id);
    assert.equal(done.state, 'succeeded');
    assert.deepEqual(done.tasks[0]?.progress, { done: 3, total: 3, detail: 'region 3' });
    const protectedItem = (await h.get(`/v1/items/${item.id}`)).json;
    assert.equal(protectedItem.state, 'Protected');
    assert.deepEqual(protectedItem.allowedOperations, ['failover', 'disable']);
    assert.equal((await h.get(`/v1/machines/${s.machineId}`)).json.itemId, item.id);
    assert.deepEqual(
      (await h.get(`/v1/jobs?resource=item/${item.id}`)).json.map((j: { id: string }) => j.id),
      [job.id],
    );
    assert.equal((await h.get('/v1/items?state=Protected')).json.length, 1);

    assert.equal((await h.post('/v1/items', itemBody(s))).json.code, 'ITEM_EXISTS');
    assert.equal((await h.post(`/v1/jobs/${job.id}/cancel`)).json.code, 'JOB_FINISHED');

    const other = await setup(h, 'vm-2');
    const wrongKind = await h.post('/v1/items', { ...itemBody(other), psId: other.mt.componentId });
    assert.equal(wrongKind.status, 400);
    assert.equal(wrongKind.json.code, 'COMPONENT_KIND_MISMATCH');
    assert.equal(wrongKind.json.field, 'psId');
    const failbackPolicy = await h.post('/v1/items', { ...itemBody(other), policyId: other.failbackPolicyId });
    assert.equal(failbackPolicy.json.code, 'POLICY_NOT_FORWARD');
    const sameDisk = await h.post('/v1/items', itemBody(other));
    assert.equal(sameDisk.status, 409);
    assert.equal(sameDisk.json.code, 'DISK_IN_USE');
    assert.equal(sameDisk.json.field, 'disks.0.diskId');
    assert.equal((await h.get('/v1/items')).json.length, 1, 'refused requests leave nothing behind');

    // An operation not allowed from the current state is refused with 409 and starts no job.
    await assert.rejects(
      startItemOperation(h.cs.context, h.cs.jobs, item.id, 'reprotect', 'failover', { point: 'latest' }),
      (err: unknown) => err instanceof CsError && err.code === 'TRANSITION_NOT_ALLOWED' && err.status === 409,
    );
    assert.equal((await h.get(`/v1/jobs?resource=item/${item.id}`)).json.length, 1);

    // A failover cancelled mid-way rolls the item back to Protected through its compensation.
    failoverGate.current = new Gate();
    const failover = await startItemOperation(h.cs.context, h.cs.jobs, item.id, 'failover', 'failover', { point: 'latest' });
    assert.equal(failover.item.state, 'FailingOver');
    await failoverGate.current.entered;
    const cancel = await h.post(`/v1/jobs/${failover.job.id}/cancel`);
    assert.equal(cancel.status, 202);
    assert.equal(cancel.json.cancelRequested, true);
    const cancelled = await h.waitForJob(failover.job.id);
    assert.equal(cancelled.state, 'cancelled');
    assert.equal((await h.get(`/v1/items/${item.id}`)).json.state, 'Protected');
  });
});

test('enable replication without the lifecycle job kinds is refused with 501 and creates nothing', async () => {
  await withCs({}, async (h) => {
    const s = await setup(h);
    const r = await h.post('/v1/items', itemBody(s));
    assert.equal(r.status, 501);
    assert.equal(r.json.code, 'JOB_KIND_UNKNOWN');
    assert.deepEqual((await h.get('/v1/items')).json, []);
  });
});

test('recovery points and applied positions come from the master target; only it may report them', async () => {
  await withCs({ jobKinds: [enableKind] }, async (h) => {
    const s = await setup(h);
    const { item } = (await h.post('/v1/items', itemBody(s))).json;
    const lineage = randomUUID();
    const point = (seq: number, minute: number, kind = 'crash') => ({ pointId: `${lineage}/${seq}/${kind}`, bookmarkId: `b${seq}`, kind, time: `2030-01-01T00:0${minute}:00.000Z`, lineage, seq });
    const report = { disks: [{ diskId: 'vm-1-disk0', points: [point(10, 1), point(20, 2, 'app'), point(30, 3)] }, { diskId: 'not-mine', points: [point(1, 1)] }] };

    const first = await h.post('/v1/recovery-points', report, s.mt.token);
    assert.equal(first.status, 200, first.text);
    assert.deepEqual(first.json, { accepted: 3, pruned: 0, unknownDisks: ['not-mine'] });
    assert.equal((await h.post('/v1/recovery-points', report, s.mt.token)).json.accepted, 0, 'reporting again changes nothing');

    const listed = await h.get(`/v1/items/${item.id}/recovery-points`);
    assert.deepEqual(
      listed.json.map((p: { seq: number; kind: string }) => [p.seq, p.kind]),
      [
        [30, 'crash'],
        [20, 'app'],
        [10, 'crash'],
      ],
    );
    assert.equal((await h.get(`/v1/items/${item.id}/recovery-points?limit=1`)).json.length, 1);

    const pruned = await h.post('/v1/recovery-points', { disks: [{ diskId: 'vm-1-disk0', points: [], retainedFrom: '2030-01-01T00:02:00.000Z' }] }, s.mt.token);
    assert.equal(pruned.json.pruned, 1);
    assert.equal((await h.get(`/v1/items/${item.id}/recovery-points`)).json.length, 2);

    const fromAgent = await h.post('/v1/recovery-points', report, s.agent.token);
    assert.equal(fromAgent.status, 403);
    assert.equal(fromAgent.json.code, 'COMPONENT_NOT_ALLOWED');

    const mtHealth = {
      mt: {
        volumes: [{ path: '/mnt/retention', fsType: 'ext4', locked: false, inUseAsTarget: false, cacheOrInstall: false, capacityBytes: 1e12, freeBytes: 5e11 }],
        journals: [{ diskId: 'vm-1-disk0', lineage, lastSeq: 42, oldestPointTime: '2030-01-01T00:02:00.000Z', newestPointTime: '2030-01-01T00:03:00.000Z', bytes: 1e6 }],
      },
    };
    assert.equal((await h.post('/v1/heartbeat', mtHealth, s.mt.token)).status, 200);
    const disk = (await h.get(`/v1/items/${item.id}`)).json.disks[0];
    assert.equal(disk.lineage, lineage);
    assert.equal(disk.lastSeq, 42);
    assert.equal((await h.get(`/v1/components/${s.mt.componentId}`)).json.health.mt.volumes[0].fsType, 'ext4');
  });
});
