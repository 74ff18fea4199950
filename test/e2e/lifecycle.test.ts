import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startLab } from '../helpers/lab.js';

// The whole lifecycle on the two-site lab, for two machines: enable → failover → commit →
// reprotect → failback → commit → reprotect. After every step the drill checks the item's state
// and compares whole-disk sha256 hashes: a replica against its quiesced source, or the disk a
// machine booted on against the disk the other site shut down on.
test('the drill runs the whole lifecycle and every disk verifies byte for byte', async (t) => {
  const { lab, drill, lines, done } = await startLab({ machines: ['web01', 'db01'] });
  try {
    const report = await drill.run();
    t.diagnostic(lines.join('\n'));
    assert.equal(report.ok, true, lines.join('\n'));
    const expected = ['enable', 'failover', 'commit', 'reprotect (original)', 'failback', 'commit', 'reprotect (original)'];
    for (const machine of ['web01', 'db01']) {
      const steps = report.steps.filter((s) => s.machine === machine);
      assert.deepEqual(
        steps.map((s) => s.step),
        expected,
      );
      assert.ok(steps.every((s) => s.ok && s.verification.length > 0));
      assert.deepEqual(
        steps.map((s) => s.state),
        ['Protected (forward)', 'FailedOver (forward)', 'Committed (forward)', 'Protected (failback)', 'FailedBack (failback)', 'Committed (failback)', 'Protected (forward)'],
      );
    }
    // Reprotect moved data back across the sites — only what differs (delta resync against the
    // adopted disk: the writes of the short failover and the burst during the resync), less than
    // one disk. A region copy applies at least the whole disk.
    const reprotects = report.steps.filter((s) => s.step.startsWith('reprotect'));
    assert.ok(reprotects.every((s) => s.bytesMoved > 0));
    assert.ok(
      reprotects.every((s) => s.bytesMoved < lab.o.diskBytes),
      reprotects.map((s) => `${s.machine} ${s.step}: ${s.bytesMoved} bytes`).join(', '),
    );
    // The jobs record what they did: one per operation, all succeeded.
    const jobs = await lab.client.call<{ kind: string; state: string }[]>('GET', `/v1/jobs?resource=item/${lab.state.machines[0]!.itemId}`);
    assert.deepEqual(jobs.map((j) => j.kind).reverse(), ['enable-replication', 'failover', 'commit', 'reprotect', 'failback', 'commit', 'reprotect']);
    assert.ok(jobs.every((j) => j.state === 'succeeded'));
  } finally {
    await done();
  }
});
