import 'reflect-metadata';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Type } from '@sinclair/typebox';
import { csError } from '../../src/cs/errors.js';
import { ENABLE_JOB_KIND, itemResource, transitionItem } from '../../src/cs/inventory/items.js';
import type { JobView } from '../../src/cs/jobs/store.js';
import { defineJobKind } from '../../src/cs/jobs/types.js';
import { Gate, withCs, type CsHarness } from '../integration/cs-fixtures.js';

/**
 * The operator CLI (item, job, failover…, rp list <item>, check) run as a child process against a
 * configuration server started in this process with small stand-in job kinds.
 */

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const UUID_LINE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n$/;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A running CLI: its output so far, a wait for a line on stdout, and its end. */
class CliRun {
  stdout = '';
  stderr = '';
  readonly done: Promise<Result>;
  private readonly watchers: { re: RegExp; resolve: () => void }[] = [];
  private exited = false;

  constructor(args: readonly string[], env: Record<string, string> = {}) {
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOOMERANG_'))) as Record<string, string>;
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
      for (const w of [...this.watchers]) if (w.re.test(this.stdout)) this.watchers.splice(this.watchers.indexOf(w), 1) && w.resolve();
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.done = new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => {
        this.exited = true;
        resolve({ code, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  /** Resolves once stdout matches; rejects if the CLI ends first. */
  until(re: RegExp): Promise<void> {
    if (re.test(this.stdout)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.watchers.push({ re, resolve });
      void this.done.then(() => {
        if (!re.test(this.stdout)) reject(new Error(`the CLI ended before printing ${re}: stdout ${this.stdout} stderr ${this.stderr}`));
      });
    });
  }

  get running(): boolean {
    return !this.exited;
  }
}

function cli(args: readonly string[], env: Record<string, string> = {}): Promise<Result> {
  return new CliRun(args, env).done;
}

function conn(h: CsHarness): string[] {
  return ['--cs', h.cs.url, '--ca', h.cs.paths.ca, '--token-file', h.cs.paths.adminToken];
}

// ---------------------------------------------------------------------------------------------
// Stand-in job kinds

const ItemParams = Type.Object({ itemId: Type.String() }, { additionalProperties: true });

const enableKind = defineJobKind({
  name: ENABLE_JOB_KIND,
  params: ItemParams,
  tasks: [
    { name: 'initial-sync', resumable: true, run: (ctx) => ctx.progress(1, 1, 'copied') },
    { name: 'mark-protected', resumable: true, run: (ctx) => ctx.db.transaction().execute(async (trx) => void (await transitionItem(trx, ctx.clock, ctx.params.itemId, 'initialReplicationDone'))) },
  ],
});

const gates = { copy: new Gate(), failover: new Gate(), never: new Gate() };

/** Half the progress, then waits for the test, then the rest. */
const copyKind = defineJobKind({
  name: 'test-copy',
  params: Type.Object({}, { additionalProperties: true }),
  tasks: [
    {
      name: 'copy',
      resumable: true,
      async run(ctx) {
        await ctx.progress(1, 2, 'first half');
        await gates.copy.wait(ctx.signal);
        await ctx.progress(2, 2, 'second half');
      },
    },
    { name: 'finish', resumable: true, run: async () => undefined },
  ],
});

const stuckKind = defineJobKind({
  name: 'test-stuck',
  params: Type.Object({}, { additionalProperties: true }),
  tasks: [{ name: 'wait', resumable: true, run: (ctx) => gates.never.wait(ctx.signal) }],
});

const brokenKind = defineJobKind({
  name: 'test-broken',
  params: Type.Object({}, { additionalProperties: true }),
  tasks: [
    { name: 'prepare', resumable: true, run: (ctx) => ctx.progress(1, 1, 'ready') },
    {
      name: 'restore',
      resumable: true,
      run: async () => {
        throw csError('NO_RECOVERY_POINT', { disk: 'd0', point: 'latest-app' });
      },
    },
  ],
});

/** Named like the kinds the operation routes enqueue. */
const failoverKind = defineJobKind({
  name: 'failover',
  params: ItemParams,
  tasks: [
    {
      name: 'restore',
      resumable: true,
      async run(ctx) {
        await ctx.progress(1, 4, 'restoring disks');
        await gates.failover.wait(ctx.signal);
        await ctx.progress(4, 4, 'restored');
      },
    },
    { name: 'switch', resumable: false, run: (ctx) => ctx.db.transaction().execute(async (trx) => void (await transitionItem(trx, ctx.clock, ctx.params.itemId, 'failoverDone'))) },
  ],
});
const changePointKind = defineJobKind({ name: 'change-point', params: ItemParams, tasks: [{ name: 'restore', resumable: true, run: async () => undefined }] });
const commitKind = defineJobKind({
  name: 'commit',
  params: ItemParams,
  tasks: [
    {
      name: 'release',
      resumable: true,
      run: async () => {
        throw csError('COMMAND_TIMEOUT', { kind: 'release-points', component: 'mt-1', seconds: 600 });
      },
    },
  ],
});
const disableKind = defineJobKind({ name: 'disable', params: ItemParams, tasks: [{ name: 'stop', resumable: true, run: (ctx) => ctx.progress(1, 1, 'stopped') }] });

const KINDS = [enableKind, copyKind, stuckKind, brokenKind, failoverKind, changePointKind, commitKind, disableKind];

// ---------------------------------------------------------------------------------------------
// Inventory

interface World {
  policyId: string;
  ps: { componentId: string; token: string };
  mt: { componentId: string; token: string };
  fabrics: string[];
  agents: Map<string, { componentId: string; token: string }>;
}

async function world(h: CsHarness): Promise<World> {
  const policy = await h.post('/v1/policies', { name: 'gold' });
  assert.equal(policy.status, 201, policy.text);
  const fabrics: string[] = [];
  for (const name of ['site-a', 'site-b']) {
    const f = await h.post('/v1/fabrics', { kind: 'physical', name });
    assert.equal(f.status, 201, f.text);
    fabrics.push(f.json.id);
  }
  return { policyId: policy.json.forward.id, ps: await h.register('ps', 'ps-1'), mt: await h.register('mt', 'mt-1'), fabrics, agents: new Map() };
}

/** A machine, its agent and a protected item (the stand-in enable job has run). */
async function protect(h: CsHarness, w: World, name: string, fabric = 0): Promise<string> {
  const machine = await h.post('/v1/machines', { fabricId: w.fabrics[fabric], name });
  assert.equal(machine.status, 201, machine.text);
  const agent = await h.register('agent', name);
  w.agents.set(machine.json.id, agent);
  const diskId = `${name}-f${fabric}-d0`;
  const item = await h.post('/v1/items', {
    machineId: machine.json.id,
    policyId: w.policyId,
    agentId: agent.componentId,
    psId: w.ps.componentId,
    mtId: w.mt.componentId,
    disks: [{ diskId, sizeBytes: 1 << 30, sourcePath: '/dev/vdb', targetPath: `/srv/replica/${diskId}.img` }],
  });
  assert.equal(item.status, 202, item.text);
  assert.equal((await h.waitForJob(item.json.job.id)).state, 'succeeded');
  return item.json.item.id;
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

// ---------------------------------------------------------------------------------------------

test('item list and show, as tables and as the API JSON; names resolve, unknown and ambiguous ones are refused', async () => {
  await withCs({ jobKinds: KINDS }, async (h) => {
    const w = await world(h);
    const vm1 = await protect(h, w, 'vm-1');
    const dupA = await protect(h, w, 'dup', 0);
    const dupB = await protect(h, w, 'dup', 1);
    const c = conn(h);
    // The agent of vm-1 reports an RPO for the item's disk.
    const vm1Item = (await h.get(`/v1/items/${vm1}`)).json;
    const vm1Agent = [...w.agents.values()].find((a) => a.componentId === vm1Item.agentId)!;
    const hb = await h.post('/v1/heartbeat', { agent: { disks: [{ diskId: 'vm-1-f0-d0', lineage: randomUUID(), lastSeq: 10, ackedSeq: 10, rpoSeconds: 42, resyncRequired: false }] } }, vm1Agent.token);
    assert.equal(hb.status, 200, hb.text);

    const table = await cli(['item', 'list', ...c]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^NAME\s+ID\s+STATE\s+DIRECTION\s+RPO\s+DISKS$/);
    assert.equal(lines.length, 4, table.stdout);
    assert.match(table.stdout, new RegExp(`vm-1\\s+${vm1}\\s+Protected\\s+forward\\s+42s\\s+vm-1-f0-d0`));
    assert.match(table.stdout, new RegExp(`dup\\s+${dupB}\\s+Protected\\s+forward\\s+-\\s+dup-f1-d0`), 'no heartbeat: RPO unknown');

    const json = await cli(['item', 'list', ...c, '-o', 'json']);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), (await h.get('/v1/items')).json, 'json is the API answer and nothing else');

    const show = await cli(['item', 'show', 'vm-1', ...c]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, new RegExp(`ID:\\s+${vm1}`));
    assert.match(show.stdout, /State:\s+Protected/);
    assert.match(show.stdout, /RPO:\s+42s/);
    assert.match(show.stdout, /vm-1-f0-d0\s+1 GiB\s+\/dev\/vdb/);
    assert.match(show.stdout, /enable-replication\s+succeeded/, 'recent jobs of the item');
    const byId = await cli(['item', 'show', vm1, ...c, '--output', 'json']);
    assert.equal(byId.code, 0, byId.stderr);
    assert.equal(JSON.parse(byId.stdout).id, vm1);

    const unknown = await cli(['item', 'show', 'vm', ...c]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^error \[NOT_FOUND\]: no item has the id or machine name vm; similar items:/);
    assert.match(unknown.stderr, new RegExp(`vm-1\\s+${vm1}`));
    assert.match(unknown.stderr, /remedy: /);
    assert.equal(unknown.stdout, '');

    const ambiguous = await cli(['item', 'show', 'dup', ...c]);
    assert.equal(ambiguous.code, 2);
    assert.match(ambiguous.stderr, /error \[ITEM_AMBIGUOUS\]: 2 items are named dup/);
    assert.ok(ambiguous.stderr.includes(dupA) && ambiguous.stderr.includes(dupB), ambiguous.stderr);

    // Disabling one of them leaves a single live item of that name: the name resolves to it.
    const disable = await cli(['item', 'disable', dupA, ...c]);
    assert.equal(disable.code, 0, disable.stderr);
    assert.match(disable.stdout, /disable protection of dup succeeded: dup is ProtectionDisabled/);
    const live = await cli(['item', 'show', 'dup', ...c, '-o', 'json']);
    assert.equal(live.code, 0, live.stderr);
    assert.equal(JSON.parse(live.stdout).id, dupB);
    const filtered = await cli(['item', 'list', ...c, '--state', 'ProtectionDisabled']);
    assert.equal(filtered.code, 0, filtered.stderr);
    assert.ok(filtered.stdout.includes(dupA) && !filtered.stdout.includes(dupB), filtered.stdout);
  });
});

test('connection: flags, environment fallbacks, a clear error without --cs; usage errors exit 2', async () => {
  await withCs({ jobKinds: KINDS }, async (h) => {
    const w = await world(h);
    await protect(h, w, 'vm-1');
    const env = { BOOMERANG_CS: h.cs.url, BOOMERANG_CA: h.cs.paths.ca, BOOMERANG_TOKEN_FILE: h.cs.paths.adminToken };
    const port = await closedPort();
    const wrongToken = join(h.dir, 'wrong.token');
    await writeFile(wrongToken, 'not-the-token\n', { mode: 0o600 });

    const [none, fromEnv, flagWins, checkNone, unreachable, badToken] = await Promise.all([
      cli(['item', 'list']),
      cli(['item', 'list', '-o', 'json'], env),
      cli(['item', 'list', '-o', 'json', '--cs', h.cs.url], { ...env, BOOMERANG_CS: `https://127.0.0.1:${port}` }),
      cli(['check', 'commit', 'vm-1']),
      cli(['item', 'list'], { ...env, BOOMERANG_CS: `https://127.0.0.1:${port}` }),
      cli(['item', 'list', '--token-file', wrongToken], env),
    ]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /error \[USAGE\]: no configuration server to talk to: give --cs <url> \(or BOOMERANG_CS\)/);
    assert.match(none.stderr, /BOOMERANG_CA/);
    assert.equal(none.stdout, '');
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.equal(JSON.parse(fromEnv.stdout).length, 1);
    assert.equal(flagWins.code, 0, flagWins.stderr);
    assert.equal(checkNone.code, 2, 'check shares the connection options');
    assert.match(checkNone.stderr, /BOOMERANG_CS/);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, new RegExp(`error \\[CS_UNREACHABLE\\]: cannot reach the configuration server at https://127.0.0.1:${port}`));
    assert.match(unreachable.stderr, /remedy: check --cs/);
    assert.equal(badToken.code, 1);
    assert.match(badToken.stderr, /^error \[BAD_TOKEN\]: .+\n  remedy: use the operator token/);

    const usage = await Promise.all([
      cli(['item', 'list', '-o', 'yaml'], env),
      cli(['failover'], env),
      cli(['job', 'list', '--state', 'done'], env),
      cli(['item', 'list', '--bogus'], env),
      cli(['failover', 'vm-1', '--point', '2030-13-45T00:00:00Z'], env),
      cli(['reprotect', 'vm-1', '--location', 'elsewhere'], env),
      cli(['check', 'explode', 'vm-1'], env),
      cli(['item', 'enable'], env),
      cli(['job', 'watch', randomUUID(), '--timeout', '-1'], env),
    ]);
    for (const [i, r] of usage.entries()) {
      assert.equal(r.code, 2, `usage case ${i}: ${r.stderr}`);
      assert.equal(r.stdout, '', `usage case ${i} prints nothing on stdout`);
      assert.match(r.stderr, /error/, `usage case ${i}`);
    }
    assert.match(usage[4]!.stderr, /not a valid one/);
    assert.match(usage[7]!.stderr, /--machine and --disk/);

    const help = await cli(['failover', '--help']);
    assert.equal(help.code, 0);
    for (const code of ['0', '1', '2', '3', '4']) assert.match(help.stdout, new RegExp(`^  ${code}  `, 'm'));
    assert.match(help.stdout, /BOOMERANG_TOKEN_FILE/);
    assert.match(help.stdout, /--no-wait/);

    const check = await cli(['check', 'commit', 'vm-1'], env);
    assert.equal(check.code, 3, check.stderr);
    assert.match(check.stdout, /FAIL item-nothing-to-commit/);
  });
});

test('job watch shows each task with a bar and its detail, and exits 0 on success, 1 on failure, 4 on timeout; job list and show', async () => {
  gates.copy = new Gate();
  await withCs({ jobKinds: KINDS }, async (h) => {
    const w = await world(h);
    const vm1 = await protect(h, w, 'vm-1');
    const c = conn(h);
    const copy = await h.cs.jobs.enqueue('test-copy', {}, { resource: itemResource(vm1) });

    const watch = new CliRun(['job', 'watch', copy.id, ...c]);
    await watch.until(/copy\s+\[#{10}\.{10}\]\s+50%\s+running\s+first half/);
    assert.ok(watch.running, 'the watch goes on while the job runs');
    gates.copy.open();
    const watched = await watch.done;
    assert.equal(watched.code, 0, watched.stderr);
    assert.match(watched.stdout, /copy\s+\[#{20}\]\s+100%\s+succeeded\s+second half/);
    assert.match(watched.stdout, /finish\s+\[#{20}\]\s+100%\s+succeeded/);
    assert.match(watched.stdout, new RegExp(`job ${copy.id} \\(test-copy\\) succeeded\\n$`));
    assert.doesNotMatch(watched.stdout, /\x1b\[/, 'no cursor movement when stdout is not a terminal');

    const broken = await h.cs.jobs.enqueue('test-broken', {}, { resource: itemResource(vm1) });
    const failed = await cli(['job', 'watch', broken.id, ...c]);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /^error \[NO_RECOVERY_POINT\]: job .+ failed in task restore: disk d0 has no recovery point matching "latest-app"\n  remedy: list the recovery points/);
    assert.match(failed.stdout, /restore\s+\[\.{20}\]\s+0%\s+failed\s+\[NO_RECOVERY_POINT\]/);
    const failedJson = await cli(['job', 'watch', broken.id, ...c, '-o', 'json']);
    assert.equal(failedJson.code, 1);
    const final = JSON.parse(failedJson.stdout) as JobView;
    assert.equal(final.state, 'failed');
    assert.equal(final.error?.code, 'NO_RECOVERY_POINT');

    const stuck = await h.cs.jobs.enqueue('test-stuck', {});
    const timedOut = await cli(['job', 'watch', stuck.id, ...c, '--timeout', '0.3']);
    assert.equal(timedOut.code, 4, timedOut.stderr);
    assert.match(timedOut.stderr, new RegExp(`error \\[WAIT_TIMEOUT\\]: job ${stuck.id} \\(test-stuck\\) is still running`));

    const missing = await cli(['job', 'watch', randomUUID(), ...c]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /error \[NOT_FOUND\]/);

    const list = await cli(['job', 'list', '--item', 'vm-1', ...c]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`${copy.id}\\s+test-copy\\s+vm-1\\s+succeeded\\s+100%`));
    assert.match(list.stdout, new RegExp(`${broken.id}\\s+test-broken\\s+vm-1\\s+failed\\s+.*NO_RECOVERY_POINT`));
    assert.ok(!list.stdout.includes(stuck.id), 'another resource');
    const failedOnly = await cli(['job', 'list', '--state', 'failed', ...c, '-o', 'json']);
    assert.equal(failedOnly.code, 0, failedOnly.stderr);
    assert.deepEqual(
      (JSON.parse(failedOnly.stdout) as JobView[]).map((j) => j.id),
      [broken.id],
    );

    const show = await cli(['job', 'show', broken.id, ...c]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /State:\s+failed/);
    assert.match(show.stdout, /1\s+prepare\s+succeeded\s+\[#{10}\] 100%\s+ready/);
    assert.match(show.stdout, /2\s+restore\s+failed/);
    assert.match(show.stdout, /error \[NO_RECOVERY_POINT\]/);
    const showJson = await cli(['job', 'show', copy.id, ...c, '-o', 'json']);
    assert.deepEqual(JSON.parse(showJson.stdout), (await h.get(`/v1/jobs/${copy.id}`)).json);

    const cancel = await cli(['job', 'cancel', stuck.id, ...c]);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal((await h.waitForJob(stuck.id)).state, 'cancelled');
    const cancelled = await cli(['job', 'watch', stuck.id, ...c]);
    assert.equal(cancelled.code, 1);
    assert.match(cancelled.stderr, /error \[JOB_CANCELLED\]/);
  });
});

test('operations: 409 and pre-flight refusals, failover waits with progress, --no-wait prints the job id, a failed job exits 1', async () => {
  gates.failover = new Gate();
  await withCs({ jobKinds: KINDS }, async (h) => {
    const w = await world(h);
    const vm1 = await protect(h, w, 'vm-1');
    const c = conn(h);

    const notAllowed = await cli(['change-point', 'vm-1', '--point', 'latest', ...c]);
    assert.equal(notAllowed.code, 1, notAllowed.stderr);
    assert.match(notAllowed.stderr, /^error \[TRANSITION_NOT_ALLOWED\]: cannot changePoint item .+: it is Protected/);
    assert.match(notAllowed.stderr, /\n  remedy: wait for the running job/);

    // No master target heartbeat yet: failover's pre-flight refuses, naming the check and its code.
    const refused = await cli(['failover', 'vm-1', ...c]);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, /^error \[PREFLIGHT_FAILED\]: /);
    assert.match(refused.stderr, /\n  FAIL mt-no-heartbeat \(78022\): .+\n       remedy: .+/);
    const japanese = await cli(['failover', 'vm-1', ...c, '--lang', 'ja']);
    assert.equal(japanese.code, 3);
    assert.match(japanese.stderr, /FAIL mt-no-heartbeat \(78022\): .*[\u3040-\u30ff\u4e00-\u9faf]/, japanese.stderr);
    const nothingToCommit = await cli(['commit', vm1, ...c]);
    assert.equal(nothingToCommit.code, 3);
    assert.match(nothingToCommit.stderr, /FAIL item-nothing-to-commit/);

    const hb = await h.post('/v1/heartbeat', { mt: { volumes: [], journals: [] } }, w.mt.token);
    assert.equal(hb.status, 200, hb.text);
    const failover = new CliRun(['failover', 'vm-1', '--point', 'latest-app', '--wait', ...c]);
    await failover.until(/restore\s+\[#{5}\.{15}\]\s+25%\s+running\s+restoring disks/);
    gates.failover.open();
    const done = await failover.done;
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, /switch\s+\[#{20}\]\s+100%\s+succeeded/);
    assert.match(done.stdout, /failover of vm-1 succeeded: vm-1 is FailedOver \(replicating forward\)\n$/);
    const jobs = (await h.get(`/v1/jobs?resource=item/${vm1}&limit=1`)).json as JobView[];
    assert.equal(jobs[0]!.kind, 'failover');
    assert.equal(jobs[0]!.params.point, 'latest-app');

    const noWait = await cli(['change-point', 'vm-1', '--point', '2030-01-01T10:00:00+02:00', '--no-wait', ...c]);
    assert.equal(noWait.code, 0, noWait.stderr);
    assert.match(noWait.stdout, UUID_LINE);
    const changed = await h.waitForJob(noWait.stdout.trim());
    assert.equal(changed.kind, 'change-point');
    assert.equal(changed.params.point, '2030-01-01T08:00:00.000Z', 'a time is sent as ISO 8601 UTC');
    assert.match(noWait.stderr, /boomerang job watch/);

    const commit = await cli(['commit', 'vm-1', ...c, '-o', 'json']);
    assert.equal(commit.code, 1);
    const out = JSON.parse(commit.stdout) as { item: { id: string }; job: JobView };
    assert.equal(out.item.id, vm1);
    assert.equal(out.job.state, 'failed');
    assert.match(commit.stderr, /^error \[COMMAND_TIMEOUT\]: commit of vm-1 failed in task release: mt-1 did not carry out release-points within 600 s\n  remedy: check that the component is running/);
    assert.match(commit.stderr, /\n  now: vm-1 is Committed \(replicating forward\); allowed: reprotect/, 'where the failed job left the item');
  });
});

test('rp list <item> reads the recovery points from the configuration server; the disk modes keep their rules', async () => {
  await withCs({ jobKinds: KINDS }, async (h) => {
    const w = await world(h);
    const vm1 = await protect(h, w, 'vm-1');
    const c = conn(h);
    const lineage = randomUUID();
    const report = await h.post(
      '/v1/recovery-points',
      {
        disks: [
          {
            diskId: 'vm-1-f0-d0',
            points: [
              { pointId: 'p-1', bookmarkId: 'bm-1', kind: 'app', time: '2030-01-01T00:00:00.000Z', lineage, seq: 5 },
              { pointId: 'p-2', bookmarkId: '', kind: 'crash', time: '2030-01-01T00:05:00.000Z', lineage, seq: 9 },
            ],
          },
        ],
      },
      w.mt.token,
    );
    assert.equal(report.status, 200, report.text);
    assert.equal(report.json.accepted, 2);

    const table = await cli(['rp', 'list', 'vm-1', ...c]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^DISK\s+POINT\s+BOOKMARK\s+KIND\s+TIME\s+POSITION\n/);
    assert.match(table.stdout, new RegExp(`vm-1-f0-d0\\s+p-2\\s+-\\s+crash\\s+2030-01-01T00:05:00Z\\s+${lineage.slice(0, 8)}/9\\n.*p-1\\s+bm-1\\s+app`));
    const json = await cli(['rp', 'list', vm1, ...c, '-o', 'json', '--limit', '1']);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), (await h.get(`/v1/items/${vm1}/recovery-points?limit=1`)).json);

    const both = await cli(['rp', 'list', 'vm-1', '--mt', '127.0.0.1:1', ...c]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /not several/);
    const noDisk = await cli(['rp', 'list', '--retention', h.dir]);
    assert.equal(noDisk.code, 2);
    assert.match(noDisk.stderr, /--disk/);
  });
});

test('item enable from flags (names resolved, defaults filled in) and from --file; waits for the enable job', async () => {
  await withCs({ jobKinds: KINDS }, async (h) => {
    const w = await world(h);
    const c = conn(h);
    const vm2 = await h.post('/v1/machines', { fabricId: w.fabrics[0], name: 'vm-2' });
    const vm3 = await h.post('/v1/machines', { fabricId: w.fabrics[1], name: 'vm-3' });
    const agent2 = await h.register('agent', 'vm-2');
    const agent3 = await h.register('agent', 'vm-3');

    const flags = await cli(['item', 'enable', '--machine', 'vm-2', '--disk', 'id=vm-2-d0,size=2GiB,source=/dev/vdb,target=/srv/replica/vm-2-d0.img', ...c]);
    assert.equal(flags.code, 0, flags.stderr);
    assert.match(flags.stdout, /initial-sync\s+\[#{20}\]\s+100%\s+succeeded\s+copied/);
    assert.match(flags.stdout, /enable replication of vm-2 succeeded: vm-2 is Protected \(replicating forward\)\n$/);
    const items = (await h.get('/v1/items')).json as { machineId: string; agentId: string; psId: string; mtId: string; forwardPolicyId: string; disks: { diskId: string; sizeBytes: number }[] }[];
    const item2 = items.find((i) => i.machineId === vm2.json.id)!;
    assert.equal(item2.agentId, agent2.componentId, "the agent registered under the machine's name");
    assert.equal(item2.psId, w.ps.componentId);
    assert.equal(item2.mtId, w.mt.componentId);
    assert.equal(item2.forwardPolicyId, w.policyId);
    assert.deepEqual(item2.disks.map((d) => [d.diskId, d.sizeBytes]), [['vm-2-d0', 2 * 1024 ** 3]]);

    const file = join(h.dir, 'item.json');
    await writeFile(file, JSON.stringify({ machineId: vm3.json.id, disks: [{ diskId: 'vm-3-d0', sizeBytes: 1 << 20, sourcePath: '/dev/vdc', targetPath: '/srv/replica/vm-3-d0.img' }] }));
    const fromFile = await cli(['item', 'enable', '--file', file, '--mt', 'mt-1', '--no-wait', ...c, '-o', 'json']);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    const started = JSON.parse(fromFile.stdout) as { item: { id: string; agentId: string; machineName: string }; job: JobView };
    assert.equal(started.item.machineName, 'vm-3');
    assert.equal(started.item.agentId, agent3.componentId);
    assert.equal(started.job.kind, ENABLE_JOB_KIND);
    assert.equal((await h.waitForJob(started.job.id)).state, 'succeeded');

    // The server's refusal comes back whole: code, message, remedy, the field at fault.
    const again = await cli(['item', 'enable', '--file', file, ...c]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^error \[ITEM_EXISTS\]: machine .+ is already protected by item .+\n  remedy: disable protection of that item first/);
    const badDisk = await cli(['item', 'enable', '--machine', 'vm-2', '--disk', 'id=x,size=lots,source=/a,target=/b', ...c]);
    assert.equal(badDisk.code, 2);
    assert.match(badDisk.stderr, /not a size/);
    const unknownMachine = await cli(['item', 'enable', '--machine', 'vm-9', '--disk', 'id=x,size=1MiB,source=/a,target=/b', ...c]);
    assert.equal(unknownMachine.code, 2);
    assert.match(unknownMachine.stderr, /no machine has the id or name vm-9; known machines:\n.*vm-2/);
  });
});
