import type { ComponentFacts, PreflightFacts } from '../facts.js';
import type { Check, CheckOutcome } from '../types.js';

// Reprotect and failback move data from the failed-over machine's agent through a PS to an MT,
// all coordinated by the CS: each of them must be registered and heard from (codes 95226, 78174,
// 806, 78022), and the machine must run (78093) for its agent to register at all.

function heartbeatLost(c: ComponentFacts, timeoutMs: number): boolean {
  return !c.registered || c.lastHeartbeatAgeMs === null || c.lastHeartbeatAgeMs > timeoutMs;
}

function heartbeat(c: ComponentFacts, facts: PreflightFacts): CheckOutcome {
  // A role the item leaves empty is reported once, by failback-not-configured.
  if (c.configured === false) return { passed: true };
  const timeoutMs = facts.thresholds.heartbeatTimeoutMs;
  if (!heartbeatLost(c, timeoutMs)) return { passed: true };
  return { passed: false, params: { timeoutS: Math.round(timeoutMs / 1000) } };
}

/**
 * After a failover the agent on the cloud VM takes a while (up to 15 minutes in the source) to
 * register; reprotect polls this check with `waitForCheck` before failing on it.
 */
export const agentNotRegistered: Check = {
  id: 'agent-not-registered',
  code: 95226,
  operations: ['enable', 'reprotect', 'failback'],
  severity: 'error',
  evaluate: ({ agent }) => ({ passed: agent.configured === false || agent.registered }),
};

/** A machine the fabric no longer finds is reported by `source-deleted`. */
export const sourceNotRunning: Check = {
  id: 'source-not-running',
  code: 78093,
  operations: ['enable', 'reprotect'],
  severity: 'error',
  evaluate: ({ source }) => ({ passed: !source.exists || (source.powerState === 'running' && source.responding) }),
};

/** An agent that never registered is reported by `agent-not-registered` (95226). */
export const agentNoHeartbeat: Check = {
  id: 'agent-no-heartbeat',
  code: 78174,
  operations: ['enable', 'reprotect', 'failback'],
  severity: 'error',
  evaluate: (facts) => (facts.agent.registered ? heartbeat(facts.agent, facts) : { passed: true }),
};

export const psNoHeartbeat: Check = {
  id: 'ps-no-heartbeat',
  code: 806,
  operations: ['enable', 'reprotect', 'failback'],
  severity: 'error',
  evaluate: (facts) => heartbeat(facts.processServer, facts),
};

// Failover too: the MT rolls the target back to the chosen recovery point.
export const mtNoHeartbeat: Check = {
  id: 'mt-no-heartbeat',
  code: 78022,
  operations: ['enable', 'failover', 'reprotect', 'failback'],
  severity: 'error',
  evaluate: (facts) => heartbeat(facts.masterTarget, facts),
};

export const COMPONENT_CHECKS: readonly Check[] = [
  agentNotRegistered,
  sourceNotRunning,
  agentNoHeartbeat,
  psNoHeartbeat,
  mtNoHeartbeat,
];
