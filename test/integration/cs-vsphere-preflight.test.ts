import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { lifecycleJobKinds } from '../../src/cs/lifecycle/index.js';
import { VsphereFabric } from '../../src/fabrics/vsphere/fabric.js';
import { createSnapshot, data, discoveryManagers, findDatastore, listVmDisks, moRefOf, ref, retrieveObjects, taskOf, waitForTask } from '../../src/fabrics/vsphere/index.js';
import { createRecoveryVm } from '../../src/fabrics/vsphere/recovery-vm.js';
import { runCli } from '../helpers/cli.js';
import { startVcsim, type Vcsim } from '../helpers/vcsim.js';
import { withCs, type CsHarness } from './cs-fixtures.js';

// The source's VMware prerequisites, each set up through the vSphere API of a real vcsim (model:
// test/vcsim/main.go) and read back as an operator reads them: `boomerang check reprotect|failback
// <item>`, with the check's code and remedy. Site A is the vCenter; each item fails back to a VM
// there through a master target whose VM the fabric names.

let sim: Vcsim;
let vc: VsphereFabric;
before(async () => {
  sim = await startVcsim();
  vc = new VsphereFabric({ url: sim.url, tls: { caPem: sim.certPem }, username: sim.username, password: sim.password });
});
after(async () => {
  await vc?.close();
  await sim?.stop();
});

interface Result {
  id: string;
  code?: number;
  severity: string;
  passed: boolean;
  message: string;
  remedy: string;
}

const MiB = 1024 * 1024;

/** The VMs each master target runs in: VM0s run tools, only DC0_H0_VM0 has disk.EnableUUID. */
const MT_VMS = { 'mt-a': 'DC0_H0_VM0', 'mt-c': 'DC0_H0_VM1', 'mt-d': 'DC0_H1_VM0' };

class Site {
  private fabrics: Record<string, string> = {};
  private policy = '';
  private readonly agent = { token: '', componentId: '' };
  private ps = '';
  private mtB = '';
  private readonly mts: Record<string, string> = {};

  constructor(private readonly h: CsHarness) {}

  async init(): Promise<void> {
    const h = this.h;
    const vsphere = (user: { username: string; password: string }, name: string) =>
      h.post('/v1/fabrics', { kind: 'vsphere', name, config: { url: sim.url, username: user.username, caPem: sim.certPem, masterTargetVms: MT_VMS }, password: user.password });
    for (const [name, user] of [['vc', sim], ['vc-readonly', sim.readOnly]] as const) {
      const r = await vsphere(user, name);
      assert.equal(r.status, 201, r.text);
      this.fabrics[name] = r.json.id;
    }
    this.fabrics.b = (await h.post('/v1/fabrics', { kind: 'physical', name: 'site-b' })).json.id;
    this.policy = (await h.post('/v1/policies', { name: 'gold' })).json.forward.id;
    Object.assign(this.agent, await h.register('agent', 'agent-a'));
    this.ps = (await h.register('ps', 'ps')).componentId;
    this.mtB = (await h.register('mt', 'mt-b')).componentId;
    for (const mt of [...Object.keys(MT_VMS), 'mt-physical']) this.mts[mt] = (await h.register('mt', mt)).componentId;
  }

  /** A VM at site A (created in vcsim) protected to site B, failing back through `mt`. */
  async item(o: { vm: string; host?: string; datastore?: string; mt: keyof typeof MT_VMS | 'mt-physical'; fabric?: string; memoryMB?: number; diskUuid?: string }): Promise<string> {
    const h = this.h;
    const extra = { ...(o.memoryMB ? { memoryMB: o.memoryMB } : {}), ...(o.diskUuid ? { diskUuids: [o.diskUuid] } : {}) };
    await vc.withSession((s) => createRecoveryVm(s, { name: o.vm, host: o.host ?? 'DC0_H0', datastore: o.datastore ?? 'LocalDS_0', diskSizes: [4 * MiB], ...extra }));
    const machine = (await h.post('/v1/machines', { fabricId: this.fabrics[o.fabric ?? 'vc'], name: o.vm, power: { vm: o.vm } })).json;
    const recovery = (await h.post('/v1/machines', { fabricId: this.fabrics.b, name: o.vm })).json;
    const created = await h.post('/v1/items', {
      machineId: machine.id,
      policyId: this.policy,
      agentId: this.agent.componentId,
      psId: this.ps,
      mtId: this.mtB,
      disks: [{ diskId: `${o.vm}-disk0`, sizeBytes: 4 * MiB, sourcePath: `/a/${o.vm}-flat.vmdk`, targetPath: `/b/${o.vm}.img` }],
      recoveryMachineId: recovery.id,
      failbackAgentName: `${o.vm}.site-b`,
      failbackPsId: this.ps,
      failbackMtId: this.mts[o.mt],
    });
    assert.equal(created.status, 202, created.text);
    return created.json.item.id;
  }

