import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { lifecycleJobKinds } from '../../src/cs/lifecycle/index.js';
import type { Fabric } from '../../src/fabrics/fabric.js';
import { withCs, type CsHarness } from './cs-fixtures.js';

// Delta resync needs the agent to know where the master target compares: the MT reports its
// resync endpoint in its heartbeat, and the protect step of the lifecycle passes it on to the
// agent's protectDisk. Without one (an older MT) protectDisk goes out as before.

interface Command {
  id: string;
  kind: string;
  params: Record<string, unknown>;
}

const fabric = (): Fabric => ({ kind: 'physical', power: async () => undefined, powerState: async () => 'running' });


async function enableWith(h: CsHarness, resyncEndpoint: { host: string; port: number } | undefined): Promise<Command> {
  const a = (await h.post('/v1/fabrics', { kind: 'physical', name: 'site-a' })).json;
  const b = (await h.post('/v1/fabrics', { kind: 'physical', name: 'site-b' })).json;
  const machine = (await h.post('/v1/machines', { fabricId: a.id, name: 'web01' })).json;
  const recovery = (await h.post('/v1/machines', { fabricId: b.id, name: 'web01' })).json;
  const policy = (await h.post('/v1/policies', { name: 'gold' })).json;
  const agent = await h.register('agent', 'web01.site-a');
  const ps = await h.register('ps', 'ps-a');
  const mt = await h.register('mt', 'mt-b');
  assert.equal((await h.post('/v1/heartbeat', { agent: { disks: [] } }, agent.token)).status, 200);
  assert.equal((await h.post('/v1/heartbeat', { ps: { spoolUsedBytes: 0, spoolCapacityBytes: 100, spoolState: 'ok', throughputBytesPerSecond: 0, pendingBatches: 0, quarantinedFiles: 0 } }, ps.token)).status, 200);
  const volume = { path: '/mnt/retention', fsType: 'ext4', locked: false, inUseAsTarget: false, cacheOrInstall: false, capacityBytes: 8 * 2 ** 30, freeBytes: 4 * 2 ** 30 };
  const beat = await h.post('/v1/heartbeat', { mt: { platform: 'linux', retentionPath: '/mnt/retention', volumes: [volume], journals: [], ...(resyncEndpoint ? { resyncEndpoint } : {}) } }, mt.token);
  assert.equal(beat.status, 200, beat.text);
  const created = await h.post('/v1/items', {
    machineId: machine.id,
    policyId: policy.forward.id,
    agentId: agent.componentId,
    psId: ps.componentId,
    mtId: mt.componentId,
    disks: [{ diskId: 'web01-disk0', sizeBytes: 1 << 20, sourcePath: '/a/web01.img', targetPath: '/b/web01.img' }],
    recoveryMachineId: recovery.id,
  });
  assert.equal(created.status, 202, created.text);
  await h.answer(mt.token, await h.nextCommand(mt.token, 'attachDisk'), { ok: true, result: { created: true, adopted: false } });
  const protect = await h.nextCommand(agent.token, 'protectDisk');
  await h.answer(agent.token, protect, { ok: true, result: { lineage: randomUUID() } });
  return protect;
}

test('protect passes the master target’s resync endpoint to the agent', async () => {
  await withCs({ jobKinds: (s) => lifecycleJobKinds(s, fabric), lifecyclePollMs: 20, heartbeatIntervalSeconds: 3600 }, async (h) => {
    const protect = await enableWith(h, { host: 'mt-b.example', port: 9445 });
    assert.deepEqual(protect.params, { diskId: 'web01-disk0', newLineage: true, resyncTarget: { host: 'mt-b.example', port: 9445 } });
  });
});

test('without a resync endpoint in the MT’s heartbeat, protectDisk asks for the region copy as before', async () => {
  await withCs({ jobKinds: (s) => lifecycleJobKinds(s, fabric), lifecyclePollMs: 20, heartbeatIntervalSeconds: 3600 }, async (h) => {
    const protect = await enableWith(h, undefined);
    assert.deepEqual(protect.params, { diskId: 'web01-disk0', newLineage: true });
  });
});
