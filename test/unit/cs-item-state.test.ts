import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CsError } from '../../src/cs/errors.js';
import { allowedOperations, ITEM_STATES, nextPosition, transition, type Direction, type ItemOperation, type ItemPosition, type ItemState } from '../../src/cs/domain/item-state.js';

/** The whole table, written out: what each (state, direction) allows, and where it leads. */
const EXPECTED: Record<ItemState, Record<Direction, Partial<Record<ItemOperation, ItemPosition>>>> = {
  Unprotected: {
    forward: { enable: { state: 'InitialReplication', direction: 'forward' } },
    failback: { enable: { state: 'InitialReplication', direction: 'forward' } },
  },
  InitialReplication: {
    forward: {
      initialReplicationDone: { state: 'Protected', direction: 'forward' },
      initialReplicationAborted: { state: 'ProtectionDisabled', direction: 'forward' },
      disable: { state: 'ProtectionDisabled', direction: 'forward' },
    },
    failback: {
      initialReplicationDone: { state: 'Protected', direction: 'failback' },
      initialReplicationAborted: { state: 'ProtectionDisabled', direction: 'failback' },
      disable: { state: 'ProtectionDisabled', direction: 'failback' },
    },
  },
  Protected: {
    forward: { failover: { state: 'FailingOver', direction: 'forward' }, disable: { state: 'ProtectionDisabled', direction: 'forward' } },
    failback: { failback: { state: 'FailingBack', direction: 'failback' }, disable: { state: 'ProtectionDisabled', direction: 'failback' } },
  },
  FailingOver: {
    forward: { failoverDone: { state: 'FailedOver', direction: 'forward' }, failoverAborted: { state: 'Protected', direction: 'forward' } },
    failback: { failoverDone: { state: 'FailedOver', direction: 'failback' }, failoverAborted: { state: 'Protected', direction: 'failback' } },
  },
  FailedOver: {
    forward: {
      changePoint: { state: 'FailedOver', direction: 'forward' },
      commit: { state: 'Committed', direction: 'forward' },
      disable: { state: 'ProtectionDisabled', direction: 'forward' },
    },
    failback: {
      changePoint: { state: 'FailedOver', direction: 'failback' },
      commit: { state: 'Committed', direction: 'failback' },
      disable: { state: 'ProtectionDisabled', direction: 'failback' },
    },
  },
  Committed: {
    forward: {
      reprotect: { state: 'Reprotecting', direction: 'failback' },
      completeMigration: { state: 'Migrated', direction: 'forward' },
      disable: { state: 'ProtectionDisabled', direction: 'forward' },
    },
    failback: { reprotect: { state: 'Reprotecting', direction: 'forward' }, disable: { state: 'ProtectionDisabled', direction: 'failback' } },
  },
  Reprotecting: {
    forward: { reprotectDone: { state: 'Protected', direction: 'forward' }, reprotectAborted: { state: 'Committed', direction: 'failback' } },
    failback: { reprotectDone: { state: 'Protected', direction: 'failback' }, reprotectAborted: { state: 'Committed', direction: 'forward' } },
  },
  FailingBack: {
    forward: {
      failbackDone: { state: 'FailedBack', direction: 'forward' },
      failbackAborted: { state: 'Protected', direction: 'forward' },
      failbackFailed: { state: 'FailbackFailed', direction: 'forward' },
    },
    failback: {
      failbackDone: { state: 'FailedBack', direction: 'failback' },
      failbackAborted: { state: 'Protected', direction: 'failback' },
      failbackFailed: { state: 'FailbackFailed', direction: 'failback' },
    },
  },
  FailbackFailed: {
    forward: { cancelFailback: { state: 'CancellingFailback', direction: 'forward' } },
    failback: { failback: { state: 'FailingBack', direction: 'failback' }, cancelFailback: { state: 'CancellingFailback', direction: 'failback' } },
  },
  CancellingFailback: {
    forward: { cancelFailbackDone: { state: 'Protected', direction: 'forward' }, cancelFailbackFailed: { state: 'FailbackFailed', direction: 'forward' } },
    failback: { cancelFailbackDone: { state: 'Protected', direction: 'failback' }, cancelFailbackFailed: { state: 'FailbackFailed', direction: 'failback' } },
  },
  FailedBack: {
    forward: { commit: { state: 'Committed', direction: 'forward' }, disable: { state: 'ProtectionDisabled', direction: 'forward' } },
    failback: { commit: { state: 'Committed', direction: 'failback' }, disable: { state: 'ProtectionDisabled', direction: 'failback' } },
  },
  ProtectionDisabled: {
    forward: { enable: { state: 'InitialReplication', direction: 'forward' } },
    failback: { enable: { state: 'InitialReplication', direction: 'forward' } },
  },
  Migrated: { forward: {}, failback: {} },
};

