import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guestStatus } from '../../src/lab/machine.js';
import type { Lab } from '../../src/lab/two-site.js';
import { startLab } from '../helpers/lab.js';

// The source's scenario with site B an Azure site: the cloud VM web01 is a VM in the lab's fake
// Resource Manager (driven by the real SDK through the CS's azure fabric) and its disk a page blob
// in Azurite (azblob://lab/disks/web01-disk0), which the MT-B writes as the forward target. After
// failover the cloud VM's agent captures its page-blob disk and reprotect sends it through PS-B,
// the cloud-side process server, to MT-A on premises with a delta resync; failback deallocates the
// cloud VM and starts web01 on premises on exactly the cloud disk. The drill compares whole-disk
// sha256 after every step (blobs read through the storage API).
test('Azure site: failover to Azure, reprotect from the cloud VM through the cloud-side PS (delta), failback byte for byte', async (t) => {
  const seen: string[] = [];
  let lab: Lab | undefined;
  const vmState = () => {
    const az = lab!.state.azure!;
    return lab!.arm!.vm({ subscriptionId: az.subscriptionId, resourceGroup: az.resourceGroup, name: 'web01' })?.powerState;
  };
  const started = await startLab(
    { machines: ['web01'], azure: true },
    {
      afterStep: async (m, step) => {
        const l = lab!;
        if (step.step === 'enable') {
          assert.equal(vmState(), 'deallocated', 'the cloud VM is off while the machine is protected');
          seen.push('enable');
        }
        if (step.step === 'failover') {
          assert.equal(vmState(), 'running', 'failover started the cloud VM through ARM');
          seen.push('failover');
        }
        if (step.step === 'failback') {
          // The cloud VM is deallocated; its disk, read through the storage API, is the disk web01 booted on at site A.
          assert.equal(vmState(), 'deallocated', 'failback deallocated the cloud VM');
          const cloud = await l.hashDisk(l.diskPath(m.name, 'b'));
          const booted = (await guestStatus(l.machineRun(m.name, 'a')))?.bootHash;
          assert.equal(booted, cloud, 'the on-premises machine booted on a disk equal to the cloud disk, byte for byte');
          seen.push('failback');
        }
      },
    },
  );
  lab = started.lab;
  const { drill, lines, done } = started;
  try {
    assert.equal(lab.state.machines[0]!.diskPaths?.b, 'azblob://lab/disks/web01-disk0');
    assert.equal(lab.replicaPath('web01', 'b'), 'azblob://lab/disks/web01-disk0.replica');
    const fabrics = await lab.client.call<{ name: string; kind: string; secretSet?: boolean; config: Record<string, unknown> }[]>('GET', '/v1/fabrics');
    const siteB = fabrics.find((f) => f.name === 'site-b')!;
    assert.equal(siteB.kind, 'azure');
    assert.equal(siteB.secretSet, true);
    assert.equal(JSON.stringify(siteB).includes('clientSecret'), false, 'the client secret is never returned');

    const report = await drill.run();
    t.diagnostic(lines.join('\n'));
    assert.equal(report.ok, true, lines.join('\n'));
    assert.deepEqual(
      report.steps.map((s) => s.step),
      ['enable', 'failover', 'commit', 'reprotect (original)', 'failback', 'commit', 'reprotect (original)'],
    );
    assert.ok(report.steps.every((s) => s.ok && s.verification.length > 0));
    assert.deepEqual(seen, ['enable', 'failover', 'failback'], 'every check between steps ran');
    assert.deepEqual(
      report.steps.map((s) => s.state),
      ['Protected (forward)', 'FailedOver (forward)', 'Committed (forward)', 'Protected (failback)', 'FailedBack (failback)', 'Committed (failback)', 'Protected (forward)'],
    );

    // Reprotect from Azure (and back to it) moved only what differs: less than one disk.
    const reprotects = report.steps.filter((s) => s.step.startsWith('reprotect'));
    assert.ok(
      reprotects.every((s) => s.bytesMoved > 0 && s.bytesMoved < lab!.o.diskBytes),
      reprotects.map((s) => `${s.step}: ${s.bytesMoved} bytes`).join(', '),
    );

    // The cloud VM's writes reached site A through the cloud-side process server.
    const psB = lab.controlClient('ps-b');
    try {
      const status = await psB.call<{ intake: { batches: number; bytes: number } }>('GET', '/status');
      assert.ok(status.intake.bytes > 0, `PS-B took in ${status.intake.bytes} bytes`);
    } finally {
      await psB.close();
    }
    // Protected again towards Azure: the cloud VM stays deallocated, its disk adopted as the MT-B's replica.
    assert.equal(vmState(), 'deallocated');
    const jobs = await lab.client.call<{ kind: string; state: string }[]>('GET', `/v1/jobs?resource=item/${lab.state.machines[0]!.itemId}`);
    assert.deepEqual(jobs.map((j) => j.kind).reverse(), ['enable-replication', 'failover', 'commit', 'reprotect', 'failback', 'commit', 'reprotect']);
    assert.ok(jobs.every((j) => j.state === 'succeeded'));
  } finally {
    await done();
  }
});
