import { setTimeout as sleep } from 'node:timers/promises';
import type { PreflightFacts } from './facts.js';
import type { Check } from './types.js';

/** Time as `waitForCheck` sees it; tests pass a fake one so no real time passes. */
export interface Clock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms, signal) => sleep(ms, undefined, signal ? { signal } : {}),
};

export interface WaitOptions {
  timeoutMs: number;
  /** Time between evaluations; 10 s by default. */
  intervalMs?: number;
  onPoll?: (poll: { attempt: number; elapsedMs: number; passed: boolean }) => void;
  signal?: AbortSignal;
  clock?: Clock;
}

export interface WaitResult {
  passed: boolean;
  polls: number;
  elapsedMs: number;
  /** The snapshot of the last evaluation, to run the full pre-flight on. */
  facts: PreflightFacts;
}

export const DEFAULT_POLL_INTERVAL_MS = 10_000;

/**
 * Re-evaluates `check` on fresh facts until it passes or `timeoutMs` has elapsed. Reprotect uses it
 * for agent registration (95226): after a failover the cloud VM's agent takes minutes to register,
 * and failing at once would only make the operator retry by hand. The last evaluation happens at
 * the deadline; an abort rejects with the signal's reason.
 */
export async function waitForCheck(check: Check, refreshFacts: () => Promise<PreflightFacts>, options: WaitOptions): Promise<WaitResult> {
  const clock = options.clock ?? systemClock;
  const intervalMs = options.intervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  const start = clock.now();
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted();
    const facts = await refreshFacts();
    const { passed } = await check.evaluate(facts);
    const elapsedMs = clock.now() - start;
    options.onPoll?.({ attempt, elapsedMs, passed });
    const remainingMs = options.timeoutMs - elapsedMs;
    if (passed || remainingMs <= 0) return { passed, polls: attempt, elapsedMs, facts };
    await clock.sleep(Math.min(intervalMs, remainingMs), options.signal);
  }
}
