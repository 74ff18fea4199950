import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ENABLE_JOB_KIND, ItemJobParams, transitionItem } from '../../src/cs/inventory/items.js';
import { defineJobKind } from '../../src/cs/jobs/types.js';
import { runCli } from '../helpers/cli.js';
import { startArmSite } from '../helpers/fake-arm.js';
import { withCs } from './cs-fixtures.js';

// The pre-flight facts of a cloud VM, read by the CS through its azure fabric (the real
// @azure/arm-compute and @azure/identity clients) from the fake ARM server: reprotect sends from
// the failed-over cloud VM, so a deleted VM, a VM moved to another resource group and a
// deallocated VM must each fail their check.

// Enabling replication is a lifecycle job; this stand-in only marks the item Protected.
const enableKind = defineJobKind({
  name: ENABLE_JOB_KIND,
  params: ItemJobParams,
  tasks: [{ name: 'mark-protected', resumable: true, run: (ctx) => ctx.db.transaction().execute(async (trx) => void (await transitionItem(trx, ctx.clock, ctx.params.itemId, 'initialReplicationDone'))) }],
});

interface Report {
  ok: boolean;
  results: { id: string; code?: number; passed: boolean; severity: string; message: string }[];
}

test('reprotect pre-flight of a cloud VM through ARM: deleted, moved to another resource group, not running (78093)', async () => {
  const arm = await startArmSite();
  try {
    await withCs({ jobKinds: [enableKind], heartbeatIntervalSeconds: 30 }, async (h) => {
      const { fake, tenantId, subscriptionId, credentials: c } = arm;
      fake.addResourceGroup(subscriptionId, 'rg-dr');
      fake.addResourceGroup(subscriptionId, 'rg-other');
      const vm = { subscriptionId, resourceGroup: 'rg-dr', name: 'web01' };
      fake.addVm({ ...vm, powerState: 'running' });

      const onPrem = (await h.post('/v1/fabrics', { kind: 'physical', name: 'site-a' })).json;
      // Added as an operator would: the secret and the CA from files.
      const secretFile = join(h.dir, 'cloud.secret');
      const caFile = join(h.dir, 'arm-ca.pem');
      await writeFile(secretFile, `${c.clientSecret}\n`, { mode: 0o600 });
      await writeFile(caFile, fake.caPem);
      const env = { BOOMERANG_CS: h.cs.url, BOOMERANG_CA: h.cs.paths.ca, BOOMERANG_TOKEN_FILE: h.cs.paths.adminToken };
      const common = ['fabric', 'add', 'azure', '--name', 'cloud', '--tenant-id', tenantId, '--client-id', c.clientId, '--subscription-id', subscriptionId, '--authority-host', fake.url, '--arm-endpoint', fake.url, '--arm-ca', caFile];
      const wrong = join(h.dir, 'wrong.secret');
      await writeFile(wrong, 'not-the-secret\n', { mode: 0o600 });
      const refused = await runCli([...common, '--client-secret-file', wrong], env);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /FABRIC_LOGIN_FAILED/);
      const added = await runCli([...common, '--client-secret-file', secretFile], env);
      assert.equal(added.code, 0, added.stderr);
      assert.match(added.stdout, /Client secret:?\s+set/);
      assert.ok(!added.stdout.includes(c.clientSecret), 'the secret is never shown');
      const cloud = { json: ((await h.get('/v1/fabrics')).json as { id: string; name: string }[]).find((f) => f.name === 'cloud')! };
      const machine = (await h.post('/v1/machines', { fabricId: onPrem.id, name: 'web01', power: { manual: true } })).json;
      const recovery = await h.post('/v1/machines', { fabricId: cloud.json.id, name: 'web01', power: { subscriptionId, resourceGroup: 'rg-dr', vmName: 'web01' } });
      assert.equal(recovery.status, 201, recovery.text);
      const policy = (await h.post('/v1/policies', { name: 'gold' })).json;
      const agent = await h.register('agent', 'web01');
      const ps = await h.register('ps', 'ps-cloud');
      const mt = await h.register('mt', 'mt-onprem');
      const enabled = await h.post('/v1/items', {
        machineId: machine.id,
        policyId: policy.forward.id,
        agentId: agent.componentId,
        psId: ps.componentId,
        mtId: mt.componentId,
        disks: [{ diskId: 'web01-disk0', sizeBytes: 1 << 30, sourcePath: '/dev/vdb', targetPath: 'azblob://cloud/disks/web01-disk0' }],
        recoveryMachineId: recovery.json.id,
        failbackAgentName: 'web01-azure',
        failbackPsId: ps.componentId,
        failbackMtId: mt.componentId,
      });
      assert.equal(enabled.status, 202, enabled.text);
      await h.waitForJob(enabled.json.job.id);
      const itemId = enabled.json.item.id as string;

      const check = async () => {
        const r = await h.get(`/v1/items/${itemId}/preflight/reprotect`);
        assert.equal(r.status, 200, r.text);
        const report = r.json as Report;
        const result = (id: string) => report.results.find((x) => x.id === id) ?? assert.fail(`no ${id} result in ${r.text}`);
        return { deleted: result('source-deleted'), notRunning: result('source-not-running') };
      };

      // Running, its guest agent Ready: both pass.
      let r = await check();
      assert.equal(r.deleted.passed, true, r.deleted.message);
      assert.equal(r.notRunning.passed, true, r.notRunning.message);

      // Deallocated (stopped outside our control): 78093, the VM is still where recorded.
      fake.setPowerState(vm, 'deallocated');
      r = await check();
      assert.equal(r.notRunning.passed, false, 'a deallocated cloud VM fails source-not-running');
      assert.equal(r.notRunning.code, 78093);
      assert.equal(r.deleted.passed, true, r.deleted.message);
      fake.setPowerState(vm, 'running');

      // Moved to another resource group: not where the CS recorded it.
      fake.moveVm(vm, 'rg-other');
      r = await check();
      assert.equal(r.deleted.passed, false, 'a cloud VM moved to another resource group fails source-deleted');
      assert.equal(r.notRunning.passed, true, 'a VM that is not found is reported by source-deleted only');
      fake.moveVm({ ...vm, resourceGroup: 'rg-other' }, 'rg-dr');
      r = await check();
      assert.equal(r.deleted.passed, true, 'moved back, it is found again');

      // Deleted.
      fake.deleteVm(vm);
      r = await check();
      assert.equal(r.deleted.passed, false, 'a deleted cloud VM fails source-deleted');
      assert.equal(r.notRunning.passed, true, 'a VM that is not found is reported by source-deleted only');
    });
  } finally {
    await arm.stop();
  }
});
