import type { Transaction } from 'kysely';
import { isoAt, type Clock } from '../clock.js';
import type { Db } from '../db/open.js';
import type { Database, JobRow, TaskRow, TaskStateName, TasksTable } from '../db/schema.js';
import type { CodedError } from '../errors.js';
import type { JobStatus } from './machine.js';
import type { JsonObject } from './types.js';

/** Jobs and tasks in the database, and their API views. Every write bumps the job's version. */

export interface TaskView {
  index: number;
  name: string;
  state: TaskStateName;
  resumable: boolean;
  runs: number;
  startedAt: string | null;
  finishedAt: string | null;
  progress: { done: number; total: number; detail: string | null };
  error: CodedError | null;
}

export interface JobView {
  id: string;
  kind: string;
  state: JobStatus['state'];
  resource: string | null;
  params: JsonObject;
  version: number;
  resumes: number;
  cancelRequested: boolean;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
  /** Fraction of the job done, 0..1: finished tasks plus the running one's own fraction. */
  progress: number;
  error: CodedError | null;
  tasks: TaskView[];
}

export interface JobFilter {
  state?: JobStatus['state'];
  resource?: string;
  limit: number;
}

type TaskPatch = Partial<Pick<TasksTable, 'state' | 'runs' | 'progress_done' | 'progress_total' | 'progress_detail' | 'details' | 'error' | 'started_at' | 'finished_at'>>;

function parseError(text: string | null): CodedError | null {
  return text === null ? null : (JSON.parse(text) as CodedError);
}

export function statusOf(row: Pick<JobRow, 'state' | 'outcome' | 'error'>): JobStatus {
  const error = parseError(row.error);
  switch (row.state) {
    case 'compensating':
      return { state: 'compensating', outcome: row.outcome === 'failed' && error !== null ? { state: 'failed', error } : { state: 'cancelled' } };
    case 'failed':
      return { state: 'failed', error: error ?? { code: 'INTERNAL', message: 'failed without a recorded error' } };
    default:
      return { state: row.state };
  }
}

function columnsOf(s: JobStatus): Pick<JobRow, 'state' | 'outcome' | 'error'> {
  switch (s.state) {
    case 'compensating':
      return { state: s.state, outcome: s.outcome.state, error: s.outcome.state === 'failed' ? JSON.stringify(s.outcome.error) : null };
    case 'failed':
      return { state: s.state, outcome: null, error: JSON.stringify(s.error) };
    default:
      return { state: s.state, outcome: null, error: null };
  }
}

function taskView(t: TaskRow): TaskView {
  return {
    index: t.idx,
    name: t.name,
    state: t.state,
    resumable: t.resumable === 1,
    runs: t.runs,
    startedAt: t.started_at,
    finishedAt: t.finished_at,
    progress: { done: t.progress_done, total: t.progress_total, detail: t.progress_detail },
    error: parseError(t.error),
  };
}

function jobView(j: JobRow, tasks: TaskRow[]): JobView {
  const views = tasks.map(taskView);
  const finished = views.filter((t) => t.state === 'succeeded' || t.state === 'skipped').length;
  const running = views.find((t) => t.state === 'running');
  const partial = running !== undefined && running.progress.total > 0 ? Math.min(1, running.progress.done / running.progress.total) : 0;
  return {
    id: j.id,
    kind: j.kind,
    state: j.state,
    resource: j.resource,
    params: JSON.parse(j.params) as JsonObject,
    version: j.version,
    resumes: j.resumes,
    cancelRequested: j.cancel_requested_at !== null,
    createdAt: j.created_at,
    startedAt: j.started_at,
    finishedAt: j.finished_at,
    updatedAt: j.updated_at,
    progress: j.state === 'succeeded' ? 1 : views.length === 0 ? 0 : (finished + partial) / views.length,
    error: parseError(j.error),
    tasks: views,
  };
}

export interface NewJobInput {
  id: string;
  kind: string;
  params: JsonObject;
  resource: string | null;
  tasks: readonly { name: string; resumable: boolean }[];
}

