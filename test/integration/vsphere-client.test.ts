import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { statfs } from 'node:fs/promises';
import { startVcsim, type Vcsim } from '../helpers/vcsim.js';
import {
  data,
  discover,
  encodeCall,
  InvalidLoginError,
  InvalidPowerStateError,
  ManagedObjectNotFoundError,
  NotAuthenticatedError,
  parseXml,
  powerOffVm,
  powerOnVm,
  ref,
  retrieveServiceContent,
  SoapTransport,
  TlsTrustError,
  VsphereConnectionError,
  vmPowerState,
  VsphereSession,
  type VsphereInventory,
} from '../../src/fabrics/vsphere/index.js';

// The typed vSphere SOAP client against a real vcsim (model: test/vcsim/main.go — one datacenter,
// hosts DC0_H0 and DC0_H1, VMFS datastore LocalDS_0 on both, NFS datastore nfs-ds on DC0_H0 only,
// NFS 4.1 datastore nfs41-ds on DC0_H1 only, two powered-on VMs per host, each with one 1 MiB disk;
// tools run in the *_VM0 VMs).

let sim: Vcsim;
before(async () => {
  sim = await startVcsim();
});
after(async () => {
  await sim?.stop();
});

const login = () => VsphereSession.login({ url: sim.url, tls: { caPem: sim.certPem }, username: sim.username, password: sim.password });

test('requests carry xsi:type on data objects, and responses resolve xsi:type by namespace, not prefix', () => {
  const xml = encodeCall('RetrievePropertiesEx', { type: 'PropertyCollector', value: 'pc' }, {
    specSet: data('PropertyFilterSpec', { objectSet: [data('ObjectSpec', { obj: ref({ type: 'VirtualMachine', value: 'vm-1' }), skip: false })] }),
  });
  assert.match(xml, /<specSet xsi:type="PropertyFilterSpec"><objectSet xsi:type="ObjectSpec"><obj type="VirtualMachine">vm-1<\/obj><skip>false<\/skip><\/objectSet><\/specSet>/);
  assert.match(xml, /<_this type="PropertyCollector">pc<\/_this>/);
  const doc = parseXml(
    '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" xmlns:other="urn:other">' +
      '<e:Body><val XMLSchema-instance:type="xsd:string" other:type="nope" type="HostSystem">a &amp; b</val></e:Body></e:Envelope>',
  );
  const val = doc.children[0]?.children[0];
  assert.equal(val?.xsiType, 'string');
  assert.equal(val?.attrs['type'], 'HostSystem', 'the moref type attribute is not the xsi one');
  assert.equal(val?.text, 'a & b');
});

test('login keeps the vmware_soap_session cookie; logout ends the session', async () => {
  const s = await login();
  assert.equal(s.content.about.apiType, 'VirtualCenter');
  assert.match(s.transport.sessionCookie ?? '', /.+/);
  const inv = await discover(s);
  assert.ok(inv.vms.length > 0, 'a logged-in session reads the inventory');
  await s.logout();
  assert.equal(s.transport.sessionCookie, undefined);

  // Without a session the server refuses anything but the service content, as a typed error.
  const anon = new SoapTransport({ url: sim.url, tls: { caPem: sim.certPem } });
  try {
    const content = await retrieveServiceContent(anon);
    await assert.rejects(anon.call('CreateContainerView', content.viewManager, { container: ref(content.rootFolder), type: ['VirtualMachine'], recursive: true }), NotAuthenticatedError);
  } finally {
    await anon.close();
  }
});

test('a wrong password is an InvalidLoginError', async () => {
  await assert.rejects(
    VsphereSession.login({ url: sim.url, tls: { caPem: sim.certPem }, username: sim.username, password: 'not-the-password' }),
    (e: unknown) => e instanceof InvalidLoginError && e.code === 'VSPHERE_INVALID_LOGIN' && e.faultType === 'InvalidLogin',
  );
});

test('TLS is verified by default; a pinned thumbprint or the explicit insecure flag admit a self-signed vCenter', async () => {
  const creds = { url: sim.url, username: sim.username, password: sim.password };
  await assert.rejects(VsphereSession.login(creds), VsphereConnectionError, 'a self-signed certificate is refused without a CA');
  await assert.rejects(VsphereSession.login({ ...creds, tls: { thumbprint: '00'.repeat(20) } }), TlsTrustError);
  for (const tls of [{ thumbprint: sim.thumbprint }, { thumbprint: sim.thumbprint.replace(/:/g, '').toLowerCase() }, { insecure: true }]) {
    const s = await VsphereSession.login({ ...creds, tls });
    assert.equal(s.content.about.apiType, 'VirtualCenter');
    await s.logout();
  }
});

const byName = <T extends { name: string }>(xs: readonly T[]) => [...xs].sort((a, b) => a.name.localeCompare(b.name));

