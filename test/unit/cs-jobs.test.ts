import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { pino } from 'pino';
import { ManualClock } from '../../src/cs/clock.js';
import { migrate, openDatabase, type Db } from '../../src/cs/db/open.js';
import { CsError } from '../../src/cs/errors.js';
import { JobEngine } from '../../src/cs/jobs/engine.js';
import type { JobView } from '../../src/cs/jobs/store.js';
import { defineJobKind, type CompensationContext, type JobKind, type TaskDefinition } from '../../src/cs/jobs/types.js';
import { Gate } from '../integration/cs-fixtures.js';

const silent = pino({ level: 'silent' });
const Params = Type.Object({ label: Type.String() });
type Params = { label: string };

interface Fixture {
  dir: string;
  dbPath: string;
  clock: ManualClock;
  open(kinds: readonly JobKind[], maxRunningJobs?: number): Promise<{ db: Db; engine: JobEngine; close(): Promise<void> }>;
}

async function withFixture(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-cs-jobs-'));
  const dbPath = join(dir, 'cs.db');
  const clock = new ManualClock();
  const opened: (() => Promise<void>)[] = [];
  try {
    await fn({
      dir,
      dbPath,
      clock,
      async open(kinds, maxRunningJobs = 4) {
        const db = await openDatabase(dbPath);
        await migrate(db);
        const engine = new JobEngine({ db, clock, log: silent, kinds, maxRunningJobs, progressIntervalMs: 0, stopTimeoutMs: 5000 });
        await engine.start();
        let closed = false;
        const close = async () => {
          if (closed) return;
          closed = true;
          await engine.stop();
          await db.destroy();
        };
        opened.push(close);
        return { db, engine, close };
      },
    });
  } finally {
    for (const close of opened.reverse()) await close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Waits, through the engine's own long-poll, until the job satisfies `done`. */
async function until(engine: JobEngine, id: string, done: (v: JobView) => boolean): Promise<JobView> {
  let v = await engine.view(id);
  for (let i = 0; i < 1000 && !done(v); i++) v = await engine.waitForChange(id, v.version, 10_000);
  assert.ok(done(v), `job ${id} did not reach the expected state: ${JSON.stringify(v)}`);
  return v;
}

const finished = (v: JobView) => v.state === 'succeeded' || v.state === 'failed' || v.state === 'cancelled';

test('tasks run in order, report progress and the job succeeds', async () => {
  await withFixture(async (f) => {
    const order: string[] = [];
    const seen: string[] = [];
    const kind = defineJobKind({
      name: 'three-steps',
      params: Params,
      tasks: ['prepare', 'copy', 'switch'].map((name): TaskDefinition<Params> => ({
        name,
        resumable: true,
        async run(ctx) {
          order.push(`${ctx.params.label}:${ctx.task.name}:${ctx.task.index}`);
          for (let i = 1; i <= 4; i++) await ctx.progress(i, 4, `${name} ${i}/4`);
        },
      })),
    });
    const { engine } = await f.open([kind]);
    engine.events.on('job-updated', () => seen.push('update'));
    const queued = await engine.enqueue('three-steps', { label: 'a' });
    assert.equal(queued.kind, 'three-steps');
    assert.deepEqual(queued.params, { label: 'a' });
    const v = await until(engine, queued.id, finished);
    assert.equal(v.state, 'succeeded');
    assert.deepEqual(order, ['a:prepare:0', 'a:copy:1', 'a:switch:2']);
    assert.equal(v.progress, 1);
    assert.equal(v.error, null);
    assert.ok(v.startedAt !== null && v.finishedAt !== null);
    for (const t of v.tasks) {
      assert.equal(t.state, 'succeeded');
      assert.equal(t.runs, 1);
      assert.deepEqual(t.progress, { done: 4, total: 4, detail: `${t.name} 4/4` });
      assert.ok(t.startedAt !== null && t.finishedAt !== null);
    }
    // Every persisted change was announced: start, 3 × (start, 4 progress, end), done.
    assert.ok(seen.length >= 1 + 3 * 6 + 1, `only ${seen.length} updates`);
  });
});

test('a failing task fails the job with its code, message and remedy; later tasks are skipped; compensate runs', async () => {
  await withFixture(async (f) => {
    const compensations: CompensationContext<Params>[] = [];
    const ran: string[] = [];
    const kind = defineJobKind({
      name: 'fails',
      params: Params,
      tasks: [
        {
          name: 'first',
          resumable: true,
          async run(ctx) {
            ran.push('first');
            await ctx.saveDetails({ created: 'vm-1' });
          },
        },
        {
          name: 'second',
          resumable: true,
          async run(ctx) {
            ran.push('second');
            if (ctx.params.label === 'coded') throw new CsError('DISK_GONE', 500, 'the target disk disappeared', 'reattach the disk and retry');
            throw new Error('boom');
          },
        },
        {
          name: 'third',
          resumable: true,
          async run() {
            ran.push('third');
          },
        },
      ],
      async compensate(ctx) {
        compensations.push(ctx);
      },
    });
    const { engine } = await f.open([kind]);

    const coded = await until(engine, (await engine.enqueue('fails', { label: 'coded' })).id, finished);
    assert.equal(coded.state, 'failed');
    assert.deepEqual(coded.error, { code: 'DISK_GONE', message: 'the target disk disappeared', remedy: 'reattach the disk and retry' });
    assert.deepEqual(
      coded.tasks.map((t) => t.state),
      ['succeeded', 'failed', 'skipped'],
    );
    assert.equal(coded.tasks[1]?.error?.code, 'DISK_GONE');

    const plain = await until(engine, (await engine.enqueue('fails', { label: 'plain' })).id, finished);
    assert.equal(plain.error?.code, 'TASK_FAILED');
    assert.match(plain.error?.message ?? '', /task "second" failed: boom/);
    assert.ok((plain.error?.remedy ?? '').length > 0);

    assert.deepEqual(ran, ['first', 'second', 'first', 'second']);
    assert.equal(compensations.length, 2);
    const c = compensations[0]!;
    assert.deepEqual(c.outcome, { state: 'failed', error: coded.error });
    assert.deepEqual(c.tasks[0], { name: 'first', state: 'succeeded', details: { created: 'vm-1' } });
  });
});

test('cancel: a running job rolls back and ends cancelled; a queued one ends at once; a finished one refuses', async () => {
  await withFixture(async (f) => {
    const gate = new Gate();
    const outcomes: string[] = [];
    const kind = defineJobKind({
      name: 'blocking',
      params: Params,
      tasks: [
        {
          name: 'wait',
          resumable: true,
          async run(ctx) {
            if (ctx.params.label === 'block') await gate.wait(ctx.signal);
          },
        },
        { name: 'after', resumable: true, run: async () => undefined },
      ],
      async compensate(ctx) {
        outcomes.push(ctx.outcome.state);
      },
    });
    const { engine } = await f.open([kind], 1);
    const running = await engine.enqueue('blocking', { label: 'block' });
    await gate.entered;
    const queued = await engine.enqueue('blocking', { label: 'quick' });
    assert.equal((await engine.view(queued.id)).state, 'queued'); // one slot, taken

    const q = await engine.cancel(queued.id);
    assert.equal(q.state, 'cancelled');
    assert.deepEqual(
      q.tasks.map((t) => t.state),
      ['skipped', 'skipped'],
    );

    const r = await engine.cancel(running.id);
    assert.equal(r.cancelRequested, true);
    const done = await until(engine, running.id, finished);
    assert.equal(done.state, 'cancelled');
    assert.deepEqual(
      done.tasks.map((t) => t.state),
      ['cancelled', 'skipped'],
    );
    assert.deepEqual(outcomes, ['cancelled']);

    await assert.rejects(engine.cancel(running.id), (err: unknown) => err instanceof CsError && err.code === 'JOB_FINISHED' && err.status === 409);
    await assert.rejects(engine.cancel('00000000-0000-4000-8000-000000000000'), (err: unknown) => err instanceof CsError && err.status === 404);
  });
});

test('jobs of one resource run one at a time, in creation order', async () => {
  await withFixture(async (f) => {
    const gate = new Gate();
    const order: string[] = [];
    const kind = defineJobKind({
      name: 'on-item',
      params: Params,
      tasks: [
        {
          name: 'work',
          resumable: true,
          async run(ctx) {
            order.push(`start ${ctx.params.label}`);
            if (ctx.params.label === 'first') await gate.wait(ctx.signal);
            order.push(`end ${ctx.params.label}`);
          },
        },
      ],
    });
    const { engine } = await f.open([kind], 4);
    const first = await engine.enqueue('on-item', { label: 'first' }, { resource: 'item/1' });
    await gate.entered;
    const second = await engine.enqueue('on-item', { label: 'second' }, { resource: 'item/1' });
    const other = await engine.enqueue('on-item', { label: 'other' }, { resource: 'item/2' });
    assert.equal((await until(engine, other.id, finished)).state, 'succeeded');
    assert.equal((await engine.view(second.id)).state, 'queued');
    gate.open();
    await until(engine, second.id, finished);
    assert.equal((await engine.view(first.id)).state, 'succeeded');
    assert.deepEqual(order, ['start first', 'start other', 'end other', 'end first', 'start second', 'end second']);
  });
});

test('enqueue checks the kind and its parameters', async () => {
  await withFixture(async (f) => {
    const kind = defineJobKind({ name: 'k', params: Params, tasks: [{ name: 't', resumable: true, run: async () => undefined }] });
    const { engine } = await f.open([kind]);
    await assert.rejects(engine.enqueue('nope', {}), (err: unknown) => err instanceof CsError && err.code === 'JOB_KIND_UNKNOWN');
    await assert.rejects(engine.enqueue('k', { label: 3 }), (err: unknown) => err instanceof CsError && err.code === 'JOB_PARAMS_INVALID' && /label/.test(err.message));
  });
});

/** copy saves its position, then blocks; switch blocks too. Which one blocks depends on `blockAt`. */
function restartKind(log: string[], gates: Map<string, Gate>, compensations: string[]): JobKind {
  return defineJobKind({
    name: 'failback',
    params: Params,
    tasks: [
      {
        name: 'prepare',
        resumable: true,
        async run() {
          log.push('prepare');
        },
      },
      {
        name: 'copy',
        resumable: true,
        async run(ctx) {
          const from = typeof ctx.details.copied === 'number' ? ctx.details.copied : 0;
          log.push(`copy run ${ctx.task.run} from ${from}`);
          for (let block = from; block < 4; block++) {
            if (block === 2 && ctx.params.label === 'block-copy' && ctx.task.run === 1) await gates.get('copy')!.wait(ctx.signal);
            await ctx.saveDetails({ copied: block + 1 });
            await ctx.progress(block + 1, 4);
          }
        },
      },
      {
        name: 'switch',
        resumable: false,
        async run(ctx) {
          log.push(`switch run ${ctx.task.run}`);
          if (ctx.params.label === 'block-switch') await gates.get('switch')!.wait(ctx.signal);
        },
      },
      {
        name: 'start',
        resumable: true,
        async run() {
          log.push('start');
        },
      },
    ],
    async compensate(ctx) {
      compensations.push(ctx.outcome.state === 'failed' ? ctx.outcome.error.code : 'cancelled');
      if (ctx.params.label === 'block-compensate' && compensations.length === 1) await gates.get('compensate')!.wait(ctx.signal);
    },
  });
}

test('restart mid-job: an interrupted resumable task runs again from its saved details', async () => {
  await withFixture(async (f) => {
    const log: string[] = [];
    const gates = new Map([['copy', new Gate()]]);
    const compensations: string[] = [];
    const first = await f.open([restartKind(log, gates, compensations)]);
    const job = await first.engine.enqueue('failback', { label: 'block-copy' });
    await gates.get('copy')!.entered;
    await first.close(); // the task is aborted; nothing about it is written: as after a crash

    const left = await (async () => {
      const db = await openDatabase(f.dbPath);
      try {
        return await db.selectFrom('tasks').select(['name', 'state', 'details']).where('job_id', '=', job.id).orderBy('idx').execute();
      } finally {
        await db.destroy();
      }
    })();
    assert.deepEqual(left, [
      { name: 'prepare', state: 'succeeded', details: '{}' },
      { name: 'copy', state: 'running', details: '{"copied":2}' },
      { name: 'switch', state: 'pending', details: '{}' },
      { name: 'start', state: 'pending', details: '{}' },
    ]);

    const second = await f.open([restartKind(log, gates, compensations)]);
    const v = await until(second.engine, job.id, finished);
    assert.equal(v.state, 'succeeded');
    assert.equal(v.resumes, 1);
    assert.deepEqual(log, ['prepare', 'copy run 1 from 0', 'copy run 2 from 2', 'switch run 1', 'start']);
    assert.deepEqual(
      v.tasks.map((t) => [t.name, t.state, t.runs]),
      [
        ['prepare', 'succeeded', 1],
        ['copy', 'succeeded', 2],
        ['switch', 'succeeded', 1],
        ['start', 'succeeded', 1],
      ],
    );
    assert.deepEqual(v.tasks[1]?.progress, { done: 4, total: 4, detail: null });
    assert.deepEqual(compensations, []);
  });
});

test('restart mid-job: an interrupted non-resumable task fails the job cleanly and compensates', async () => {
  await withFixture(async (f) => {
    const log: string[] = [];
    const gates = new Map([['switch', new Gate()]]);
    const compensations: string[] = [];
    const first = await f.open([restartKind(log, gates, compensations)]);
    const job = await first.engine.enqueue('failback', { label: 'block-switch' });
    await gates.get('switch')!.entered;
    await first.close();

    const second = await f.open([restartKind(log, gates, compensations)]);
    const v = await until(second.engine, job.id, finished);
    assert.equal(v.state, 'failed');
    assert.equal(v.error?.code, 'JOB_INTERRUPTED');
    assert.match(v.error?.message ?? '', /task "switch"/);
    assert.ok((v.error?.remedy ?? '').length > 0);
    assert.deepEqual(
      v.tasks.map((t) => t.state),
      ['succeeded', 'succeeded', 'failed', 'skipped'],
    );
    assert.deepEqual(log, ['prepare', 'copy run 1 from 0', 'switch run 1']);
    assert.deepEqual(compensations, ['JOB_INTERRUPTED']);
  });
});

test('restart during compensation: the rollback runs again and the job ends with the original error', async () => {
  await withFixture(async (f) => {
    const gates = new Map([['compensate', new Gate()]]);
    const compensations: string[] = [];
    const failing = (): JobKind =>
      defineJobKind({
        name: 'rollback',
        params: Params,
        tasks: [
          {
            name: 'only',
            resumable: true,
            async run() {
              throw new CsError('MT_UNREACHABLE', 503, 'the master target does not answer', 'start it');
            },
          },
        ],
        async compensate(ctx) {
          compensations.push(ctx.outcome.state === 'failed' ? ctx.outcome.error.code : 'cancelled');
          if (compensations.length === 1) await gates.get('compensate')!.wait(ctx.signal);
        },
      });
    const first = await f.open([failing()]);
    const job = await first.engine.enqueue('rollback', { label: 'x' });
    await gates.get('compensate')!.entered;
    assert.equal((await first.engine.view(job.id)).state, 'compensating');
    await first.close();

    const second = await f.open([failing()]);
    const v = await until(second.engine, job.id, finished);
    assert.equal(v.state, 'failed');
    assert.equal(v.error?.code, 'MT_UNREACHABLE');
    assert.deepEqual(compensations, ['MT_UNREACHABLE', 'MT_UNREACHABLE']);
  });
});

test('the long-poll returns on a change, and after its timeout when nothing changes', async () => {
  await withFixture(async (f) => {
    const gate = new Gate();
    const kind = defineJobKind({
      name: 'slow',
      params: Params,
      tasks: [{ name: 'wait', resumable: true, run: async (ctx) => gate.wait(ctx.signal) }],
    });
    const { engine } = await f.open([kind]);
    const job = await engine.enqueue('slow', { label: 'x' });
    await gate.entered;
    const now = await engine.view(job.id);
    const unchanged = await engine.waitForChange(job.id, now.version, 20);
    assert.equal(unchanged.version, now.version);
    const changed = engine.waitForChange(job.id, now.version, 10_000);
    gate.open();
    assert.ok((await changed).version > now.version);
  });
});
