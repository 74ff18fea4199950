import { setTimeout as delay } from 'node:timers/promises';
import { isTransient } from './storage-errors.js';

/**
 * Bounded retries with exponential backoff and full jitter for storage requests: at most
 * `maxAttempts` tries and no new try once `maxElapsedMs` has passed since the first. Only
 * transient failures (throttling, 5xx, timeouts, network) are retried; page writes, clears and
 * reads are idempotent, so sending one again is always safe.
 */
export interface RetryPolicy {
  /** Tries in all, the first included. Default 6. */
  maxAttempts: number;
  /** No try starts later than this after the first. Default 60 s. */
  maxElapsedMs: number;
  /** Backoff before the second try; doubles each time. Default 100 ms. */
  baseDelayMs: number;
  /** Cap of one backoff. Default 5 s. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: Readonly<RetryPolicy> = Object.freeze({ maxAttempts: 6, maxElapsedMs: 60_000, baseDelayMs: 100, maxDelayMs: 5_000 });

/** Runs `attempt` until it succeeds, fails with a non-transient error or the policy is spent. */
export async function withRetry<T>(attempt: (n: number) => Promise<T>, policy: RetryPolicy = DEFAULT_RETRY): Promise<T> {
  const started = Date.now();
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (!isTransient(err) || n >= policy.maxAttempts) throw err;
      const backoff = Math.random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (n - 1));
      if (Date.now() - started + backoff > policy.maxElapsedMs) throw err;
      await delay(backoff);
    }
  }
}
