import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startVcsim, type Vcsim } from '../helpers/vcsim.js';
import {
  data,
  discover,
  InvalidLoginError,
  lacksPrivileges,
  moRefOf,
  NoPermissionError,
  powerOffVm,
  retrieveObjects,
  taskOf,
  vmPowerState,
  VsphereSession,
  waitForTask,
  type VsphereInventory,
} from '../../src/fabrics/vsphere/index.js';
import { discoveryManagers } from '../../src/fabrics/vsphere/discover-content.js';
import { REQUIRED_PRIVILEGES } from '../../src/fabrics/vsphere/privileges.js';

// Discovery of the facts Boomerang's vSphere checks need, against vcsim (model: test/vcsim/main.go —
// VMFS LocalDS_0 on both hosts, NFS nfs-ds read-write on DC0_H0, NFS 4.1 nfs41-ds read-only on DC0_H1;
// tools running in the *_VM0 VMs; disk.EnableUUID=TRUE on DC0_H0_VM0; a read-only account).

let sim: Vcsim;
before(async () => {
  sim = await startVcsim();
});
after(async () => {
  await sim?.stop();
});

const login = (user = { username: sim.username, password: sim.password }) => VsphereSession.login({ url: sim.url, tls: { caPem: sim.certPem }, ...user });

async function discoverAs(user?: { username: string; password: string }): Promise<VsphereInventory> {
  const s = await login(user);
  try {
    return await discover(s);
  } finally {
    await s.logout();
  }
}

const named = <T extends { name: string }>(xs: readonly T[], name: string): T => {
  const found = xs.find((x) => x.name === name);
  assert.ok(found, `${name} is in the inventory`);
  return found;
};

