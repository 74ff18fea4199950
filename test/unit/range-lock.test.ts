import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RangeLock } from '../../src/agent/range-lock.js';

test('overlapping ranges run in arrival order, disjoint ones concurrently', async () => {
  const lock = new RangeLock();
  const order: string[] = [];
  const a = await lock.acquire(0, 100);
  const bP = lock.acquire(50, 100).then((rel) => (order.push('b'), rel));
  const c = await lock.acquire(200, 10); // disjoint: granted at once
  order.push('c');
  const dP = lock.acquire(60, 10).then((rel) => (order.push('d'), rel));
  assert.deepEqual(order, ['c']);
  a();
  const b = await bP;
  assert.deepEqual(order, ['c', 'b']);
  b();
  (await dP)();
  c();
  assert.deepEqual(order, ['c', 'b', 'd']);
  assert.equal(lock.size, 0);
});

test('a later operation never overtakes an earlier overlapping one', async () => {
  const lock = new RangeLock();
  const first = await lock.acquire(0, 10);
  const second = lock.acquire(5, 10);
  const third = lock.acquire(12, 1); // overlaps the waiting second, not the held first
  let thirdGranted = false;
  void third.then(() => (thirdGranted = true));
  await Promise.resolve();
  assert.equal(thirdGranted, false);
  first();
  (await second)();
  (await third)();
  assert.equal(thirdGranted, true);
});