  /** Puts the item where a finished reprotect leaves it: Protected, replicating back to site A. */
  async reprotected(itemId: string): Promise<void> {
    const jobs = (await this.h.get(`/v1/jobs?resource=item/${itemId}`)).json as { id: string }[];
    for (const j of jobs) await this.h.waitForJob(j.id);
    await this.h.cs.context.db.updateTable('items').set({ state: 'Protected', direction: 'failback' }).where('id', '=', itemId).execute();
  }

  /**
   * Records the item's reprotect as its job would: when it ran, and where the VMs' files were when
   * the disks were lent to the MT (read from vCenter now, as the lend step reads them).
   */
  async reprotectedNow(itemId: string, vms: readonly string[]): Promise<void> {
    const db = this.h.cs.context.db;
    const at = new Date(Date.now() - 60_000).toISOString();
    const datastores: Record<string, string[]> = {};
    for (const name of vms) {
      const vm = await vc.findVm(name);
      datastores[name] = await vc.withSession(async (s) => {
        const [o] = await retrieveObjects(s, [vm], { type: 'VirtualMachine', paths: ['datastore'] });
        const refs = (o?.props.get('datastore')?.children ?? []).map((c) => moRefOf(c)!);
        return (await retrieveObjects(s, refs, { type: 'Datastore', paths: ['name'] })).map((d) => d.props.get('name')!.text);
      });
    }
    const id = randomUUID();
    const seq = Number((await db.selectFrom('jobs').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirst())?.seq ?? 0) + 1;
    await db
      .insertInto('jobs')
      .values({ id, kind: 'reprotect', state: 'succeeded', params: JSON.stringify({ itemId, location: 'original' }), resource: `item/${itemId}`, outcome: null, error: null, cancel_requested_at: null, resumes: 0, version: 1, seq, created_at: at, started_at: at, finished_at: at, updated_at: at })
      .execute();
    await db
      .insertInto('tasks')
      .values({ job_id: id, idx: 0, name: 'attach-replicas', state: 'succeeded', resumable: 1, runs: 1, progress_done: 1, progress_total: 1, progress_detail: null, details: JSON.stringify({ lent: { datastores } }), error: null, started_at: at, finished_at: at })
      .execute();
  }

  /** Reads vCenter again (the CS's clock stands still in these tests, so it would not by itself). */
  async refresh(): Promise<void> {
    for (const id of Object.values(this.fabrics).slice(0, 2)) assert.equal((await this.h.post(`/v1/fabrics/${id}/refresh`)).status, 200);
  }

  async check(operation: 'reprotect' | 'failback', item: string, flags: readonly string[] = []): Promise<{ code: number | null; results: Result[] }> {
    const env = { BOOMERANG_CS: this.h.cs.url, BOOMERANG_CA: this.h.cs.paths.ca, BOOMERANG_TOKEN_FILE: this.h.cs.paths.adminToken };
    const run = await runCli(['check', operation, item, '-o', 'json', ...flags], env);
    assert.ok(run.code === 0 || run.code === 3, run.stderr);
    return { code: run.code, results: (JSON.parse(run.stdout) as { results: Result[] }).results };
  }
}

const VSPHERE_REPROTECT = ['vsphere-account-privileges', 'vsphere-target-not-esxi', 'vsphere-free-licence', 'mt-vm-snapshots', 'target-vm-snapshots', 'mt-enable-uuid', 'mt-tools-not-running', 'no-usable-datastore', 'datastore-not-accessible', 'vm-name-taken', 'disk-uuid-collision'];

