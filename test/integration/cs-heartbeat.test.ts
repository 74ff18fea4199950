import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { RaisedAlert } from '../../src/cs/components/monitor.js';
import { describe } from '../../src/cs/errors.js';
import { withCs, type CsHarness } from './cs-fixtures.js';

const PS = { ps: { spoolUsedBytes: 0, spoolCapacityBytes: 1 << 30, spoolState: 'ok', throughputBytesPerSecond: 0, pendingBatches: 0, quarantinedFiles: 0 } };
const AGENT = { agent: { disks: [] } };

/** Moves the injected clock one heartbeat interval (10 s) and waits for the check it triggers. */
async function tick(h: CsHarness): Promise<RaisedAlert[]> {
  const checked = once(h.cs.monitor, 'checked');
  h.clock.advance(10_000);
  const [raised] = (await checked) as [RaisedAlert[]];
  return raised;
}

test('missing heartbeats raise 806 (PS), 78022 (MT) and 78174 (agent) after the threshold, and a heartbeat clears them', async () => {
  await withCs({ heartbeatIntervalSeconds: 10 }, async (h) => {
    const ps = await h.register('ps', 'ps-1');
    const mt = await h.register('mt', 'mt-1');
    const agent = await h.register('agent', 'vm-1');
    const revoked = await h.register('agent', 'vm-2');
    await h.post(`/v1/components/${revoked.componentId}/revoke`);
    assert.equal((await h.post('/v1/heartbeat', PS, ps.token)).status, 200);
    assert.equal((await h.get(`/v1/components/${mt.componentId}`)).json.status, 'pending');

    assert.deepEqual(await tick(h), []); // t = 10 s
    assert.deepEqual(await tick(h), []); // t = 20 s
    assert.equal((await h.post('/v1/heartbeat', AGENT, agent.token)).status, 200);
    assert.deepEqual(await tick(h), []); // t = 30 s: at the threshold (3 × 10 s), not over it

    const raised = await tick(h); // t = 40 s
    assert.deepEqual(
      raised.map((a) => [a.name, a.code]).sort(),
      [
        ['mt-1', '78022'],
        ['ps-1', '806'],
      ],
    );
    assert.deepEqual(await tick(h), [], 'an alert is raised once'); // t = 50 s: agent silent for 30 s
    assert.deepEqual(
      (await tick(h)).map((a) => [a.name, a.code]),
      [['vm-1', '78174']],
    ); // t = 60 s

    const list = (await h.get('/v1/components')).json as { id: string; status: string; alert: { code: string; message: string; remedy: string; since: string } | null }[];
    const byId = new Map(list.map((c) => [c.id, c]));
    const psView = byId.get(ps.componentId)!;
    assert.equal(psView.status, 'alert');
    assert.equal(psView.alert?.code, '806');
    assert.match(psView.alert?.message ?? '', /no heartbeat from process server ps-1 .* the last one was 60 s ago/);
    assert.match(psView.alert?.remedy ?? '', /restart the process server/);
    assert.equal(psView.alert?.since, '2030-01-01T00:00:40.000Z');
    assert.match(byId.get(mt.componentId)!.alert?.message ?? '', /master target mt-1 .* it has never sent one/);
    assert.equal(byId.get(agent.componentId)!.alert?.code, '78174');
    assert.equal(byId.get(revoked.componentId)!.status, 'revoked');
    assert.equal(byId.get(revoked.componentId)!.alert, null, 'revoked components are not watched');
    assert.equal((await h.get('/v1/components?kind=mt')).json.length, 1);

    const ja = describe('78022', 'ja', { name: 'mt-1', id: mt.componentId, ageSeconds: null });
    assert.match(ja.message, /マスター ターゲット mt-1/);
    assert.match(ja.remedy, /再起動/);

    assert.equal((await h.post('/v1/heartbeat', PS, ps.token)).status, 200);
    const cleared = (await h.get(`/v1/components/${ps.componentId}`)).json;
    assert.equal(cleared.status, 'healthy');
    assert.equal(cleared.alert, null);
    assert.equal(cleared.heartbeatAgeSeconds, 0);
  });
});

test('/metrics: jobs by state, components by status, heartbeat ages, request durations', async () => {
  await withCs({ heartbeatIntervalSeconds: 10 }, async (h) => {
    const ps = await h.register('ps', 'ps-1');
    await h.register('mt', 'mt-1');
    await h.post('/v1/heartbeat', PS, ps.token);
    h.clock.advance(5_000);
    assert.equal((await h.get('/metrics', null)).status, 401);
    const r = await h.get('/metrics');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain/);
    const text = r.text;
    assert.match(text, /^boomerang_cs_jobs\{state="queued"\} 0$/m);
    assert.match(text, /^boomerang_cs_components\{kind="ps",status="healthy"\} 1$/m);
    assert.match(text, /^boomerang_cs_components\{kind="mt",status="pending"\} 1$/m);
    assert.match(text, new RegExp(`^boomerang_cs_component_heartbeat_age_seconds\\{id="${ps.componentId}",kind="ps",name="ps-1"\\} 5$`, 'm'));
    assert.match(text, /^boomerang_cs_http_request_duration_seconds_count\{method="POST",route="\/v1\/heartbeat",status="200"\} 1$/m);
    assert.doesNotMatch(text, new RegExp(ps.token.split('.')[1]!), 'no secrets in metrics');
  });
});