test('every state and direction allows exactly the expected operations, leading where expected', () => {
  for (const state of ITEM_STATES) {
    for (const direction of ['forward', 'failback'] as const) {
      const at = { state, direction };
      const expected = EXPECTED[state][direction];
      assert.deepEqual(allowedOperations(at).sort(), Object.keys(expected).sort(), `${state} ${direction}`);
      for (const [op, to] of Object.entries(expected)) assert.deepEqual(nextPosition(at, op as ItemOperation), to, `${state} ${direction} ${op}`);
    }
  }
});

test('the lifecycle of DESIGN §2 runs through the table and comes back to protected A→B', () => {
  const steps: [ItemOperation, ItemState, Direction][] = [
    ['enable', 'InitialReplication', 'forward'],
    ['initialReplicationDone', 'Protected', 'forward'],
    ['failover', 'FailingOver', 'forward'],
    ['failoverDone', 'FailedOver', 'forward'],
    ['changePoint', 'FailedOver', 'forward'],
    ['commit', 'Committed', 'forward'],
    ['reprotect', 'Reprotecting', 'failback'],
    ['reprotectDone', 'Protected', 'failback'],
    ['failback', 'FailingBack', 'failback'],
    ['failbackDone', 'FailedBack', 'failback'],
    ['commit', 'Committed', 'failback'],
    ['reprotect', 'Reprotecting', 'forward'],
    ['reprotectDone', 'Protected', 'forward'],
  ];
  let at: ItemPosition = { state: 'Unprotected', direction: 'forward' };
  for (const [op, state, direction] of steps) {
    at = transition('item-1', at, op);
    assert.deepEqual(at, { state, direction }, op);
  }
});

test('a failed failback waits for retry or cancel; cancelling returns to replicating B→A; a failed reprotect returns to committed', () => {
  assert.deepEqual(transition('i', { state: 'FailingBack', direction: 'failback' }, 'failbackAborted'), { state: 'Protected', direction: 'failback' });
  const failed = transition('i', { state: 'FailingBack', direction: 'failback' }, 'failbackFailed');
  assert.deepEqual(transition('i', failed, 'failback'), { state: 'FailingBack', direction: 'failback' });
  const cancelling = transition('i', failed, 'cancelFailback');
  assert.deepEqual(transition('i', cancelling, 'cancelFailbackDone'), { state: 'Protected', direction: 'failback' });
  const reprotecting = transition('i', { state: 'Committed', direction: 'forward' }, 'reprotect');
  assert.deepEqual(transition('i', reprotecting, 'reprotectAborted'), { state: 'Committed', direction: 'forward' });
});

test('refused transitions throw TRANSITION_NOT_ALLOWED (409) naming the state and what is allowed', () => {
  const refused: [ItemPosition, ItemOperation][] = [
    [{ state: 'Migrated', direction: 'forward' }, 'reprotect'],
    [{ state: 'ProtectionDisabled', direction: 'forward' }, 'reprotect'],
    [{ state: 'Protected', direction: 'forward' }, 'reprotect'],
    [{ state: 'Protected', direction: 'forward' }, 'commit'],
    [{ state: 'Protected', direction: 'failback' }, 'failover'],
    [{ state: 'Protected', direction: 'forward' }, 'failback'],
    [{ state: 'Committed', direction: 'failback' }, 'completeMigration'],
    [{ state: 'FailingOver', direction: 'forward' }, 'disable'],
    [{ state: 'Reprotecting', direction: 'failback' }, 'failover'],
    [{ state: 'InitialReplication', direction: 'forward' }, 'enable'],
    [{ state: 'FailbackFailed', direction: 'failback' }, 'commit'],
    [{ state: 'Protected', direction: 'failback' }, 'cancelFailback'],
  ];
  for (const [at, op] of refused) {
    assert.equal(nextPosition(at, op), undefined, `${at.state} ${op}`);
    assert.throws(
      () => transition('item-7', at, op),
      (err: unknown) =>
        err instanceof CsError &&
        err.code === 'TRANSITION_NOT_ALLOWED' &&
        err.status === 409 &&
        err.message.includes(`cannot ${op} item item-7: it is ${at.state}`) &&
        err.message.includes(allowedOperations(at).join(', ') || 'none'),
    );
  }
});
