import type { Check } from '../types.js';

// Replication health that makes an operation risky or slow rather than impossible, except a full
// spool: the PS then refuses data and the agents fall back to a resync.

/** An unregistered PS is reported by `ps-no-heartbeat` (806); its spool figures would be stale. */
export const psSpoolFull: Check = {
  id: 'ps-spool-full',
  operations: ['enable', 'reprotect', 'failback'],
  severity: 'error',
  evaluate: ({ processServer: ps }) => ({ passed: !ps.registered || (ps.spool.state !== 'full' && ps.spool.ratio < 1) }),
};

/** A full spool is reported by `ps-spool-full` alone. */
export const psSpoolNearlyFull: Check = {
  id: 'ps-spool-nearly-full',
  operations: ['enable', 'reprotect', 'failback'],
  severity: 'warning',
  evaluate: ({ processServer: ps, thresholds }) => {
    const full = ps.spool.state === 'full' || ps.spool.ratio >= 1;
    const nearly = ps.spool.state === 'nearly-full' || ps.spool.ratio >= thresholds.spoolNearlyFullRatio;
    if (!ps.registered || full || !nearly) return { passed: true };
    return { passed: false, params: { usedPct: Math.round(ps.spool.ratio * 100) } };
  },
};

// Failover: data newer than the RPO is lost. Failback: drains first, so it takes longer.
export const rpoOverThreshold: Check = {
  id: 'rpo-over-threshold',
  operations: ['failover', 'failback'],
  severity: 'warning',
  evaluate: ({ currentRpoS, policy }) =>
    currentRpoS === null || currentRpoS <= policy.rpoThresholdS
      ? { passed: true }
      : { passed: false, params: { rpoS: Math.round(currentRpoS), thresholdS: policy.rpoThresholdS } },
};

export const HEALTH_CHECKS: readonly Check[] = [psSpoolFull, psSpoolNearlyFull, rpoOverThreshold];
