import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Value } from '@sinclair/typebox/value';
import type { Transaction } from 'kysely';
import { errorMessage } from '../../replication/errors.js';
import type { Logger } from '../../runtime/log.js';
import { isoAt, type Clock } from '../clock.js';
import type { Db } from '../db/open.js';
import type { Database, JobRow, TaskRow } from '../db/schema.js';
import { CsError, csError, toCodedError, type CodedError } from '../errors.js';
import { isFinished, nextJobStatus, type JobEvent, type JobStatus } from './machine.js';
import { JobStore, statusOf, type JobFilter, type JobView } from './store.js';
import type { JobKind, JsonObject, TaskContext, TaskDefinition } from './types.js';

/**
 * Runs queued jobs, at most `maxRunningJobs` at once and one at a time per resource, persisting
 * every transition before announcing it. stop() aborts running tasks and writes nothing about
 * them, so a stop and a crash leave the same record; start() resumes from that record.
 */

export interface JobEngineOptions {
  db: Db;
  clock: Clock;
  log: Logger;
  kinds: readonly JobKind[];
  maxRunningJobs: number;
  progressIntervalMs: number;
  stopTimeoutMs: number;
}

export interface JobEngineEvents {
  /** A job changed in the database (its version grew); read it for the details. */
  'job-updated': [{ id: string }];
}

type Phase = 'created' | 'started' | 'stopping' | 'stopped';

/** Abort reasons: a cancelled job rolls back, a stopping engine leaves the job to be resumed. */
const CANCELLED = new Error('job cancelled');
const SHUTDOWN = new Error('configuration server stopping');

interface Run {
  readonly controller: AbortController;
  readonly resource: string | null;
  done: Promise<void>;
}

const MAX_DETAILS_BYTES = 1024 * 1024;

export class JobEngine {
  readonly events = new EventEmitter<JobEngineEvents>();
  private readonly store: JobStore;
  private readonly kinds: ReadonlyMap<string, JobKind>;
  private readonly running = new Map<string, Run>();
  private readonly shutdown = new AbortController();
  private phase: Phase = 'created';
  private pumping: Promise<void> | undefined;
  private pumpAgain = false;

  constructor(private readonly o: JobEngineOptions) {
    this.store = new JobStore(o.db, o.clock);
    const kinds = new Map<string, JobKind>();
    for (const k of o.kinds) {
      if (kinds.has(k.name)) throw new TypeError(`job kind ${k.name} is defined twice`);
      kinds.set(k.name, k);
    }
    this.kinds = kinds;
    // Every long-poll watcher listens; their number is bounded by open requests, not by a leak.
    this.events.setMaxListeners(0);
  }

  /** Resumes what a previous run left (see recover), then starts queued jobs. */
  async start(): Promise<void> {
    if (this.phase !== 'created') throw new Error(`job engine already ${this.phase}`);
    this.phase = 'started';
    await this.recover();
    this.wake();
  }

