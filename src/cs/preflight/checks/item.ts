import type { ItemFacts, ItemState } from '../facts.js';
import { stateTerm } from '../messages.js';
import type { Check, CheckOutcome } from '../types.js';

// The source refuses reprotect and failback for an item that was migrated, whose cloud VM was
// deleted or moved to another resource group, or whose protection was disabled; DESIGN §2 adds
// the states each operation starts from.

function isMigrated(item: ItemFacts): boolean {
  return item.flags.migrated || item.state === 'Migrated';
}

function isProtectionDisabled(item: ItemFacts): boolean {
  return item.flags.protectionDisabled || item.state === 'ProtectionDisabled';
}

/**
 * Each problem is reported by one check: a migrated or disabled item fails those two checks, and
 * the state checks below pass it rather than repeat the same cause in other words.
 */
function requireState(item: ItemFacts, ok: (item: ItemFacts) => boolean): CheckOutcome {
  if (isMigrated(item) || isProtectionDisabled(item) || ok(item)) return { passed: true };
  return { passed: false, params: { state: stateTerm(item.state) } };
}

function oneOf(...states: ItemState[]): (item: ItemFacts) => boolean {
  return (item) => states.includes(item.state);
}

export const itemMigrated: Check = {
  id: 'item-migrated',
  operations: ['enable', 'failover', 'commit', 'reprotect', 'failback', 'cancel'],
  severity: 'error',
  evaluate: ({ item }) => ({ passed: !isMigrated(item) }),
};

// Disable is left out: disabling an item twice does no harm.
export const itemProtectionDisabled: Check = {
  id: 'item-protection-disabled',
  operations: ['failover', 'commit', 'reprotect', 'failback', 'cancel'],
  severity: 'error',
  evaluate: ({ item }) => ({ passed: !isProtectionDisabled(item) }),
};

// Failover is left out: losing the source is what failover is for.
export const sourceDeleted: Check = {
  id: 'source-deleted',
  operations: ['enable', 'reprotect', 'failback', 'cancel'],
  severity: 'error',
  evaluate: ({ item, source }) => ({ passed: !item.flags.sourceDeleted && source.exists }),
};

export const itemAlreadyProtected: Check = {
  id: 'item-already-protected',
  operations: ['enable'],
  severity: 'error',
  evaluate: ({ item }) => requireState(item, oneOf('Unprotected', 'ProtectionDisabled')),
};

export const itemNotProtected: Check = {
  id: 'item-not-protected',
  operations: ['failover'],
  severity: 'error',
  evaluate: ({ item }) => requireState(item, oneOf('Protected')),
};

export const itemNothingToCommit: Check = {
  id: 'item-nothing-to-commit',
  operations: ['commit'],
  severity: 'error',
  evaluate: ({ item }) => requireState(item, oneOf('FailedOver', 'FailedBack')),
};

/** A failed-over item that is not committed yet is reported by `item-not-committed`. */
export const itemNotFailedOver: Check = {
  id: 'item-not-failed-over',
  operations: ['reprotect'],
  severity: 'error',
  evaluate: ({ item }) => requireState(item, oneOf('FailedOver', 'Committed')),
};

export const itemNotCommitted: Check = {
  id: 'item-not-committed',
  operations: ['reprotect'],
  severity: 'error',
  evaluate: ({ item }) => requireState(item, (i) => i.state !== 'FailedOver'),
};

export const itemNotReprotected: Check = {
  id: 'item-not-reprotected',
  operations: ['failback'],
  severity: 'error',
  // Protected in the forward direction has not been failed over yet: there is nothing to fail back.
  evaluate: ({ item }) => requireState(item, (i) => (i.state === 'Protected' || i.state === 'FailbackFailed') && i.direction === 'failback'),
};

export const itemNothingToCancel: Check = {
  id: 'item-nothing-to-cancel',
  operations: ['cancel'],
  severity: 'error',
  evaluate: ({ item }) => requireState(item, oneOf('FailedBack', 'FailbackFailed')),
};

export const failbackNotConfigured: Check = {
  id: 'failback-not-configured',
  operations: ['reprotect', 'failback', 'cancel'],
  severity: 'error',
  evaluate: ({ item }) => ({ passed: item.flags.failbackConfigured !== false }),
};

export const ITEM_CHECKS: readonly Check[] = [
  itemMigrated,
  itemProtectionDisabled,
  sourceDeleted,
  itemAlreadyProtected,
  itemNotProtected,
  itemNothingToCommit,
  itemNotFailedOver,
  itemNotCommitted,
  itemNotReprotected,
  itemNothingToCancel,
  failbackNotConfigured,
];
