import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ENABLE_JOB_KIND, ItemJobParams, transitionItem } from '../../src/cs/inventory/items.js';
import { defineJobKind, type JobKind } from '../../src/cs/jobs/types.js';
import { Gate, withCs, type CsHarness } from './cs-fixtures.js';

/**
 * The configuration server stopped while an item's job is blocked in a task, then started again
 * on the same data directory: the job resumes or fails cleanly, as its tasks declare.
 */

interface Trace {
  runs: string[];
  gate: Gate;
}

/** `blockIn` names the task that waits on the gate during its first run. */
function enableKind(trace: Trace, blockIn: 'copy' | 'attach'): JobKind {
  return defineJobKind({
    name: ENABLE_JOB_KIND,
    params: ItemJobParams,
    tasks: [
      {
        name: 'copy',
        resumable: true,
        async run(ctx) {
          const from = typeof ctx.details.regions === 'number' ? ctx.details.regions : 0;
          trace.runs.push(`copy run ${ctx.task.run} from region ${from}`);
          for (let region = from; region < 8; region++) {
            if (blockIn === 'copy' && region === 5 && ctx.task.run === 1) await trace.gate.wait(ctx.signal);
            await ctx.saveDetails({ regions: region + 1 });
            await ctx.progress(region + 1, 8);
          }
        },
      },
      {
        name: 'attach',
        // Attaching disks to the target is not safe to repeat blindly.
        resumable: false,
        async run(ctx) {
          trace.runs.push(`attach run ${ctx.task.run}`);
          if (blockIn === 'attach') await trace.gate.wait(ctx.signal);
        },
      },
      {
        name: 'mark-protected',
        resumable: true,
        run: (ctx) => ctx.db.transaction().execute(async (trx) => void (await transitionItem(trx, ctx.clock, ctx.params.itemId, 'initialReplicationDone'))),
      },
    ],
    compensate: (ctx) =>
      ctx.db.transaction().execute(async (trx) => {
        trace.runs.push('compensate');
        await transitionItem(trx, ctx.clock, ctx.params.itemId, 'initialReplicationAborted');
      }),
  });
}

async function enable(h: CsHarness): Promise<{ itemId: string; jobId: string }> {
  const fabric = (await h.post('/v1/fabrics', { kind: 'physical', name: 'site-a' })).json;
  const machine = (await h.post('/v1/machines', { fabricId: fabric.id, name: 'vm-1' })).json;
  const policy = (await h.post('/v1/policies', { name: 'gold' })).json;
  const body = {
    machineId: machine.id,
    policyId: policy.forward.id,
    agentId: (await h.register('agent', 'vm-1')).componentId,
    psId: (await h.register('ps', 'ps-1')).componentId,
    mtId: (await h.register('mt', 'mt-1')).componentId,
    disks: [{ diskId: 'vm-1-disk0', sizeBytes: 1 << 20, sourcePath: '/dev/vdb', targetPath: '/srv/vm-1-disk0.img' }],
  };
  const r = await h.post('/v1/items', body);
  assert.equal(r.status, 202, r.text);
  return { itemId: r.json.item.id, jobId: r.json.job.id };
}

test('stopped in a resumable task: after restart the job resumes from its saved details and the item is protected', async () => {
  const trace: Trace = { runs: [], gate: new Gate() };
  await withCs({ jobKinds: [enableKind(trace, 'copy')] }, async (h) => {
    const { itemId, jobId } = await enable(h);
    await trace.gate.entered;
    await h.cs.stop();

    await h.start();
    const job = await h.waitForJob(jobId);
    assert.equal(job.state, 'succeeded');
    assert.equal(job.resumes, 1);
    assert.deepEqual(trace.runs, ['copy run 1 from region 0', 'copy run 2 from region 5', 'attach run 1']);
    assert.deepEqual(
      job.tasks.map((t) => [t.name, t.state, t.runs]),
      [
        ['copy', 'succeeded', 2],
        ['attach', 'succeeded', 1],
        ['mark-protected', 'succeeded', 1],
      ],
    );
    assert.equal((await h.get(`/v1/items/${itemId}`)).json.state, 'Protected');
  });
});

test('stopped in a non-resumable task: after restart the job fails with JOB_INTERRUPTED and the item is rolled back', async () => {
  const trace: Trace = { runs: [], gate: new Gate() };
  await withCs({ jobKinds: [enableKind(trace, 'attach')] }, async (h) => {
    const { itemId, jobId } = await enable(h);
    await trace.gate.entered;
    assert.equal((await h.get(`/v1/jobs/${jobId}`)).json.state, 'running');
    await h.cs.stop();

    await h.start();
    const job = await h.waitForJob(jobId);
    assert.equal(job.state, 'failed');
    assert.equal(job.error?.code, 'JOB_INTERRUPTED');
    assert.match(job.error?.message ?? '', /task "attach"/);
    assert.ok(job.error?.remedy);
    assert.deepEqual(
      job.tasks.map((t) => t.state),
      ['succeeded', 'failed', 'skipped'],
    );
    assert.deepEqual(trace.runs, ['copy run 1 from region 0', 'attach run 1', 'compensate']);
    const item = (await h.get(`/v1/items/${itemId}`)).json;
    assert.equal(item.state, 'ProtectionDisabled');
    assert.deepEqual(item.allowedOperations, ['enable']);
  });
});