test('datastores: type from summary.type (VMFS, NFS, NFS41), and which hosts mount each one read-write', async () => {
  const inv = await discoverAs();
  const hostName = (r: { value: string }) => inv.hosts.find((h) => h.ref.value === r.value)?.name;
  const mounts = (ds: string) =>
    named(inv.datastores, ds)
      .mounts.map((m) => `${hostName(m.host)}:${m.accessMode}:${m.mounted}:${m.accessible}`)
      .sort();
  assert.deepEqual(
    inv.datastores.map((d) => [d.name, d.type, d.rawType]).sort(),
    [
      ['LocalDS_0', 'VMFS', 'VMFS'],
      ['nfs-ds', 'NFS', 'NFS'],
      ['nfs41-ds', 'NFS41', 'NFS41'],
    ],
  );
  assert.deepEqual(mounts('LocalDS_0'), ['DC0_H0:readWrite:true:true', 'DC0_H1:readWrite:true:true']);
  assert.deepEqual(mounts('nfs-ds'), ['DC0_H0:readWrite:true:true']);
  assert.deepEqual(mounts('nfs41-ds'), ['DC0_H1:readOnly:true:true'], 'the NFS 4.1 export is mounted read-only');
  for (const ds of inv.datastores) {
    assert.ok(ds.capacityBytes > 0 && ds.freeBytes > 0 && ds.freeBytes <= ds.capacityBytes, `${ds.name} capacity and free space`);
    assert.match(ds.url, /^\//, `${ds.name} url (vcsim: the backing directory)`);
  }
  assert.deepEqual(inv.privileges, { checked: true, missing: [], hiddenDatastores: [] }, 'the administrator lacks nothing');
  assert.equal(lacksPrivileges(inv), false);
  assert.equal(inv.about.apiType, 'VirtualCenter');
});

test('hosts: product, memory total and used, licence edition; a free ESXi licence is seen as a read-only API', async () => {
  const inv = await discoverAs();
  for (const h of inv.hosts) {
    assert.equal(h.productName, 'VMware ESXi');
    assert.equal(h.productLine, 'embeddedEsx');
    assert.equal(h.connectionState, 'connected');
    assert.ok(h.memoryBytes > 1 << 30, `${h.name} memory size`);
    assert.ok(h.memoryUsedBytes > 0 && h.memoryUsedBytes < h.memoryBytes, `${h.name} memory used (${h.memoryUsedBytes})`);
    assert.deepEqual(h.licence, { editionKey: 'eval', name: 'Evaluation Mode', readOnlyApi: false }, `${h.name} runs on the evaluation licence`);
  }

  // Assign the free licence to DC0_H1 through vCenter's LicenseAssignmentManager.
  const h1 = named(inv.hosts, 'DC0_H1');
  const s = await login();
  try {
    const { licenseManager } = await discoveryManagers(s);
    assert.ok(licenseManager);
    const [lm] = await retrieveObjects(s, [licenseManager], { type: 'LicenseManager', paths: ['licenseAssignmentManager'] });
    const lam = moRefOf(lm?.props.get('licenseAssignmentManager'));
    assert.ok(lam, 'vCenter has a LicenseAssignmentManager');
    await s.transport.call('UpdateAssignedLicense', lam, { entity: h1.ref.value, licenseKey: sim.freeLicenseKey });
  } finally {
    await s.logout();
  }
  const after = await discoverAs();
  assert.equal(named(after.hosts, 'DC0_H1').licence?.editionKey, 'esxBasic');
  assert.equal(named(after.hosts, 'DC0_H1').licence?.readOnlyApi, true);
  assert.equal(named(after.hosts, 'DC0_H0').licence?.readOnlyApi, false, 'the other host keeps its licence');
});

test('VMs: tools status, disk.EnableUUID, disk UUIDs, backings and controllers, datastores, snapshots', async () => {
  const inv = await discoverAs();
  const localDs = named(inv.datastores, 'LocalDS_0').ref;
  const uuids = new Set<string>();
  for (const vm of inv.vms) {
    const mt = vm.name.endsWith('_VM0');
    assert.equal(vm.toolsRunningStatus, mt ? 'guestToolsRunning' : 'guestToolsNotRunning', `${vm.name} tools`);
    assert.equal(vm.toolsStatus, mt ? 'toolsOk' : 'toolsNotRunning');
    assert.equal(vm.enableUuid, vm.name === 'DC0_H0_VM0', `${vm.name} disk.EnableUUID`);
    assert.equal(vm.guestFamily, 'linuxGuest');
    assert.ok(vm.memoryBytes > 0, `${vm.name} memory`);
    assert.deepEqual(vm.datastores, [localDs]);
    assert.equal(vm.snapshotCount, 0);
    assert.equal(vm.disks.length, 1);
    for (const d of vm.disks) {
      assert.match(d.uuid ?? '', /^6000c29[0-9a-f]-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, `${vm.name} disk UUID`);
      uuids.add(d.uuid ?? '');
      assert.equal(d.fileName, `[LocalDS_0] ${vm.name}/disk1.vmdk`);
      assert.equal(d.capacityBytes, 1024 * 1024);
      assert.equal(d.backingType, 'VirtualDiskFlatVer2BackingInfo');
      assert.equal(d.controllerType, 'pvscsi');
    }
  }
  assert.equal(uuids.size, inv.vms.length, 'every disk has its own UUID');

  const vm = named(inv.vms, 'DC0_H1_VM0');
  const s = await login();
  try {
    for (const name of ['before-reprotect', 'nested']) {
      await waitForTask(s, taskOf(await s.transport.call('CreateSnapshot_Task', vm.ref, { name, memory: false, quiesce: false })), { timeoutMs: 30_000 });
    }
  } finally {
    await s.logout();
  }
  const again = await discoverAs();
  assert.equal(named(again.vms, 'DC0_H1_VM0').snapshotCount, 2, 'a snapshot and its child are both counted');
  assert.equal(named(again.vms, 'DC0_H0_VM0').snapshotCount, 0);
});

test('a read-only account is reported as lacking privileges, not as an empty site, and its writes get NoPermission', async () => {
  const inv = await discoverAs(sim.readOnly);
  assert.equal(inv.datastores.length, 0, 'the account cannot list datastores');
  assert.equal(inv.hosts.length, 2, 'it still sees hosts');
  assert.equal(inv.vms.length, 4, 'and VMs');
  assert.equal(lacksPrivileges(inv), true);
  assert.equal(inv.privileges.checked, true);
  assert.deepEqual(inv.privileges.missing, REQUIRED_PRIVILEGES.filter((p) => p !== 'System.View'));
  const admin = await discoverAs();
  assert.deepEqual(inv.privileges.hiddenDatastores, admin.datastores.map((d) => d.ref.value).sort(), 'the datastores hosts refer to are named as hidden');

  const vm = named(admin.vms, 'DC0_H0_VM1');
  const ro = await login(sim.readOnly);
  try {
    await assert.rejects(powerOffVm(ro, vm.ref), (e: unknown) => e instanceof NoPermissionError && e.code === 'VSPHERE_NO_PERMISSION' && /VirtualMachine\.Interact\.PowerOff/.test(e.message));
    await assert.rejects(
      ro.transport.call('ReconfigVM_Task', vm.ref, { spec: data('VirtualMachineConfigSpec', { annotation: 'changed' }) }),
      (e: unknown) => e instanceof NoPermissionError,
    );
  } finally {
    await ro.logout();
  }
  const s = await login();
  try {
    assert.equal(await vmPowerState(s, vm.ref), 'poweredOn', 'the refused write changed nothing');
  } finally {
    await s.logout();
  }
});

test('only the model accounts log in: a wrong password or an unknown user is an InvalidLoginError', async () => {
  for (const user of [
    { username: sim.readOnly.username, password: sim.password },
    { username: 'someone-else', password: sim.password },
  ]) {
    await assert.rejects(login(user), (e: unknown) => e instanceof InvalidLoginError && e.code === 'VSPHERE_INVALID_LOGIN');
  }
});
