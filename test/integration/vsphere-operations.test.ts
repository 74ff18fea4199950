import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startVcsim, type Vcsim } from '../helpers/vcsim.js';
import {
  attachDisks,
  createFlatVmdk,
  createSnapshot,
  createVm,
  DatastorePathError,
  decodeVmDevices,
  detachDisks,
  discover,
  FileNotFoundError,
  flattenSnapshots,
  hostPlacement,
  listSnapshots,
  listVmDisks,
  localFileForDatastorePath,
  mergeSnapshots,
  moRefOf,
  newDiskFileName,
  numberOf,
  openFlatVmdk,
  retrieveObjects,
  shutdownGuest,
  textOf,
  vmPowerState,
  VmSpecError,
  VsphereSession,
  type MoRef,
  type NewVmSpec,
  type VmDisk,
  type VsphereInventory,
} from '../../src/fabrics/vsphere/index.js';

// The vSphere operations the lifecycle needs, against a real vcsim (model: test/vcsim/main.go —
// hosts DC0_H0 and DC0_H1, VMFS datastore LocalDS_0 on both, NFS datastore nfs-ds on DC0_H0, two
// powered-on VMs per host with one 1 MiB disk on a pvscsi controller). Every result is read back
// through the PropertyCollector; vcsim keeps datastore files in local directories, which the tests
// also inspect.

const run = promisify(execFile);
const MiB = 1024 * 1024;

let sim: Vcsim;
let s: VsphereSession;
let inv: VsphereInventory;
let scratch: string;

