import type { Static, TSchema } from '@sinclair/typebox';
import type { Logger } from '../../runtime/log.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/open.js';
import type { Outcome } from './machine.js';

/**
 * How a kind of job is written. A job is an ordered list of tasks run one after the other; each
 * task is told whether it is being resumed and can save details to resume from. On restart after
 * a crash, an interrupted task that is `resumable` runs again (with its saved details); one that
 * is not fails the job with JOB_INTERRUPTED, and the kind's `compensate` rolls back.
 */

export type JsonObject = { [key: string]: unknown };

export interface TaskContext<P> {
  readonly job: { readonly id: string; readonly kind: string; readonly resource: string | null };
  readonly task: {
    readonly name: string;
    readonly index: number;
    /** 1 on the first run; more when resumed after a restart. */
    readonly run: number;
  };
  readonly params: P;
  /** Aborted when the job is cancelled or the CS stops; the task should then reject promptly. */
  readonly signal: AbortSignal;
  /** What the task saved last (an empty object at first). */
  readonly details: Readonly<JsonObject>;
  /** Persists `details` durably before resolving: the resume point after a crash. */
  saveDetails(details: JsonObject): Promise<void>;
  /** Reports progress (persisted at most every progressIntervalMs, and always at the end). */
  progress(done: number, total: number, detail?: string): Promise<void>;
  readonly db: Db;
  readonly clock: Clock;
  readonly log: Logger;
}

export interface TaskDefinition<P> {
  readonly name: string;
  /**
   * True when running the task again after an interruption is safe: it is idempotent, or it
   * resumes from its saved details. False for steps that must not be repeated blindly (a switch
   * of direction, a power operation whose outcome is unknown).
   */
  readonly resumable: boolean;
  run(ctx: TaskContext<P>): Promise<void>;
}

export interface TaskRecord {
  readonly name: string;
  readonly state: 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'skipped';
  readonly details: Readonly<JsonObject>;
}

export interface CompensationContext<P> {
  readonly job: { readonly id: string; readonly kind: string; readonly resource: string | null };
  readonly params: P;
  /** Why the job is rolling back. */
  readonly outcome: Outcome;
  /** Every task with its state and saved details: what there is to undo. */
  readonly tasks: readonly TaskRecord[];
  readonly signal: AbortSignal;
  readonly db: Db;
  readonly clock: Clock;
  readonly log: Logger;
}

export interface JobKind<P = unknown> {
  readonly name: string;
  /** Parameters are validated against it when the job is enqueued. */
  readonly params: TSchema;
  readonly tasks: readonly TaskDefinition<P>[];
  /**
   * Runs when the job fails or is cancelled after it started, to leave things as they were.
   * It may run again after a restart, so it must be idempotent.
   */
  compensate?(ctx: CompensationContext<P>): Promise<void>;
}

/** Types a kind's tasks by its parameter schema. */
export function defineJobKind<S extends TSchema>(kind: {
  name: string;
  params: S;
  tasks: readonly TaskDefinition<Static<S>>[];
  compensate?: (ctx: CompensationContext<Static<S>>) => Promise<void>;
}): JobKind<Static<S>> {
  if (kind.tasks.length === 0) throw new TypeError(`job kind ${kind.name} has no tasks`);
  const names = new Set(kind.tasks.map((t) => t.name));
  if (names.size !== kind.tasks.length) throw new TypeError(`job kind ${kind.name} has two tasks with the same name`);
  return Object.freeze({ ...kind, tasks: Object.freeze([...kind.tasks]) });
}
