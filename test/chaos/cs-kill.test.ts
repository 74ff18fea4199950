import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { HttpsJsonClient } from '../../src/runtime/https-client.js';
import { startLab } from '../helpers/lab.js';

interface Job {
  id: string;
  state: string;
  version: number;
  resumes: number;
  tasks: { name: string; state: string }[];
}

/** Follows the job through the watch API until `task` is running; the job must not end first. */
async function whenRunning(cs: HttpsJsonClient, jobId: string, task: string): Promise<void> {
  let job = await cs.call<Job>('GET', `/v1/jobs/${jobId}`);
  for (let i = 0; i < 600; i++) {
    if (job.tasks.find((t) => t.name === task)?.state === 'running') return;
    assert.ok(!['succeeded', 'failed', 'cancelled'].includes(job.state), `job ended (${job.state}) before task ${task} ran`);
    job = await cs.call<Job>('GET', `/v1/jobs/${jobId}/watch?version=${job.version}&timeoutSeconds=10`);
  }
  assert.fail(`task ${task} never ran`);
}

// kill -9 of the configuration server in the middle of reprotect and of failback: on restart the
// jobs resume from what they recorded (commands are in the database, components answer again)
// and finish; the item is never left half-switched and the disks still verify byte for byte.
test('a CS killed mid-reprotect and mid-failback resumes both jobs and the disks verify', async () => {
  const { lab, drill, done } = await startLab();
  try {
    const m = lab.state.machines[0]!;
    const id = m.itemId!;
    const [enable] = await lab.client.call<Job[]>('GET', `/v1/jobs?resource=item/${id}&limit=1`);
    await drill.waitJob(enable!.id);
    await drill.waitJob((await drill.operate(id, 'failover', { point: 'latest', shutdownSource: true })).id);
    await drill.compareSwitch(m, 'a', 'b');
    await drill.waitJob((await drill.operate(id, 'commit')).id);

    const reprotect = await drill.operate(id, 'reprotect', { location: 'original' });
    await whenRunning(lab.client, reprotect.id, 'resync');
    await lab.killCs();
    await lab.startCs();
    const resumed = await drill.waitJob(reprotect.id);
    assert.ok((await lab.client.call<Job>('GET', `/v1/jobs/${resumed.id}`)).resumes >= 1, 'the job was picked up again after the restart');
    const item = await drill.item(id);
    assert.deepEqual([item.state, item.direction], ['Protected', 'failback']);
    await drill.compareReplica(m, 'b');

    const failback = await drill.operate(id, 'failback');
    await whenRunning(lab.client, failback.id, 'stop-source');
    await lab.killCs();
    await lab.startCs();
    await drill.waitJob(failback.id);
    const after = await drill.item(id);
    assert.deepEqual([after.state, after.direction], ['FailedBack', 'failback']);
    await drill.compareSwitch(m, 'b', 'a');
  } finally {
    await done();
  }
});