before(async () => {
  sim = await startVcsim();
  s = await VsphereSession.login({ url: sim.url, tls: { caPem: sim.certPem }, username: sim.username, password: sim.password });
  inv = await discover(s);
  scratch = await mkdtemp(join(tmpdir(), 'boomerang-vsphere-ops-'));
});
after(async () => {
  await s?.logout().catch(() => undefined);
  await sim?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const vmNamed = (name: string): MoRef => {
  const vm = inv.vms.find((v) => v.name === name);
  assert.ok(vm, `VM ${name} is in the model`);
  return vm.ref;
};
const hostNamed = (name: string): MoRef => {
  const h = inv.hosts.find((x) => x.name === name);
  assert.ok(h, `host ${name} is in the model`);
  return h.ref;
};
const datastoreNamed = (name: string) => {
  const d = inv.datastores.find((x) => x.name === name);
  assert.ok(d, `datastore ${name} is in the model`);
  return d;
};

async function targetSpec(name: string, disks: NewVmSpec['disks'], scsiControllerType: NewVmSpec['scsiControllerType'] = 'lsilogic-sas'): Promise<NewVmSpec> {
  const host = hostNamed('DC0_H0');
  const placement = await hostPlacement(s, host);
  const ds = datastoreNamed('LocalDS_0');
  return { name, guestId: 'otherLinux64Guest', memoryMB: 512, numCPUs: 2, scsiControllerType, disks, host, datastore: { ref: ds.ref, name: ds.name }, folder: placement.vmFolder, pool: placement.pool };
}

/** The VM's disks as the PropertyCollector reports them now. */
async function devicesOf(vm: MoRef) {
  const [o] = await retrieveObjects(s, [vm], { type: 'VirtualMachine', paths: ['config.hardware.device'] });
  return decodeVmDevices(o?.props.get('config.hardware.device'));
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const exists = (p: string) => stat(p).then(() => true, () => false);
const flatOf = (descriptor: string) => descriptor.replace(/\.vmdk$/, '-flat.vmdk');

test("the MT host's placement is its datacenter, that datacenter's VM folder and the host's resource pool", async () => {
  const p = await hostPlacement(s, hostNamed('DC0_H0'));
  assert.equal(p.datacenter.value, inv.datacenters[0]?.ref.value);
  assert.equal(p.vmFolder.type, 'Folder');
  assert.equal(p.pool.type, 'ResourcePool');
  const [dc] = await retrieveObjects(s, [p.datacenter], { type: 'Datacenter', paths: ['vmFolder'] });
  assert.equal(moRefOf(dc?.props.get('vmFolder'))?.value, p.vmFolder.value);
});

test('createVm makes a VM on the host and datastore with its disks at the given sizes, thin and eager-zeroed', async () => {
  const spec = await targetSpec('bmr-target', [
    { sizeBytes: 3 * MiB, provisioning: 'thin' },
    { sizeBytes: 2 * MiB, provisioning: 'eagerZeroedThick' },
  ]);
  const created = await createVm(s, spec, { timeoutMs: 30_000 });
  assert.equal(created.vm.type, 'VirtualMachine');

  const [o] = await retrieveObjects(s, [created.vm], {
    type: 'VirtualMachine',
    paths: ['name', 'config.guestId', 'config.hardware.numCPU', 'config.hardware.memoryMB', 'config.hardware.device', 'runtime.host', 'runtime.powerState'],
  });
  assert.ok(o);
  assert.equal(textOf(o.props.get('name')), 'bmr-target');
  assert.equal(textOf(o.props.get('config.guestId')), 'otherLinux64Guest');
  assert.equal(numberOf(o.props.get('config.hardware.numCPU')), 2);
  assert.equal(numberOf(o.props.get('config.hardware.memoryMB')), 512);
  assert.equal(moRefOf(o.props.get('runtime.host'))?.value, spec.host.value);
  assert.equal(textOf(o.props.get('runtime.powerState')), 'poweredOff');

  const devices = decodeVmDevices(o.props.get('config.hardware.device'));
  assert.deepEqual(devices.scsiControllers.map((c) => [c.type, c.busNumber]), [['lsilogic-sas', 0]]);
  assert.deepEqual(
    devices.disks.map((d) => [d.fileName, d.capacityBytes, d.thinProvisioned, d.eagerlyScrub, d.controller?.type, d.unitNumber]),
    [
      ['[LocalDS_0] bmr-target/bmr-target_0.vmdk', 3 * MiB, true, false, 'lsilogic-sas', 0],
      ['[LocalDS_0] bmr-target/bmr-target_1.vmdk', 2 * MiB, false, true, 'lsilogic-sas', 1],
    ],
  );
  assert.deepEqual(created.disks, devices.disks, 'createVm returns what the server reports');
  for (const d of devices.disks) {
    assert.match(d.uuid ?? '', /^6000C29[0-9a-f]-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(d.datastore?.value, spec.datastore.ref.value);
    const local = await localFileForDatastorePath(s, d.fileName);
    assert.ok((await exists(local)) && (await exists(flatOf(local))), `${d.fileName}: descriptor and extent exist on the datastore`);
  }
  assert.notEqual(devices.disks[0]?.uuid, devices.disks[1]?.uuid);
  assert.equal(newDiskFileName('LocalDS_0', 'bmr-target', 1), devices.disks[1]?.fileName);

  // Discovery sees the new VM on the MT's host too.
  const again = (await discover(s)).vms.find((v) => v.name === 'bmr-target');
  assert.equal(again?.host?.value, spec.host.value);
  assert.deepEqual(again?.disks.map((d) => d.capacityBytes), [3 * MiB, 2 * MiB]);
});

test('an invalid VM spec is a VmSpecError and creates nothing', async () => {
  const count = (await discover(s)).vms.length;
  const good = await targetSpec('bmr-bad', [{ sizeBytes: MiB, provisioning: 'thin' }]);
  for (const spec of [
    { ...good, name: '' },
    { ...good, name: 'a/b' },
    { ...good, name: 'x[1]' },
    { ...good, memoryMB: 0 },
    { ...good, numCPUs: 0 },
    { ...good, guestId: 'not a guest id' },
    { ...good, disks: [] },
    { ...good, disks: [{ sizeBytes: 1000, provisioning: 'thin' as const }] },
  ]) {
    await assert.rejects(createVm(s, spec), (e: unknown) => e instanceof VmSpecError && e.code === 'VSPHERE_BAD_VM_SPEC', JSON.stringify({ ...spec, host: undefined }));
  }
  assert.equal((await discover(s)).vms.length, count);
});

test("hot-adding the target's VMDKs to the MT lists them there; detaching removes them and keeps the files and their data", async () => {
  const target = await createVm(s, await targetSpec('bmr-attach', [
    { sizeBytes: 2 * MiB, provisioning: 'thin' },
    { sizeBytes: 1 * MiB, provisioning: 'eagerZeroedThick' },
  ]));
  const mt = vmNamed('DC0_H0_VM0');
  const before = await devicesOf(mt);
  assert.equal(before.disks.length, 1);

  // Data the MT wrote into disk 0: must survive attach and detach untouched.
  const local0 = await localFileForDatastorePath(s, target.disks[0]?.fileName ?? '');
  await createFlatVmdk(local0, { sizeBytes: 2 * MiB, uuid: target.disks[0]?.uuid });
  const { disk } = await openFlatVmdk(local0);
  await disk.write(MiB, Buffer.alloc(64 * 1024, 0x7e));
  await disk.close();
  const dataBefore = sha256(await readFile(flatOf(local0)));

  const files = target.disks.map((d) => ({ fileName: d.fileName, capacityBytes: d.capacityBytes }));
  const attached = await attachDisks(s, mt, files, { timeoutMs: 30_000 });
  const during = await devicesOf(mt);
  assert.equal(during.disks.length, 3);
  assert.deepEqual(attached, during.disks.slice(1), 'attachDisks returns the disks as the server lists them');
  const pv = before.scsiControllers[0];
  assert.ok(pv);
  for (const [i, d] of attached.entries()) {
    assert.equal(d.fileName, target.disks[i]?.fileName);
    assert.equal(d.capacityBytes, target.disks[i]?.capacityBytes);
    assert.equal(d.controllerKey, pv.key, 'on the free units of the existing controller');
  }
  assert.deepEqual(attached.map((d) => d.unitNumber), [1, 2]);

  // Attaching what is already attached changes nothing.
  const again = await attachDisks(s, mt, files);
  assert.deepEqual(again.map((d) => d.key), attached.map((d) => d.key));
  assert.equal((await devicesOf(mt)).disks.length, 3);

  const detached = await detachDisks(s, mt, files.map((f) => f.fileName), { timeoutMs: 30_000 });
  assert.deepEqual(detached, files.map((f) => f.fileName));
  assert.deepEqual((await devicesOf(mt)).disks, before.disks, 'the MT is back to its own disk');
  assert.deepEqual(await detachDisks(s, mt, files.map((f) => f.fileName)), [], 'detaching what is not attached is a no-op');

  for (const d of target.disks) {
    const local = await localFileForDatastorePath(s, d.fileName);
    assert.ok((await exists(local)) && (await exists(flatOf(local))), `${d.fileName} is still on the datastore`);
  }
  assert.equal(sha256(await readFile(flatOf(local0))), dataBefore, 'the data is unchanged');
  assert.deepEqual((await listVmDisks(s, target.vm)).map((d) => d.fileName), files.map((f) => f.fileName), 'the target VM keeps its disks');
});

test('a missing VMDK or a malformed path is refused and leaves the MT unchanged', async () => {
  const mt = vmNamed('DC0_H0_VM0');
  const before = await devicesOf(mt);
  await assert.rejects(attachDisks(s, mt, [{ fileName: '[LocalDS_0] nowhere/missing.vmdk', capacityBytes: MiB }]), FileNotFoundError);
  await assert.rejects(attachDisks(s, mt, [{ fileName: 'LocalDS_0/x.vmdk' }]), (e: unknown) => e instanceof DatastorePathError && e.code === 'VSPHERE_BAD_DATASTORE_PATH');
  await assert.rejects(detachDisks(s, mt, ['[LocalDS_0] ../x.vmdk']), DatastorePathError);
  assert.deepEqual(await devicesOf(mt), before);
});

test('when the MT controller is full, hot-add puts the rest on a new SCSI controller', async () => {
  const mt = vmNamed('DC0_H0_VM1');
  const before = await devicesOf(mt);
  assert.equal(before.scsiControllers.length, 1);
  const ds = datastoreNamed('LocalDS_0');
  await mkdir(join(ds.url, 'bmr-many'));
  const files: string[] = [];
  for (let i = 0; i < 15; i++) {
    const fileName = `[LocalDS_0] bmr-many/d${i}.vmdk`;
    await createFlatVmdk(await localFileForDatastorePath(s, fileName), { sizeBytes: MiB });
    files.push(fileName);
  }
  const attached = await attachDisks(s, mt, files.map((fileName) => ({ fileName, capacityBytes: MiB })), { newControllerType: 'lsilogic-sas' });
  const during = await devicesOf(mt);
  assert.equal(during.disks.length, 16);
  assert.deepEqual(during.scsiControllers.map((c) => [c.type, c.busNumber]), [['pvscsi', 0], ['lsilogic-sas', 1]]);
  const sas = during.scsiControllers[1];
  assert.equal(attached.filter((d) => d.controllerKey === before.scsiControllers[0]?.key).length, 14, 'units 1–15 but 7 of the first controller');
  assert.deepEqual(attached.filter((d) => d.controllerKey === sas?.key).map((d) => [d.fileName, d.unitNumber]), [['[LocalDS_0] bmr-many/d14.vmdk', 0]]);
  assert.ok(!during.disks.some((d) => d.unitNumber === 7));
  assert.equal(new Set(during.disks.map((d) => `${d.controllerKey}:${d.unitNumber}`)).size, 16, 'no two disks share a slot');

  assert.equal((await detachDisks(s, mt, files)).length, 15);
  assert.deepEqual((await devicesOf(mt)).disks, before.disks);
});

test('snapshots: a created tree is listed; merging removes them all, and again is a no-op', async () => {
  const target = await createVm(s, await targetSpec('bmr-snap', [{ sizeBytes: MiB, provisioning: 'thin' }]));
  assert.deepEqual(await listSnapshots(s, target.vm), { current: undefined, roots: [] });
  const a = await createSnapshot(s, target.vm, 'before-reprotect', { description: 'made by a test', timeoutMs: 30_000 });
  const b = await createSnapshot(s, target.vm, 'second');
  const tree = await listSnapshots(s, target.vm);
  assert.equal(tree.current?.value, b.value);
  assert.deepEqual(tree.roots.map((r) => [r.ref.value, r.name, r.description, r.state]), [[a.value, 'before-reprotect', 'made by a test', 'poweredOff']]);
  assert.deepEqual(tree.roots[0]?.children.map((c) => [c.ref.value, c.name]), [[b.value, 'second']]);
  assert.equal(flattenSnapshots(tree).length, 2);

  assert.deepEqual(await mergeSnapshots(s, target.vm, { timeoutMs: 30_000 }), { removed: 2, consolidated: false });
  assert.deepEqual(await listSnapshots(s, target.vm), { current: undefined, roots: [] });
  assert.deepEqual(await mergeSnapshots(s, target.vm), { removed: 0, consolidated: false });
  assert.deepEqual(await listVmDisks(s, target.vm), target.disks, 'the base disks remain');
});

test('guest shutdown powers the VM off; a VM already off is left alone', async () => {
  const vm = vmNamed('DC0_H1_VM0');
  assert.equal(await vmPowerState(s, vm), 'poweredOn');
  assert.equal(await shutdownGuest(s, vm, { timeoutMs: 30_000 }), 'guestShutdown');
  assert.equal(await vmPowerState(s, vm), 'poweredOff');
  assert.equal(await shutdownGuest(s, vm, { timeoutMs: 30_000, powerOffOnTimeout: true }), 'alreadyOff');
  assert.equal(await vmPowerState(s, vm), 'poweredOff');
});

test("a flat VMDK written where the datastore path maps is a valid VMDK for qemu, with the data written through FileDisk", async () => {
  const size = 4 * MiB;
  const target = await createVm(s, await targetSpec('bmr-flat', [{ sizeBytes: size, provisioning: 'thin' }], 'pvscsi'));
  const vdisk = target.disks[0] as VmDisk;
  const local = await localFileForDatastorePath(s, vdisk.fileName);
  assert.equal(local, join(datastoreNamed('LocalDS_0').url, 'bmr-flat', 'bmr-flat_0.vmdk'));
  assert.equal((await stat(local)).size, 0, "vcsim leaves a 0-byte stub: the data plane writes the content");

  const descriptor = await createFlatVmdk(local, { sizeBytes: vdisk.capacityBytes, uuid: vdisk.uuid, thin: vdisk.thinProvisioned });
  assert.equal(descriptor.sizeBytes, size);
  const info = JSON.parse((await run('qemu-img', ['info', '--output=json', local])).stdout) as {
    format: string;
    'virtual-size': number;
    'format-specific'?: { data?: { 'create-type'?: string } };
  };
  assert.equal(info.format, 'vmdk');
  assert.equal(info['virtual-size'], size);
  assert.equal(info['format-specific']?.data?.['create-type'], 'monolithicFlat');
  assert.match(await readFile(local, 'utf8'), new RegExp(`ddb.uuid = "${(vdisk.uuid ?? 'x').replace(/-/g, '').toLowerCase().match(/../g)?.slice(0, 8).join(' ')}-`));

  // Data through the BlockDevice; the whole disk as qemu reads it must hash the same.
  const expected = Buffer.alloc(size);
  const writes: [number, Buffer][] = [
    [0, Buffer.alloc(64 * 1024, 0x5a)],
    [MiB + 512, createHash('sha512').update('boomerang').digest()],
    [size - 4096, Buffer.alloc(4096, 0xa5)],
  ];
  const { disk } = await openFlatVmdk(local);
  try {
    assert.equal(disk.size, size);
    for (const [at, data] of writes) {
      await disk.write(at, data);
      data.copy(expected, at);
    }
    await disk.flush();
  } finally {
    await disk.close();
  }
  const raw = join(scratch, 'bmr-flat.raw');
  await run('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', local, raw]);
  assert.equal(sha256(await readFile(raw)), sha256(expected), 'qemu reads back exactly what FileDisk wrote');
  const check = await run('qemu-io', ['-r', '-f', 'vmdk', '-c', `read -P 0xa5 ${size - 4096} 4096`, local]);
  assert.match(check.stdout, /read 4096\/4096 bytes/);
  assert.doesNotMatch(check.stdout + check.stderr, /fail/i);

  // And the other way: what qemu writes into the VMDK, FileDisk reads.
  await run('qemu-io', ['-f', 'vmdk', '-c', `write -P 0xc3 ${2 * MiB} 65536`, local]);
  Buffer.alloc(65536, 0xc3).copy(expected, 2 * MiB);
  const reopened = await openFlatVmdk(local, { readOnly: true });
  try {
    assert.equal(sha256(await reopened.disk.read(0, size)), sha256(expected));
  } finally {
    await reopened.disk.close();
  }
});

test('datastore paths map to the local directory of their datastore (VMFS and NFS); unknown or malformed ones are typed errors', async () => {
  const nfs = datastoreNamed('nfs-ds');
  assert.equal(await localFileForDatastorePath(s, '[nfs-ds] vm/vm_0.vmdk'), join(nfs.url, 'vm', 'vm_0.vmdk'));
  await assert.rejects(localFileForDatastorePath(s, '[no-such-ds] vm/vm_0.vmdk'), (e: unknown) => e instanceof DatastorePathError && e.code === 'VSPHERE_DATASTORE_NOT_FOUND');
  for (const bad of ['[LocalDS_0]', 'LocalDS_0 vm/x.vmdk', '[LocalDS_0] ../../etc/passwd', '[LocalDS_0] /etc/passwd']) {
    await assert.rejects(localFileForDatastorePath(s, bad), (e: unknown) => e instanceof DatastorePathError && e.code === 'VSPHERE_BAD_DATASTORE_PATH', bad);
  }
});
