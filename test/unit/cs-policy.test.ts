import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CsError } from '../../src/cs/errors.js';
import { patchPolicy, POLICY_LIMITS, policyPair, policyProblems, withDefaults } from '../../src/cs/domain/policy.js';

const invalidAt = (field: string) => (err: unknown) => err instanceof CsError && err.code === 'POLICY_INVALID' && err.status === 400 && err.field === field;

test('a forward policy brings its failback policy with the same settings unless overridden', () => {
  const pair = policyPair('gold', { rpoThresholdSeconds: 300 }, { retentionHours: 72 });
  assert.deepEqual(pair.forward, { name: 'gold', settings: { rpoThresholdSeconds: 300, retentionHours: 24, appConsistentMinutes: 60, crashConsistentMinutes: 5, blobSnapshots: false } });
  assert.deepEqual(pair.failback, { name: 'gold-failback', settings: { rpoThresholdSeconds: 300, retentionHours: 72, appConsistentMinutes: 60, crashConsistentMinutes: 5, blobSnapshots: false } });
});

test('defaults are inside the limits and valid together', () => {
  const d = withDefaults({});
  for (const [field, limit] of Object.entries(POLICY_LIMITS)) assert.equal(d[field as keyof typeof d], limit.default);
  assert.deepEqual(policyProblems(d), []);
  assert.equal(d.blobSnapshots, false, 'blob snapshots only when asked for');
});

test('ranges and whole numbers are checked, every problem reported', () => {
  const problems = policyProblems({ rpoThresholdSeconds: 10, retentionHours: 0.5, appConsistentMinutes: -1, crashConsistentMinutes: 61, blobSnapshots: false });
  assert.deepEqual(
    problems.map((p) => p.field),
    ['rpoThresholdSeconds', 'retentionHours', 'appConsistentMinutes', 'crashConsistentMinutes'],
  );
  assert.throws(() => policyPair('p', { rpoThresholdSeconds: 10 }), invalidAt('rpoThresholdSeconds'));
  assert.throws(() => policyPair('p', {}, { crashConsistentMinutes: 0 }), invalidAt('failback.crashConsistentMinutes'));
  assert.throws(() => policyPair('x'.repeat(56), {}), invalidAt('name'));
});

test('bookmark periods must fit in the retention window', () => {
  assert.throws(() => policyPair('p', { retentionHours: 1, appConsistentMinutes: 120 }), invalidAt('appConsistentMinutes'));
  assert.doesNotThrow(() => policyPair('p', { retentionHours: 2, appConsistentMinutes: 120 }));
  assert.doesNotThrow(() => policyPair('p', { retentionHours: 1, appConsistentMinutes: 0 }));
});

test('an edit merges into the current settings and must validate as a whole', () => {
  const current = withDefaults({ retentionHours: 24, appConsistentMinutes: 600 });
  assert.deepEqual(patchPolicy(current, { rpoThresholdSeconds: 120 }), { ...current, rpoThresholdSeconds: 120 });
  // Shrinking the window below the app-consistent period is refused, naming the field that no longer fits.
  assert.throws(() => patchPolicy(current, { retentionHours: 8 }), invalidAt('appConsistentMinutes'));
  assert.deepEqual(patchPolicy(current, { retentionHours: 10 }), { ...current, retentionHours: 10 });
});