test("discovery returns the model's hosts, datastores and VMs with their types and sizes", async () => {
  const s = await login();
  try {
    const inv = await discover(s);
    assert.deepEqual(inv.datacenters.map((d) => d.name), ['DC0']);

    const hosts = byName(inv.hosts);
    assert.deepEqual(hosts.map((h) => h.name), ['DC0_H0', 'DC0_H1']);
    for (const h of hosts) {
      assert.equal(h.productName, 'VMware ESXi');
      assert.match(h.productVersion, /^\d+\.\d+\.\d+$/);
      assert.ok(h.memoryBytes > 1 << 30, `${h.name} has its memory size`);
      assert.equal(h.datacenter, 'DC0');
    }

    const [local, nfs] = [inv.datastores.find((d) => d.name === 'LocalDS_0'), inv.datastores.find((d) => d.name === 'nfs-ds')];
    assert.ok(local && nfs, 'both datastores are found');
    assert.equal(inv.datastores.length, 3);
    assert.equal(local.type, 'VMFS');
    assert.equal(nfs.type, 'NFS');
    for (const ds of [local, nfs]) {
      // vcsim backs each datastore with a local directory and reports that file system's size.
      const fs = await statfs(ds.url);
      assert.equal(ds.capacityBytes, fs.blocks * fs.bsize, `${ds.name} capacity`);
      assert.ok(ds.freeBytes > 0 && ds.freeBytes <= ds.capacityBytes, `${ds.name} free space`);
      assert.equal(ds.accessible, true);
    }
    const hostName = (r: { value: string }) => inv.hosts.find((h) => h.ref.value === r.value)?.name;
    assert.deepEqual(local.hosts.map(hostName).sort(), ['DC0_H0', 'DC0_H1']);
    assert.deepEqual(nfs.hosts.map(hostName), ['DC0_H0'], 'mounts come from the hosts, the NFS one is on H0 only');

    const vms = byName(inv.vms);
    assert.deepEqual(vms.map((v) => v.name), ['DC0_H0_VM0', 'DC0_H0_VM1', 'DC0_H1_VM0', 'DC0_H1_VM1']);
    for (const vm of vms) {
      assert.equal(vm.powerState, 'poweredOn');
      assert.match(vm.uuid ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.equal(vm.guestFamily, 'linuxGuest');
      assert.equal(vm.toolsRunningStatus, vm.name.endsWith('_VM0') ? 'guestToolsRunning' : 'guestToolsNotRunning');
      assert.equal(hostName(vm.host ?? { value: '' }), vm.name.slice(0, 'DC0_H0'.length));
      assert.equal(vm.disks.length, 1);
      const [disk] = vm.disks;
      assert.equal(disk?.fileName, `[LocalDS_0] ${vm.name}/disk1.vmdk`);
      assert.equal(disk?.capacityBytes, 1024 * 1024);
      assert.equal(disk?.datastore?.value, local.ref.value);
    }
    assert.equal(new Set(vms.map((v) => v.uuid)).size, vms.length, 'config.uuid differs per VM');
  } finally {
    await s.logout();
  }
});

test('a small maxObjects pages the results through ContinueRetrievePropertiesEx, with the same inventory', async () => {
  const s = await login();
  try {
    const whole: number[] = [];
    const paged: number[] = [];
    const a = await discover(s, { onPage: (n) => whole.push(n) });
    const b = await discover(s, { maxObjects: 3, onPage: (n) => paged.push(n) });
    // Datacenters, then one datacenter's 2 hosts + 3 datastores + 4 VMs.
    assert.deepEqual(whole, [1, 9]);
    assert.deepEqual(paged, [1, 3, 3, 3]);
    const sorted = (inv: VsphereInventory) => ({ ...inv, hosts: byName(inv.hosts), datastores: byName(inv.datastores), vms: byName(inv.vms) });
    // Free space is read live and may move between the two reads.
    const stable = (inv: VsphereInventory) => ({ ...sorted(inv), datastores: sorted(inv).datastores.map((d) => ({ ...d, freeBytes: 0 })) });
    assert.deepEqual(stable(b), stable(a));
  } finally {
    await s.logout();
  }
});

test('power off and on are tasks waited to completion; a wrong state is an InvalidPowerStateError', async () => {
  const s = await login();
  try {
    const vm = (await discover(s)).vms.find((v) => v.name === 'DC0_H1_VM1');
    assert.ok(vm);
    assert.equal(await vmPowerState(s, vm.ref), 'poweredOn');
    await powerOffVm(s, vm.ref, { timeoutMs: 30_000 });
    assert.equal(await vmPowerState(s, vm.ref), 'poweredOff');
    await assert.rejects(powerOffVm(s, vm.ref), (e: unknown) => e instanceof InvalidPowerStateError && e.code === 'VSPHERE_INVALID_POWER_STATE');
    await powerOnVm(s, vm.ref, { timeoutMs: 30_000 });
    assert.equal(await vmPowerState(s, vm.ref), 'poweredOn');
    await assert.rejects(powerOnVm(s, { type: 'VirtualMachine', value: 'vm-does-not-exist' }), ManagedObjectNotFoundError);
  } finally {
    await s.logout();
  }
});
