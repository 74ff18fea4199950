import { BoomerangError } from '../../replication/errors.js';
import type { CodedError } from '../errors.js';

/**
 * A job's status as a union and its transitions as one pure function; the engine persists what
 * this returns and nothing else.
 *
 *   queued ──start──► running ──done──► succeeded
 *     │                 │ fail / cancel
 *     │ cancel          ▼
 *     ▼           compensating ──compensated──► failed | cancelled (the outcome it carries)
 *  cancelled            └──compensation-failed──► failed (COMPENSATION_FAILED)
 */

export type Outcome = { readonly state: 'failed'; readonly error: CodedError } | { readonly state: 'cancelled' };

export type JobStatus =
  | { readonly state: 'queued' }
  | { readonly state: 'running' }
  | { readonly state: 'compensating'; readonly outcome: Outcome }
  | { readonly state: 'succeeded' }
  | { readonly state: 'failed'; readonly error: CodedError }
  | { readonly state: 'cancelled' };

export type JobEvent =
  | { readonly type: 'start' }
  | { readonly type: 'done' }
  | { readonly type: 'fail'; readonly error: CodedError }
  | { readonly type: 'cancel' }
  | { readonly type: 'compensated' }
  | { readonly type: 'compensation-failed'; readonly error: CodedError };

export function nextJobStatus(s: JobStatus, e: JobEvent): JobStatus {
  switch (s.state) {
    case 'queued':
      if (e.type === 'start') return { state: 'running' };
      if (e.type === 'cancel') return { state: 'cancelled' };
      break;
    case 'running':
      if (e.type === 'done') return { state: 'succeeded' };
      if (e.type === 'fail') return { state: 'compensating', outcome: { state: 'failed', error: e.error } };
      if (e.type === 'cancel') return { state: 'compensating', outcome: { state: 'cancelled' } };
      break;
    case 'compensating':
      if (e.type === 'compensated') return s.outcome;
      if (e.type === 'compensation-failed') return { state: 'failed', error: e.error };
      break;
    default:
      break;
  }
  throw new BoomerangError('JOB_TRANSITION', `a ${s.state} job cannot take event ${e.type}`);
}

export function isFinished(state: JobStatus['state']): state is 'succeeded' | 'failed' | 'cancelled' {
  return state === 'succeeded' || state === 'failed' || state === 'cancelled';
}
