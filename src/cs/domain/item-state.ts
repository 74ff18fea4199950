import { csError } from '../errors.js';

/**
 * The lifecycle of a protected item (DESIGN §2) as a pure transition table. The `-ing` states
 * are held while the operation's job runs; the job ends them with its `…Done` or `…Aborted`
 * operation. `direction` says which way replication runs: forward (A→B) or failback (B→A).
 */

export const ITEM_STATES = [
  'Unprotected',
  'InitialReplication',
  'Protected',
  'FailingOver',
  'FailedOver',
  'Committed',
  'Reprotecting',
  'FailingBack',
  'FailbackFailed',
  'CancellingFailback',
  'FailedBack',
  'ProtectionDisabled',
  'Migrated',
] as const;
export type ItemState = (typeof ITEM_STATES)[number];

export type Direction = 'forward' | 'failback';

export interface ItemPosition {
  state: ItemState;
  direction: Direction;
}

interface Rule {
  from: readonly ItemState[];
  to: ItemState;
  /** Allowed only while replicating this way. */
  when?: Direction;
  /** The direction the item has afterwards; unchanged when absent. */
  direction?: Direction | 'flip';
}

export const ITEM_OPERATIONS = [
  'enable',
  'initialReplicationDone',
  'initialReplicationAborted',
  'failover',
  'failoverDone',
  'failoverAborted',
  'changePoint',
  'commit',
  'reprotect',
  'reprotectDone',
  'reprotectAborted',
  'failback',
  'failbackDone',
  'failbackAborted',
  'failbackFailed',
  'cancelFailback',
  'cancelFailbackDone',
  'cancelFailbackFailed',
  'completeMigration',
  'disable',
] as const;
export type ItemOperation = (typeof ITEM_OPERATIONS)[number];

const TABLE: Readonly<Record<ItemOperation, Rule>> = Object.freeze({
  enable: { from: ['Unprotected', 'ProtectionDisabled'], to: 'InitialReplication', direction: 'forward' },
  initialReplicationDone: { from: ['InitialReplication'], to: 'Protected' },
  // A failed enable leaves nothing protected; the item can only be disabled and enabled again.
  initialReplicationAborted: { from: ['InitialReplication'], to: 'ProtectionDisabled' },
  failover: { from: ['Protected'], to: 'FailingOver', when: 'forward' },
  failoverDone: { from: ['FailingOver'], to: 'FailedOver' },
  failoverAborted: { from: ['FailingOver'], to: 'Protected' },
  // Until commit another recovery point can be chosen; the job runs while the item stays FailedOver.
  changePoint: { from: ['FailedOver'], to: 'FailedOver' },
  commit: { from: ['FailedOver', 'FailedBack'], to: 'Committed' },
  // Reprotect replicates the other way from its first step: "Reprotecting B→A".
  reprotect: { from: ['Committed'], to: 'Reprotecting', direction: 'flip' },
  reprotectDone: { from: ['Reprotecting'], to: 'Protected' },
  reprotectAborted: { from: ['Reprotecting'], to: 'Committed', direction: 'flip' },
  // Also the retry of a failback that failed.
  failback: { from: ['Protected', 'FailbackFailed'], to: 'FailingBack', when: 'failback' },
  failbackDone: { from: ['FailingBack'], to: 'FailedBack' },
  // A failback cancelled while running rolls back to replicating B→A as before it.
  failbackAborted: { from: ['FailingBack'], to: 'Protected' },
  // A failback that failed part-way waits for the operator: retry it, or cancel it.
  failbackFailed: { from: ['FailingBack'], to: 'FailbackFailed' },
  cancelFailback: { from: ['FailbackFailed'], to: 'CancellingFailback' },
  cancelFailbackDone: { from: ['CancellingFailback'], to: 'Protected' },
  // A cancel that could not finish goes back to waiting for the operator.
  cancelFailbackFailed: { from: ['CancellingFailback'], to: 'FailbackFailed' },
  completeMigration: { from: ['Committed'], to: 'Migrated', when: 'forward' },
  disable: { from: ['InitialReplication', 'Protected', 'FailedOver', 'Committed', 'FailedBack'], to: 'ProtectionDisabled' },
});

function permits(rule: Rule, at: ItemPosition): boolean {
  return rule.from.includes(at.state) && (rule.when === undefined || rule.when === at.direction);
}

function opposite(d: Direction): Direction {
  return d === 'forward' ? 'failback' : 'forward';
}

/** The position after `operation`, or undefined when the table does not allow it from `at`. */
export function nextPosition(at: ItemPosition, operation: ItemOperation): ItemPosition | undefined {
  const rule = TABLE[operation];
  if (!permits(rule, at)) return undefined;
  const direction = rule.direction === undefined ? at.direction : rule.direction === 'flip' ? opposite(at.direction) : rule.direction;
  return { state: rule.to, direction };
}

/** Every operation the table allows from `at`, in table order. */
export function allowedOperations(at: ItemPosition): ItemOperation[] {
  return ITEM_OPERATIONS.filter((op) => permits(TABLE[op], at));
}

/** Like nextPosition, but refuses with TRANSITION_NOT_ALLOWED (409) naming what is allowed. */
export function transition(itemId: string, at: ItemPosition, operation: ItemOperation): ItemPosition {
  const next = nextPosition(at, operation);
  if (next !== undefined) return next;
  const allowed = allowedOperations(at);
  throw csError('TRANSITION_NOT_ALLOWED', {
    item: itemId,
    operation,
    state: `${at.state} (replicating ${at.direction})`,
    allowed: allowed.length === 0 ? 'none' : allowed.join(', '),
  });
}

export function isItemState(s: string): s is ItemState {
  return (ITEM_STATES as readonly string[]).includes(s);
}

/** States in which an item no longer holds its machine: the machine may be protected anew. */
export const RELEASED_STATES: readonly ItemState[] = ['ProtectionDisabled', 'Migrated'];
