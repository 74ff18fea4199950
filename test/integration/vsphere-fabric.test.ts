import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startVcsim, type Vcsim } from '../helpers/vcsim.js';
import { withDir } from '../helpers/stack.js';
import { VsphereFabric } from '../../src/fabrics/vsphere/fabric.js';
import { createSnapshot, flattenSnapshots, queryVmEvents, listSnapshots, listVmDisks, NotAuthenticatedError, ref, vmPowerState } from '../../src/fabrics/vsphere/index.js';
import { createRecoveryVm } from '../../src/fabrics/vsphere/recovery-vm.js';
import type { FabricMachine } from '../../src/fabrics/fabric.js';

// The vSphere fabric's power operations against vcsim: the VM's power state is vCenter's, and the
// guest hooks (the lab's stand-in for a guest OS) run after power-on and before power-off.

let sim: Vcsim;
let fabric: VsphereFabric;
before(async () => {
  sim = await startVcsim();
  fabric = new VsphereFabric({ url: sim.url, tls: { caPem: sim.certPem }, username: sim.username, password: sim.password }, { masterTargetVms: { 'mt-a': 'DC0_H0_VM1' } });
});
after(async () => {
  await fabric?.close();
  await sim?.stop();
});

const signal = new AbortController().signal;

/** A hook that appends its action to `file`: the order of hooks and power operations is observable. */
function recorder(file: string, label: string): string[] {
  return [process.execPath, '-e', `require('node:fs').appendFileSync(process.argv[1], process.argv[2] + ' ' + process.env.BOOMERANG_ACTION + '\\n')`, file, label];
}

test('power stop runs the guest hook first, then powers the VM off; start powers on, then runs the guest hook', async () => {
  await withDir('vsphere-fabric', async (dir) => {
    const log = join(dir, 'hooks.log');
    const machine: FabricMachine = { id: 'm1', name: 'web01', power: { vm: 'DC0_H0_VM0', guest: { start: recorder(log, 'guest'), stop: recorder(log, 'guest') } } };
    const vm = await fabric.findVm('DC0_H0_VM0');
    assert.equal(await fabric.powerState(machine, signal), 'running');

    await fabric.power(machine, 'stop', signal);
    assert.equal(await fabric.powerState(machine, signal), 'stopped');
    assert.equal(await fabric.withSession((s) => vmPowerState(s, vm)), 'poweredOff');
    await fabric.power(machine, 'stop', signal); // idempotent: already off
    assert.equal(await fabric.powerState(machine, signal), 'stopped');

    await fabric.power(machine, 'start', signal);
    assert.equal(await fabric.powerState(machine, signal), 'running');
    assert.equal(await readFile(log, 'utf8'), 'guest stop\nguest stop\nguest start\n');
  });
});

test('a VM vCenter does not know is a typed error; a machine without a VM name too', async () => {
  await assert.rejects(fabric.power({ id: 'm2', name: 'ghost', power: { vm: 'no-such-vm' } }, 'start', signal), { code: 'VSPHERE_VM_NOT_FOUND' });
  await assert.rejects(fabric.powerState({ id: 'm3', name: 'bare', power: {} }, signal), { code: 'VSPHERE_MACHINE' });
});

test('a session vCenter dropped is opened again', async () => {
  // Ends the session on the server only, as an idle timeout does: the client still holds the cookie.
  const old = await fabric.withSession(async (s) => s);
  await old.transport.call('Logout', old.content.sessionManager, {});
  const listVms = (session: typeof old) => session.transport.call('CreateContainerView', session.content.viewManager, { container: ref(session.content.rootFolder), type: ['VirtualMachine'], recursive: true });
  await assert.rejects(listVms(old), NotAuthenticatedError);
  const machine: FabricMachine = { id: 'm4', name: 'db01', power: { vm: 'DC0_H1_VM0' } };
  assert.equal(await fabric.powerState(machine, signal), 'running');
  assert.notEqual(await fabric.withSession(async (s) => s), old);
});

test('lending disks merges the VM’s snapshots and hot-adds its disks to the MT’s VM; returning detaches them and keeps the files', async () => {
  const MiB = 1024 * 1024;
  const created = await fabric.withSession((s) => createRecoveryVm(s, { name: 'lend01', host: 'DC0_H0', datastore: 'LocalDS_0', diskSizes: [4 * MiB, 8 * MiB] }));
  const vm = created.vm;
  await fabric.withSession((s) => createSnapshot(s, vm, 'before-failover'));
  const machine: FabricMachine = { id: 'm5', name: 'lend01', power: { vm: 'lend01' } };
  const disks = created.disks.map((d, i) => ({ diskId: `disk${i}`, path: d.localPath, sizeBytes: d.capacityBytes }));
  const mtVm = await fabric.findVm('DC0_H0_VM1');
  const mtFiles = async () => (await fabric.withSession((s) => listVmDisks(s, mtVm))).map((d) => d.fileName);

  const reconfigured = async () => (await fabric.withSession((s) => queryVmEvents(s, mtVm, { types: ['VmReconfiguredEvent'] }))).length;
  const before = await reconfigured();
  await fabric.lendDisksToMt(machine, 'mt-a', disks, signal);
  await fabric.lendDisksToMt(machine, 'mt-a', disks, signal); // a resumed task lends again: no change
  assert.equal(await reconfigured(), before + 1, 'one reconfiguration of the MT’s VM for both lends');
  assert.deepEqual((await mtFiles()).filter((f) => f.includes('lend01')), created.disks.map((d) => d.fileName));
  assert.equal(flattenSnapshots(await fabric.withSession((s) => listSnapshots(s, vm))).length, 0, 'snapshots merged');

  await fabric.returnDisksFromMt(machine, 'mt-a', disks, signal);
  await fabric.returnDisksFromMt(machine, 'mt-a', disks, signal);
  assert.equal(await reconfigured(), before + 2);
  assert.deepEqual((await mtFiles()).filter((f) => f.includes('lend01')), []);
  for (const d of created.disks) await access(d.localPath); // never deleted
  assert.equal((await fabric.withSession((s) => listVmDisks(s, vm))).length, 2, 'the VM keeps its disks');

  await assert.rejects(fabric.lendDisksToMt(machine, 'mt-a', [{ diskId: 'x', path: '/nowhere-flat.vmdk', sizeBytes: MiB }], signal), { code: 'VSPHERE_DISK_NOT_ON_VM' });
  await assert.rejects(fabric.lendDisksToMt(machine, 'mt-unknown', disks, signal), { code: 'VSPHERE_MT_VM_UNKNOWN' });
});