export class JobStore {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
  ) {}

  /** Inserts a queued job and its pending tasks inside the caller's transaction. */
  async insert(trx: Transaction<Database>, job: NewJobInput): Promise<void> {
    const now = isoAt(this.clock);
    const last = await trx.selectFrom('jobs').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirst();
    await trx
      .insertInto('jobs')
      .values({
        id: job.id,
        kind: job.kind,
        state: 'queued',
        params: JSON.stringify(job.params),
        resource: job.resource,
        outcome: null,
        error: null,
        cancel_requested_at: null,
        resumes: 0,
        version: 1,
        seq: Number(last?.seq ?? 0) + 1,
        created_at: now,
        started_at: null,
        finished_at: null,
        updated_at: now,
      })
      .execute();
    await trx
      .insertInto('tasks')
      .values(
        job.tasks.map((t, idx) => ({
          job_id: job.id,
          idx,
          name: t.name,
          state: 'pending' as const,
          resumable: t.resumable ? 1 : 0,
          runs: 0,
          progress_done: 0,
          progress_total: 0,
          progress_detail: null,
          details: '{}',
          error: null,
          started_at: null,
          finished_at: null,
        })),
      )
      .execute();
  }

  async row(id: string): Promise<JobRow | undefined> {
    return this.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async tasks(jobId: string): Promise<TaskRow[]> {
    return this.db.selectFrom('tasks').selectAll().where('job_id', '=', jobId).orderBy('idx').execute();
  }

  async view(id: string): Promise<JobView | undefined> {
    const row = await this.row(id);
    return row === undefined ? undefined : jobView(row, await this.tasks(id));
  }

  /** Newest first. */
  async list(filter: JobFilter): Promise<JobView[]> {
    let q = this.db.selectFrom('jobs').selectAll();
    if (filter.state !== undefined) q = q.where('state', '=', filter.state);
    if (filter.resource !== undefined) q = q.where('resource', '=', filter.resource);
    const rows = await q.orderBy('seq', 'desc').limit(filter.limit).execute();
    if (rows.length === 0) return [];
    const tasks = await this.db
      .selectFrom('tasks')
      .selectAll()
      .where('job_id', 'in', rows.map((r) => r.id))
      .orderBy('idx')
      .execute();
    return rows.map((r) => jobView(r, tasks.filter((t) => t.job_id === r.id)));
  }

  /** In creation order. */
  async rowsInState(state: JobStatus['state']): Promise<JobRow[]> {
    return this.db.selectFrom('jobs').selectAll().where('state', '=', state).orderBy('seq').execute();
  }

  async countByState(): Promise<Map<string, number>> {
    const rows = await this.db
      .selectFrom('jobs')
      .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('state')
      .execute();
    return new Map(rows.map((r) => [r.state, Number(r.n)]));
  }

  /**
   * Moves the job to `status` if it is still in `from` (a compare-and-set, so a cancel and the
   * runner cannot both win); returns whether it did.
   */
  async setStatus(id: string, from: JobStatus['state'], status: JobStatus, extra: { startedAt?: string; finishedAt?: string } = {}): Promise<boolean> {
    const now = isoAt(this.clock);
    const result = await this.db
      .updateTable('jobs')
      .set((eb) => ({
        ...columnsOf(status),
        ...(extra.startedAt === undefined ? {} : { started_at: extra.startedAt }),
        ...(extra.finishedAt === undefined ? {} : { finished_at: extra.finishedAt }),
        version: eb('version', '+', 1),
        updated_at: now,
      }))
      .where('id', '=', id)
      .where('state', '=', from)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Counts a pick-up after a restart. */
  async markResumed(id: string): Promise<void> {
    const now = isoAt(this.clock);
    await this.db
      .updateTable('jobs')
      .set((eb) => ({ resumes: eb('resumes', '+', 1), version: eb('version', '+', 1), updated_at: now }))
      .where('id', '=', id)
      .execute();
  }

  async requestCancel(id: string): Promise<void> {
    const now = isoAt(this.clock);
    await this.db
      .updateTable('jobs')
      .set((eb) => ({ cancel_requested_at: now, version: eb('version', '+', 1), updated_at: now }))
      .where('id', '=', id)
      .where('cancel_requested_at', 'is', null)
      .execute();
  }

  async updateTask(jobId: string, idx: number, patch: TaskPatch): Promise<void> {
    const now = isoAt(this.clock);
    await this.db.transaction().execute(async (trx) => {
      await trx.updateTable('tasks').set(patch).where('job_id', '=', jobId).where('idx', '=', idx).execute();
      await trx
        .updateTable('jobs')
        .set((eb) => ({ version: eb('version', '+', 1), updated_at: now }))
        .where('id', '=', jobId)
        .execute();
    });
  }

  /** Marks every task still pending as skipped: the job ended before reaching them. */
  async skipPending(jobId: string): Promise<void> {
    await this.db.updateTable('tasks').set({ state: 'skipped' }).where('job_id', '=', jobId).where('state', '=', 'pending').execute();
  }
}
