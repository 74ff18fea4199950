import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startLab } from '../helpers/lab.js';
import { startVcsim } from '../helpers/vcsim.js';
import { VsphereFabric } from '../../src/fabrics/vsphere/fabric.js';
import { listVmDisks, queryVmEvents, vmPowerState } from '../../src/fabrics/vsphere/index.js';

// The lifecycle with site A on vSphere (vcsim): each machine is a VM on host DC0_H0 whose disk is a
// VMDK on LocalDS_0, and site A's master target stands for the VM DC0_H0_VM0 (tools running,
// disk.EnableUUID). Replication goes to the physical site B; failover, commit, then reprotect
// back to vSphere: the VM is powered off, its disk hot-added to the MT's VM and only the
// differences written into it; failback detaches the disk and powers the VM on. The drill compares whole-disk sha256 after every step. Then the
// same to the alternate location: a new VM created on the MT's host.
test('reprotect to vSphere and failback: the VM powers on with its disk, byte for byte', async (t) => {
  const sim = await startVcsim();
  const vsphere = { url: sim.url, caPem: sim.certPem, username: sim.username, password: sim.password, host: 'DC0_H0', datastore: 'LocalDS_0', mtVm: 'DC0_H0_VM0' };
  const fabric = new VsphereFabric({ url: sim.url, tls: { caPem: sim.certPem }, username: sim.username, password: sim.password });
  try {
    const { lab, drill, lines, done } = await startLab({ machines: ['web01'], vsphere });
    try {
      const report = await drill.run();
      t.diagnostic(lines.join('\n'));
      assert.equal(report.ok, true, lines.join('\n'));
      assert.deepEqual(
        report.steps.map((s) => s.step),
        ['enable', 'failover', 'commit', 'reprotect (original)', 'failback', 'commit', 'reprotect (original)'],
      );
      const reprotect = report.steps.find((s) => s.step === 'reprotect (original)')!;
      assert.ok(reprotect.bytesMoved > 0 && reprotect.bytesMoved < lab.o.diskBytes, `reprotect to vSphere applied ${reprotect.bytesMoved} bytes: only what differs`);

      // After failback (and the next reprotect away from it) the VM runs on its own disk, which
      // the master target's VM no longer holds.
      const vm = await fabric.findVm('web01');
      assert.equal(await fabric.withSession((s) => vmPowerState(s, vm)), 'poweredOn');
      const disks = await fabric.withSession((s) => listVmDisks(s, vm));
      assert.deepEqual(disks.map((d) => d.fileName), ['[LocalDS_0] web01/web01_0.vmdk']);
      const mtVm = await fabric.findVm('DC0_H0_VM0');
      const mtDisks = await fabric.withSession((s) => listVmDisks(s, mtVm));
      assert.ok(!mtDisks.some((d) => d.fileName.includes('web01')), `the MT's VM still holds ${mtDisks.map((d) => d.fileName).join(', ')}`);
      // The MT's VM held the disk between reprotect and failback: one hot-add, one removal.
      const reconfigs = await fabric.withSession((s) => queryVmEvents(s, mtVm, { types: ['VmReconfiguredEvent'] }));
      assert.equal(reconfigs.length, 2, reconfigs.map((e) => e.message).join('; '));

      // Once more, to the alternate location: a new VM on the MT's host (its datastore), the old
      // VM left as it is; failback powers the new VM on, booting on the disk site B shut down on.
      const m = lab.state.machines[0]!;
      const run = async (operation: string, body: object = {}) => drill.waitJob((await drill.operate(m.itemId!, operation, body)).id);
      await run('failover', { point: 'latest', shutdownSource: true });
      await drill.compareSwitch(m, 'a', 'b');
      await run('commit');
      await run('reprotect', { location: 'alternate' });
      const recovered = await fabric.findVm('web01-recovered');
      const newDisks = await fabric.withSession((s) => listVmDisks(s, recovered));
      assert.deepEqual(newDisks.map((d) => [d.fileName, d.capacityBytes]), [['[LocalDS_0] web01-recovered/web01-recovered_0.vmdk', lab.o.diskBytes]]);
      assert.ok((await fabric.withSession((s) => listVmDisks(s, mtVm))).some((d) => d.fileName === newDisks[0]!.fileName), 'the new VM’s disk is on the MT’s VM while it replicates');
      await run('failback');
      t.diagnostic(await drill.compareSwitch(m, 'b', 'a'));
      assert.equal(await fabric.withSession((s) => vmPowerState(s, recovered)), 'poweredOn');
      assert.equal(await fabric.withSession((s) => vmPowerState(s, vm)), 'poweredOff', 'the old VM is left off');
      assert.ok(!(await fabric.withSession((s) => listVmDisks(s, mtVm))).some((d) => d.fileName.includes('web01')), 'the MT’s VM gave the disk back');
    } finally {
      await done();
    }
  } finally {
    await fabric.close();
    await sim.stop();
  }
});