function failedVsphere(results: Result[]): Result[] {
  return results.filter((r) => !r.passed && [...VSPHERE_REPROTECT, 'host-memory', 'storage-moved'].includes(r.id));
}

function one(results: Result[], id: string): Result {
  const r = results.find((x) => x.id === id);
  assert.ok(r, `no result for ${id}`);
  return r;
}

test('each VMware prerequisite is read from vCenter and reported by boomerang check, with its code and remedy', async () => {
  await withCs({ fabricRefreshIntervalSeconds: 0, jobKinds: (services) => lifecycleJobKinds(services) }, async (h) => {
    const site = new Site(h);
    await site.init();

    // A VM whose MT runs tools and has disk.EnableUUID, on a datastore both share: every check passes.
    const web = await site.item({ vm: 'web01', mt: 'mt-a' });
    await site.refresh();
    let report = await site.check('reprotect', web);
    for (const id of VSPHERE_REPROTECT) assert.equal(one(report.results, id).passed, true, `${id}: ${one(report.results, id).message}`);

    // Snapshots: on the MT's VM they block; on the VM that fails back they only warn (the job merges them).
    const mtVm = await vc.findVm('DC0_H0_VM0');
    const webVm = await vc.findVm('web01');
    await vc.withSession((s) => createSnapshot(s, mtVm, 'mt-snap'));
    await vc.withSession((s) => createSnapshot(s, webVm, 'before-failover'));
    await site.refresh();
    report = await site.check('reprotect', web);
    assert.deepEqual(failedVsphere(report.results).map((r) => [r.id, r.severity]), [['mt-vm-snapshots', 'error'], ['target-vm-snapshots', 'warning']]);
    assert.match(one(report.results, 'mt-vm-snapshots').remedy, /Delete All/);
    assert.match(one(report.results, 'target-vm-snapshots').message, /consolidate/);

    // Cloned from the same template as the MT's VM: a disk with the same UUID.
    const mtDisk = (await vc.withSession((s) => listVmDisks(s, mtVm)))[0]!;
    assert.ok(mtDisk.uuid);
    const clone = await site.item({ vm: 'clone01', mt: 'mt-a', diskUuid: mtDisk.uuid });
    await site.refresh();
    report = await site.check('reprotect', clone);
    const collision = one(report.results, 'disk-uuid-collision');
    assert.equal(collision.passed, false);
    assert.ok(mtDisk.uuid && collision.message.includes(mtDisk.uuid), collision.message);

    // An MT VM without tools and without disk.EnableUUID.
    const app = await site.item({ vm: 'app01', mt: 'mt-c' });
    await site.refresh();
    report = await site.check('reprotect', app);
    assert.deepEqual(failedVsphere(report.results).map((r) => r.id), ['mt-enable-uuid', 'mt-tools-not-running']);
    assert.match(one(report.results, 'mt-enable-uuid').remedy, /disk\.EnableUUID = TRUE/);

    // 8061: the VM's disks are on nfs-ds, which the MT's host (DC0_H1) does not mount.
    const db = await site.item({ vm: 'db01', datastore: 'nfs-ds', mt: 'mt-d' });
    await site.refresh();
    report = await site.check('reprotect', db);
    const ds = one(report.results, 'datastore-not-accessible');
    assert.deepEqual([ds.passed, ds.code], [false, 8061]);
    assert.match(ds.message, /nfs-ds.*DC0_H1/);
    assert.match(ds.remedy, /Mount nfs-ds read-write on DC0_H1/);

    // The free ESXi licence on the MT's host: the API is read-only.
    await vc.withSession(async (s) => {
      const { licenseManager } = await discoveryManagers(s);
      const [lm] = await retrieveObjects(s, [licenseManager!], { type: 'LicenseManager', paths: ['licenseAssignmentManager'] });
      const [vm] = await retrieveObjects(s, [mtVm], { type: 'VirtualMachine', paths: ['runtime.host'] });
      const host = moRefOf(vm!.props.get('runtime.host'))!;
      await s.transport.call('UpdateAssignedLicense', moRefOf(lm!.props.get('licenseAssignmentManager'))!, { entity: host.value, licenseKey: sim.freeLicenseKey });
    });
    await site.refresh();
    report = await site.check('reprotect', web);
    const licence = one(report.results, 'vsphere-free-licence');
    assert.equal(licence.passed, false);
    assert.match(licence.message, /DC0_H0.*read-only/);

    // 8038 at failback: the VM needs more memory than its host has free. The item stands as after
    // a reprotect (replicating back to site A); its enable job has ended (no agent reports here).
    const big = await site.item({ vm: 'big01', mt: 'mt-d', memoryMB: 4 * 1024 * 1024 });
    await site.reprotected(big);
    await site.refresh();
    report = await site.check('failback', big);
    const memory = one(report.results, 'host-memory');
    assert.deepEqual([memory.passed, memory.code], [false, 8038]);
    assert.match(memory.message, /DC0_H0 has \d+ MiB of memory free; big01 needs 4194304 MiB/);
    assert.equal(report.code, 3, 'a blocking check failed: exit code 3');
    assert.equal(one(report.results, 'storage-moved').passed, true);

    // Storage vMotion of the VM after its reprotect: the replication no longer writes where its disks are.
    await site.reprotectedNow(big, ['big01', 'DC0_H1_VM0']);
    report = await site.check('failback', big);
    assert.equal(one(report.results, 'storage-moved').passed, true, 'nothing moved since the reprotect');
    const bigVm = await vc.findVm('big01');
    await vc.withSession(async (s) => {
      const nfs = await findDatastore(s, 'nfs-ds');
      await waitForTask(s, taskOf(await s.transport.call('RelocateVM_Task', bigVm, { spec: data('VirtualMachineRelocateSpec', { datastore: ref(nfs.ref) }) })));
    });
    await site.refresh();
    report = await site.check('failback', big);
    const moved = one(report.results, 'storage-moved');
    assert.equal(moved.passed, false);
    assert.match(moved.message, /Storage vMotion moved big01 from LocalDS_0 to nfs-ds/);

    // 78052, alternate location: the new VM's name is taken on the MT's host (DC0_H0). The
    // operation is refused before any job starts, with every failed check.
    const refused = await h.post(`/v1/items/${web}/reprotect`, { location: 'alternate', machineName: 'DC0_H0_VM1' });
    assert.equal(refused.status, 422, refused.text);
    const taken = (refused.json.problems as { id: string; code?: number; remedy: string }[]).find((p) => p.id === 'vm-name-taken');
    assert.deepEqual([taken?.code, /Rename or remove/.test(taken?.remedy ?? '')], [78052, true]);
    report = await site.check('reprotect', web, ['--location', 'alternate', '--machine-name', 'DC0_H0_VM1']);
    const named = one(report.results, 'vm-name-taken');
    assert.deepEqual([named.passed, named.code], [false, 78052]);
    assert.match(named.message, /DC0_H0_VM1.*DC0_H0/);
    report = await site.check('reprotect', web, ['--location', 'alternate']);
    assert.equal(one(report.results, 'vm-name-taken').passed, true, 'web01-recovered is free');
    report = await site.check('reprotect', web);
    assert.equal(one(report.results, 'vm-name-taken').passed, true, 'without --location alternate there is no new VM to name');

    // A master target that is not a VM of this vCenter.
    const bare = await site.item({ vm: 'bare01', mt: 'mt-physical' });
    await site.refresh();
    report = await site.check('reprotect', bare);
    assert.equal(one(report.results, 'vsphere-target-not-esxi').passed, false);

    // A read-only account: its fabric cannot see the datastores; that alone is reported.
    const ro = await site.item({ vm: 'ro01', mt: 'mt-a', fabric: 'vc-readonly' });
    await site.refresh();
    report = await site.check('reprotect', ro);
    assert.deepEqual(failedVsphere(report.results).map((r) => r.id), ['vsphere-account-privileges']);
    assert.match(one(report.results, 'vsphere-account-privileges').message, /vc-readonly.*(Datastore|datastore)/);
  });
});
