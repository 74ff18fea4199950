import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RestError } from '@azure/storage-blob';
import { Limiter } from '../../src/fabrics/azure/limiter.js';
import { withRetry, type RetryPolicy } from '../../src/fabrics/azure/retry.js';
import { isTransient, storageError } from '../../src/fabrics/azure/storage-errors.js';

const FAST: RetryPolicy = { maxAttempts: 4, maxElapsedMs: 5_000, baseDelayMs: 1, maxDelayMs: 4 };

function restError(statusCode: number, errorCode?: string): RestError {
  const err = new RestError(`status ${statusCode}`, { statusCode });
  if (errorCode !== undefined) err.details = { errorCode };
  return err;
}

test('throttling, server errors, timeouts and socket failures are transient; client errors are not', () => {
  for (const status of [408, 429, 500, 502, 503, 504]) assert.equal(isTransient(restError(status)), true, String(status));
  for (const status of [400, 403, 404, 409, 412, 416]) assert.equal(isTransient(restError(status)), false, String(status));
  assert.equal(isTransient(new RestError('socket hang up', { code: 'REQUEST_SEND_ERROR' })), true);
  assert.equal(isTransient(Object.assign(new Error('reset'), { code: 'ECONNRESET' })), true);
  assert.equal(isTransient(new Error('bug')), false);
});

test('storage errors map to typed errors without the service URL', () => {
  const leased = storageError(restError(412, 'LeaseIdMismatchWithBlobOperation'), 'write 512 bytes at 0');
  assert.equal(leased.code, 'DISK_LEASED');
  const missing = storageError(restError(404, 'BlobNotFound'), 'open page blob d');
  assert.equal(missing.code, 'DISK_NOT_FOUND');
  const busy = storageError(restError(503, 'ServerBusy'), 'write');
  assert.equal(busy.code, 'AZURE_STORAGE');
  assert.equal(busy.retryable, true);
  assert.match(busy.message, /HTTP 503 ServerBusy/);
  const url = new RestError('failed https://acct.blob.core.windows.net/c/b?sig=secret', { code: 'REQUEST_SEND_ERROR' });
  assert.doesNotMatch(storageError(url, 'read').message, /sig=secret/);
});

test('withRetry retries transient failures up to the attempt limit, never others', async () => {
  let calls = 0;
  assert.equal(
    await withRetry(async () => {
      if (++calls < 3) throw restError(503);
      return 'ok';
    }, FAST),
    'ok',
  );
  assert.equal(calls, 3);

  calls = 0;
  await assert.rejects(
    withRetry(async () => {
      calls++;
      throw restError(503);
    }, FAST),
    (err: unknown) => err instanceof RestError && err.statusCode === 503,
  );
  assert.equal(calls, FAST.maxAttempts);

  calls = 0;
  await assert.rejects(
    withRetry(async () => {
      calls++;
      throw restError(412);
    }, FAST),
  );
  assert.equal(calls, 1);

  calls = 0;
  await assert.rejects(
    withRetry(async () => {
      calls++;
      throw restError(500);
    }, { maxAttempts: 100, maxElapsedMs: 0, baseDelayMs: 1, maxDelayMs: 1 }),
  );
  assert.ok(calls <= 2, `a spent time budget stops retries (tries: ${calls})`);
});

test('the limiter never runs more than its limit and serves waiters in order', async () => {
  const limiter = new Limiter(3);
  let running = 0;
  let peak = 0;
  const order: number[] = [];
  const gates: (() => void)[] = [];
  const tasks = Array.from({ length: 10 }, (_, i) =>
    limiter.run(async () => {
      running++;
      peak = Math.max(peak, running);
      order.push(i);
      await new Promise<void>((res) => gates.push(res));
      running--;
    }),
  );
  for (let released = 0; released < 10; released++) {
    for (let spins = 0; gates.length === 0 && spins < 100; spins++) await Promise.resolve();
    assert.ok(limiter.active <= 3);
    gates.shift()!();
  }
  await Promise.all(tasks);
  assert.equal(peak, 3);
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(limiter.active, 0);
  assert.throws(() => new Limiter(0), RangeError);
});
