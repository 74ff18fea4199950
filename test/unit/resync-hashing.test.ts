import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { getBit } from '../../src/replication/resync/bits.js';
import { createDigester, DIGEST_BYTES, newHashKey, summariseChildren, summariseRegions, type Digester } from '../../src/replication/resync/hashing.js';
import { ResyncError } from '../../src/replication/resync/errors.js';

function digest(d: Digester, data: Buffer): Buffer {
  const out = Buffer.alloc(DIGEST_BYTES);
  d.digestInto(data, out, 0);
  return out;
}

/** Counts what it is asked to hash, so tests can see what was not. */
function counting(inner: Digester): Digester & { calls: number[] } {
  const calls: number[] = [];
  return { calls, digestInto: (data, out, at) => (calls.push(data.length), inner.digestInto(data, out, at)) };
}

test('GMAC digests: equal data gives equal digests under one key, a flipped bit or another key changes them', () => {
  const key = newHashKey('gmac-aes128');
  assert.equal(key.length, 16);
  const a = createDigester('gmac-aes128', key);
  const b = createDigester('gmac-aes128', Buffer.from(key));
  const other = createDigester('gmac-aes128', newHashKey('gmac-aes128'));
  const data = randomBytes(32 * 1024);
  const flipped = Buffer.from(data);
  flipped[12345]! ^= 0x10;
  assert.deepEqual(digest(a, data), digest(b, data));
  assert.notDeepEqual(digest(a, data), digest(a, flipped));
  assert.notDeepEqual(digest(a, data), digest(other, data));
  // Equal-length inputs that differ only in trailing zeroes still differ (GHASH pads, the length block does not hide it).
  assert.notDeepEqual(digest(a, Buffer.alloc(4096)), digest(a, Buffer.concat([Buffer.alloc(4095), Buffer.from([1])])));
});

test('the sha256 suite is the first 16 bytes of sha256 and takes no key', () => {
  const d = createDigester('sha256', newHashKey('sha256'));
  const data = randomBytes(4096);
  assert.deepEqual(digest(d, data), createHash('sha256').update(data).digest().subarray(0, 16));
  assert.throws(() => createDigester('sha256', Buffer.alloc(16)), (e: unknown) => e instanceof ResyncError && e.code === 'RESYNC_HASH_KEY');
  assert.throws(() => createDigester('gmac-aes128', Buffer.alloc(8)), (e: unknown) => e instanceof ResyncError && e.code === 'RESYNC_HASH_KEY');
});

test('region summary: all-zero regions are recognised without hashing; the short last region is hashed as it is', () => {
  const R = 32 * 1024;
  const data = randomBytes(3 * R + 4096 + 512);
  data.fill(0, R, 2 * R); // region 1 all zero
  data.fill(0, 2 * R, 2 * R + 4096); // region 2 starts with a zero block but is not zero
  const d = counting(createDigester('gmac-aes128', newHashKey('gmac-aes128')));
  const s = summariseRegions(data, R, d);
  assert.deepEqual([0, 1, 2, 3].map((i) => getBit(s.zero, i)), [false, true, false, false]);
  assert.deepEqual(d.calls, [R, R, 4096 + 512]);
  assert.equal(s.digests.length, 3 * DIGEST_BYTES);
  const again = summariseRegions(data, R, d);
  assert.deepEqual(again.digests, s.digests);
});

test('block summary: zero blocks are marked and skipped, the others digested in order', () => {
  const region = randomBytes(4 * 4096 + 1024);
  region.fill(0, 4096, 8192);
  region.fill(0, 4 * 4096); // the short last block is zero
  const d = counting(createDigester('sha256', Buffer.alloc(0)));
  const s = summariseChildren(region, 4096, d);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => getBit(s.zero, i)), [false, true, false, false, true]);
  assert.deepEqual(d.calls, [4096, 4096, 4096]);
  assert.equal(s.digests?.length, 3 * DIGEST_BYTES);
  assert.deepEqual(s.digests?.subarray(16, 32), digest(d, region.subarray(8192, 12288)));
  const zeroOnly = summariseChildren(region, 4096);
  assert.equal(zeroOnly.digests, undefined);
  assert.deepEqual(zeroOnly.zero, s.zero);
});