  async stop(): Promise<void> {
    if (this.phase !== 'started') {
      this.phase = 'stopped';
      return;
    }
    this.phase = 'stopping';
    this.shutdown.abort(SHUTDOWN);
    for (const run of this.running.values()) run.controller.abort(SHUTDOWN);
    const settled = Promise.allSettled([...this.running.values()].map((r) => r.done));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.o.stopTimeoutMs);
    });
    if ((await Promise.race([settled, late])) === 'late') {
      this.o.log.warn({ jobs: [...this.running.keys()] }, 'tasks did not stop in time; their jobs resume at the next start');
    }
    clearTimeout(timer);
    await this.pumping;
    this.phase = 'stopped';
  }

  /**
   * Inserts a queued job inside the caller's transaction (so it exists only if the rest of the
   * change commits). Call wake() after the commit.
   */
  async enqueueIn(trx: Transaction<Database>, kindName: string, params: JsonObject, options: { resource?: string } = {}): Promise<string> {
    const kind = this.kinds.get(kindName);
    if (kind === undefined) throw csError('JOB_KIND_UNKNOWN', { kind: kindName });
    const problem = Value.Errors(kind.params, params).First();
    if (problem !== undefined) throw csError('JOB_PARAMS_INVALID', { kind: kindName, message: `${problem.path || '/'} ${problem.message}` });
    const id = randomUUID();
    await this.store.insert(trx, { id, kind: kindName, params, resource: options.resource ?? null, tasks: kind.tasks });
    return id;
  }

  async enqueue(kindName: string, params: JsonObject, options: { resource?: string } = {}): Promise<JobView> {
    const id = await this.o.db.transaction().execute((trx) => this.enqueueIn(trx, kindName, params, options));
    this.announce(id);
    this.wake();
    return this.view(id);
  }

  /** Looks for queued jobs to start. Cheap to call often: runs are coalesced. */
  wake(): void {
    if (this.phase !== 'started') return;
    if (this.pumping !== undefined) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = (async () => {
      do {
        this.pumpAgain = false;
        await this.pump();
      } while (this.pumpAgain && this.phase === 'started');
    })()
      .catch((err: unknown) => this.o.log.error({ error: errorMessage(err) }, 'cannot start queued jobs'))
      .finally(() => {
        this.pumping = undefined;
      });
  }

  async view(id: string): Promise<JobView> {
    const v = await this.store.view(id);
    if (v === undefined) throw csError('NOT_FOUND', { what: 'job', id });
    return v;
  }

  list(filter: JobFilter): Promise<JobView[]> {
    return this.store.list(filter);
  }

  countByState(): Promise<Map<string, number>> {
    return this.store.countByState();
  }

  /**
   * A queued job is cancelled at once. A running one has its cancel recorded and its task
   * aborted; it then rolls back (compensate) and ends 'cancelled'.
   */
  async cancel(id: string): Promise<JobView> {
    const row = await this.store.row(id);
    if (row === undefined) throw csError('NOT_FOUND', { what: 'job', id });
    if (isFinished(row.state)) throw csError('JOB_FINISHED', { id, state: row.state });
    if (row.state === 'queued' && (await this.store.setStatus(id, 'queued', nextJobStatus({ state: 'queued' }, { type: 'cancel' }), { finishedAt: isoAt(this.o.clock) }))) {
      await this.store.skipPending(id);
      this.announce(id);
      return this.view(id);
    }
    await this.store.requestCancel(id);
    this.announce(id);
    this.running.get(id)?.controller.abort(CANCELLED);
    return this.view(id);
  }

  /**
   * Resolves with the job once its version exceeds `afterVersion` or it has finished, or when
   * `timeoutMs` (wall clock: a request deadline) passes or `signal` aborts.
   */
  async waitForChange(id: string, afterVersion: number, timeoutMs: number, signal?: AbortSignal): Promise<JobView> {
    const ready = (v: JobView) => v.version > afterVersion || isFinished(v.state);
    const first = await this.view(id);
    if (ready(first) || signal?.aborted) return first;
    return new Promise<JobView>((resolve, reject) => {
      let settled = false;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.events.off('job-updated', onUpdate);
        signal?.removeEventListener('abort', onAbort);
        if (err !== undefined) reject(err);
        else this.view(id).then(resolve, reject);
      };
      const onUpdate = (u: { id: string }) => {
        if (u.id !== id) return;
        this.view(id).then((v) => {
          if (ready(v)) finish();
        }, finish);
      };
      const onAbort = () => finish();
      const timer = setTimeout(() => finish(), timeoutMs);
      this.events.on('job-updated', onUpdate);
      signal?.addEventListener('abort', onAbort);
      // A change between the first read and the subscription would otherwise be missed.
      onUpdate({ id });
    });
  }

  private announce(id: string): void {
    this.events.emit('job-updated', { id });
  }

  /**
   * After a stop or a crash: a job left 'running' continues. Its interrupted task (if any) runs
   * again when it is resumable; otherwise the job fails with JOB_INTERRUPTED and compensates.
   * A job left 'compensating' compensates again.
   */
  private async recover(): Promise<void> {
    // Read before the loop below moves interrupted jobs into 'compensating' (and launches them).
    const compensating = await this.store.rowsInState('compensating');
    for (const row of await this.store.rowsInState('running')) {
      const tasks = await this.store.tasks(row.id);
      const interrupted = tasks.find((t) => t.state === 'running');
      await this.store.markResumed(row.id);
      if (interrupted !== undefined) {
        const def = this.kinds.get(row.kind)?.tasks[interrupted.idx];
        // Both the record and today's code must say so: a task made non-resumable since is not rerun.
        const resumable = interrupted.resumable === 1 && def?.name === interrupted.name && def.resumable;
        if (resumable) {
          await this.store.updateTask(row.id, interrupted.idx, { state: 'pending' });
          this.o.log.info({ job: row.id, kind: row.kind, task: interrupted.name }, 'resuming job from its interrupted task');
        } else {
          const cancelled = row.cancel_requested_at !== null;
          const error = toCodedError(csError('JOB_INTERRUPTED', { task: interrupted.name }));
          await this.endTask(row.id, interrupted, cancelled ? { state: 'cancelled', error: null } : { state: 'failed', error });
          await this.store.skipPending(row.id);
          await this.transition(row.id, { state: 'running' }, cancelled ? { type: 'cancel' } : { type: 'fail', error });
          this.o.log.warn({ job: row.id, kind: row.kind, task: interrupted.name }, 'job interrupted in a task that cannot be resumed: rolling back');
        }
      }
      this.announce(row.id);
      const current = await this.store.row(row.id);
      if (current !== undefined) this.launch(current);
    }
    for (const row of compensating) {
      await this.store.markResumed(row.id);
      this.announce(row.id);
      this.launch(row);
    }
  }

  private async pump(): Promise<void> {
    let free = this.o.maxRunningJobs - this.running.size;
    if (free <= 0) return;
    const busy = new Set([...this.running.values()].map((r) => r.resource).filter((r) => r !== null));
    for (const row of await this.store.rowsInState('queued')) {
      if (free <= 0 || this.phase !== 'started') return;
      // Jobs of one resource run in creation order: a later one waits behind a busy resource.
      if (row.resource !== null && busy.has(row.resource)) continue;
      if (row.resource !== null) busy.add(row.resource);
      const started = await this.store.setStatus(row.id, 'queued', { state: 'running' }, { startedAt: isoAt(this.o.clock) });
      if (!started) continue; // cancelled meanwhile
      this.announce(row.id);
      const current = await this.store.row(row.id);
      if (current === undefined) continue;
      this.launch(current);
      free--;
    }
  }

  private launch(row: JobRow): void {
    const run: Run = { controller: new AbortController(), resource: row.resource, done: Promise.resolve() };
    this.running.set(row.id, run);
    run.done = this.execute(row, run.controller.signal)
      .catch((err: unknown) => this.o.log.error({ job: row.id, kind: row.kind, error: errorMessage(err) }, 'job runner failed'))
      .finally(() => {
        this.running.delete(row.id);
        this.wake();
      });
  }

  private stopping(signal: AbortSignal): boolean {
    return signal.aborted && signal.reason === SHUTDOWN;
  }

  private async execute(row: JobRow, signal: AbortSignal): Promise<void> {
    const kind = this.kinds.get(row.kind);
    let status: JobStatus | undefined = statusOf(row);
    if (status.state === 'running') {
      if (kind === undefined) {
        status = await this.transition(row.id, status, { type: 'fail', error: toCodedError(csError('JOB_KIND_UNKNOWN', { kind: row.kind })) });
      } else if (row.cancel_requested_at !== null) {
        await this.store.skipPending(row.id);
        status = await this.transition(row.id, status, { type: 'cancel' });
      } else {
        status = await this.runTasks(row, kind, signal);
      }
    }
    if (status?.state === 'compensating') await this.compensate(row, kind, status);
  }

  /** Returns the job's status after its tasks, or undefined when the engine stopped mid-way. */
  private async runTasks(row: JobRow, kind: JobKind, signal: AbortSignal): Promise<JobStatus | undefined> {
    const running: JobStatus = { state: 'running' };
    for (const task of await this.store.tasks(row.id)) {
      if (task.state === 'succeeded' || task.state === 'skipped') continue;
      if (this.stopping(signal)) return undefined;
      if (signal.aborted) {
        await this.store.skipPending(row.id);
        return this.transition(row.id, running, { type: 'cancel' });
      }
      const def = kind.tasks[task.idx];
      if (def === undefined || def.name !== task.name) {
        const error = toCodedError(csError('TASK_FAILED', { task: task.name, message: `this version of job kind ${kind.name} has no such task` }));
        await this.endTask(row.id, task, { state: 'failed', error });
        await this.store.skipPending(row.id);
        return this.transition(row.id, running, { type: 'fail', error });
      }
      const outcome = await this.runTask(row, def, task, signal);
      if (outcome === 'interrupted') return undefined;
      if (outcome !== 'succeeded') {
        await this.store.skipPending(row.id);
        return this.transition(row.id, running, outcome === 'cancelled' ? { type: 'cancel' } : { type: 'fail', error: outcome.error });
      }
    }
    return this.transition(row.id, running, { type: 'done' });
  }

  private async runTask(row: JobRow, def: TaskDefinition<unknown>, task: TaskRow, signal: AbortSignal): Promise<'succeeded' | 'cancelled' | 'interrupted' | { error: CodedError }> {
    const run = task.runs + 1;
    await this.store.updateTask(row.id, task.idx, { state: 'running', runs: run, started_at: isoAt(this.o.clock), finished_at: null, error: null });
    this.announce(row.id);
    const log = this.o.log.child({ job: row.id, kind: row.kind, task: def.name });
    const progress = new ProgressWriter(this.o.progressIntervalMs, this.o.clock, async (p) => {
      await this.store.updateTask(row.id, task.idx, { progress_done: p.done, progress_total: p.total, progress_detail: p.detail });
      this.announce(row.id);
    });
    let details = JSON.parse(task.details) as JsonObject;
    const ctx: TaskContext<unknown> = {
      job: { id: row.id, kind: row.kind, resource: row.resource },
      task: { name: def.name, index: task.idx, run },
      params: JSON.parse(row.params) as unknown,
      signal,
      get details() {
        return details;
      },
      saveDetails: async (next) => {
        const text = JSON.stringify(next);
        if (text.length > MAX_DETAILS_BYTES) throw new RangeError(`task details of ${text.length} bytes exceed ${MAX_DETAILS_BYTES}`);
        await this.store.updateTask(row.id, task.idx, { details: text });
        details = JSON.parse(text) as JsonObject;
      },
      progress: (done, total, detail) => progress.report(done, total, detail),
      db: this.o.db,
      clock: this.o.clock,
      log,
    };
    try {
      await def.run(ctx);
      await progress.flush();
      await this.endTask(row.id, task, { state: 'succeeded', error: null });
      return 'succeeded';
    } catch (err) {
      if (this.stopping(signal)) {
        log.info('task interrupted by shutdown');
        return 'interrupted';
      }
      await progress.flush();
      if (signal.aborted) {
        await this.endTask(row.id, task, { state: 'cancelled', error: null });
        return 'cancelled';
      }
      const error = err instanceof CsError ? toCodedError(err) : toCodedError(csError('TASK_FAILED', { task: def.name, message: errorMessage(err) }));
      log.warn({ code: error.code, error: error.message }, 'task failed');
      await this.endTask(row.id, task, { state: 'failed', error });
      return { error };
    }
  }

  private async endTask(jobId: string, task: TaskRow, end: { state: 'succeeded' | 'failed' | 'cancelled'; error: CodedError | null }): Promise<void> {
    await this.store.updateTask(jobId, task.idx, { state: end.state, error: end.error === null ? null : JSON.stringify(end.error), finished_at: isoAt(this.o.clock) });
    this.announce(jobId);
  }

  private async compensate(row: JobRow, kind: JobKind | undefined, status: Extract<JobStatus, { state: 'compensating' }>): Promise<void> {
    if (kind?.compensate !== undefined) {
      const tasks = await this.store.tasks(row.id);
      try {
        await kind.compensate({
          job: { id: row.id, kind: row.kind, resource: row.resource },
          params: JSON.parse(row.params) as unknown,
          outcome: status.outcome,
          tasks: tasks.map((t) => ({ name: t.name, state: t.state, details: JSON.parse(t.details) as JsonObject })),
          // Not the job's own signal: a cancelled job has already aborted that one.
          signal: this.shutdown.signal,
          db: this.o.db,
          clock: this.o.clock,
          log: this.o.log.child({ job: row.id, kind: row.kind, step: 'compensate' }),
        });
      } catch (err) {
        if (this.stopping(this.shutdown.signal)) return; // compensates again at the next start
        const cause = status.outcome.state === 'failed' ? `the failure ${status.outcome.error.code}` : 'the cancel';
        const error = toCodedError(csError('COMPENSATION_FAILED', { cause, message: errorMessage(err) }));
        this.o.log.error({ job: row.id, kind: row.kind, error: error.message }, 'compensation failed');
        await this.transition(row.id, status, { type: 'compensation-failed', error });
        return;
      }
    }
    await this.transition(row.id, status, { type: 'compensated' });
  }

  private async transition(id: string, from: JobStatus, event: JobEvent): Promise<JobStatus> {
    const next = nextJobStatus(from, event);
    const moved = await this.store.setStatus(id, from.state, next, isFinished(next.state) ? { finishedAt: isoAt(this.o.clock) } : {});
    if (!moved) throw new Error(`job ${id} left state ${from.state} while its runner held it`);
    this.announce(id);
    return next;
  }
}

/** Persists progress at most every `intervalMs` of the injected clock, and the last value on flush. */
class ProgressWriter {
  private lastWrite = Number.NEGATIVE_INFINITY;
  private pending: { done: number; total: number; detail: string | null } | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly clock: Clock,
    private readonly write: (p: { done: number; total: number; detail: string | null }) => Promise<void>,
  ) {}

  async report(done: number, total: number, detail?: string): Promise<void> {
    if (!Number.isFinite(done) || !Number.isFinite(total) || done < 0 || total < 0) throw new RangeError(`progress ${done}/${total} is not a pair of non-negative numbers`);
    this.pending = { done, total, detail: detail ?? null };
    if (this.clock.now() - this.lastWrite >= this.intervalMs) await this.flush();
  }

  async flush(): Promise<void> {
    const p = this.pending;
    if (p === undefined) return;
    this.pending = undefined;
    this.lastWrite = this.clock.now();
    await this.write(p);
  }
}
