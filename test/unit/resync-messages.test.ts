import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProtocolError } from '../../src/replication/errors.js';
import { ResyncError } from '../../src/replication/resync/errors.js';
import { newHashKey } from '../../src/replication/resync/hashing.js';
import { checkCursor, checkLayout, checkSizes, type ResyncLayout } from '../../src/replication/resync/layout.js';
import {
  decodeCompare,
  decodeDiff,
  decodeId,
  decodeOpen,
  decodeReady,
  decodeWrite,
  decodeZero,
  encodeCompare,
  encodeDiff,
  encodeOpen,
  encodeWrite,
  encodeZero,
  type CompareRequest,
  type DiffReply,
} from '../../src/replication/resync/messages.js';

const LAYOUT: ResyncLayout = { blockBytes: 4096, regionBytes: 16384, batchBytes: 65536 };
const SPAN = { end: 10 * 65536 + 4096 + 512, layout: LAYOUT };

function refused(code: string) {
  return (e: unknown) => e instanceof ProtocolError && e.code === code;
}

/** A compare of 4 regions: region 1 zero on the source, the others with digests. */
function compare(): CompareRequest {
  return { id: 3, offset: 65536, length: 65536, regionZero: Uint8Array.from([0b0010]), digests: Buffer.alloc(3 * 16, 0xab) };
}

/** The target's answer: region 0 equal, 1 differs (target not zero), 2 differs (target zero), 3 differs. */
function diff(): DiffReply {
  return {
    id: 3,
    offset: 65536,
    length: 65536,
    differs: Uint8Array.from([0b1110]),
    targetZero: Uint8Array.from([0b0100]),
    leaves: [
      undefined,
      { blockZero: Uint8Array.from([0b0001]), digests: undefined },
      undefined,
      { blockZero: Uint8Array.from([0b1000]), digests: Buffer.alloc(3 * 16, 0xcd) },
    ],
  };
}

const wire = (parts: Buffer[]) => Buffer.concat(parts);

test('open: round trip, and every field checked', () => {
  const key = newHashKey('gmac-aes128');
  const open = { diskId: 'disk-0', sourceSize: 12345 * 512, layout: LAYOUT, hash: 'gmac-aes128' as const, key, allowLargerTarget: false };
  assert.deepEqual(decodeOpen(encodeOpen(open)), open);
  const bad = (patch: Record<string, unknown>) => Buffer.from(JSON.stringify({ ...JSON.parse(encodeOpen(open).toString()), ...patch }));
  for (const patch of [
    { diskId: '../etc' },
    { sourceSize: -1 },
    { sourceSize: 1.5 },
    { blockBytes: 3000 },
    { regionBytes: 4096 * 5000 },
    { batchBytes: 1 << 30 },
    { hash: 'crc32' },
    { key: 'AAAA' },
    { key: 42 },
    { allowLargerTarget: 'yes' },
  ])
    assert.throws(() => decodeOpen(bad(patch)), refused('RESYNC_BAD_MESSAGE'), JSON.stringify(patch));
  assert.throws(() => decodeOpen(Buffer.from('{not json')), (e: unknown) => e instanceof ProtocolError);
  assert.throws(() => decodeReady(Buffer.from('{"targetSize":-5}')), refused('RESYNC_BAD_MESSAGE'));
});

test('compare: round trip; misaligned, oversized, out-of-range, truncated and padded requests are refused', () => {
  const c = compare();
  const got = decodeCompare(wire(encodeCompare(c)), SPAN);
  assert.equal(got.id, 3);
  assert.equal(got.offset, 65536);
  assert.deepEqual(Buffer.from(got.digests), c.digests);
  const at = (patch: Partial<CompareRequest>) => wire(encodeCompare({ ...c, ...patch }));
  assert.throws(() => decodeCompare(at({ offset: 4096 }), SPAN), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeCompare(at({ length: 2 * 65536 }), SPAN), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeCompare(at({ offset: 10 * 65536, length: 65536 }), SPAN), refused('RESYNC_OUT_OF_RANGE'));
  assert.throws(() => decodeCompare(at({ offset: 2 ** 60 }), SPAN), (e: unknown) => e instanceof ProtocolError);
  assert.throws(() => decodeCompare(at({ length: 16384 + 4096 }), SPAN), refused('RESYNC_BAD_MESSAGE')); // short, not at the end
  assert.throws(() => decodeCompare(at({ digests: Buffer.alloc(2 * 16) }), SPAN), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeCompare(at({ regionZero: Uint8Array.from([0b10010]) }), SPAN), refused('RESYNC_BAD_MESSAGE')); // padding bit
  assert.throws(() => decodeCompare(wire(encodeCompare(c)).subarray(0, 10), SPAN), refused('RESYNC_BAD_MESSAGE'));
  // The short batch that ends the disk: one short region of 4096 + 512 bytes.
  const tail = { id: 4, offset: 10 * 65536, length: 4096 + 512, regionZero: Uint8Array.from([0]), digests: Buffer.alloc(16) };
  assert.equal(decodeCompare(wire(encodeCompare(tail)), SPAN).length, tail.length);
});

test('diff: round trip against its request; inconsistent or trailing content is refused', () => {
  const c = compare();
  const d = decodeDiff(wire(encodeDiff(diff())), c, LAYOUT);
  assert.equal(d.leaves[1]?.digests, undefined);
  assert.equal(d.leaves[3]?.digests?.length, 3 * 16);
  assert.equal(d.leaves[2], undefined);
  const bytes = wire(encodeDiff(diff()));
  assert.throws(() => decodeDiff(bytes, { ...c, id: 4 }, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeDiff(Buffer.concat([bytes, Buffer.alloc(1)]), c, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeDiff(bytes.subarray(0, bytes.length - 1), c, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
  // Target zero on a region the source also has zero (they are equal), and on a region that does not differ.
  assert.throws(() => decodeDiff(wire(encodeDiff({ ...diff(), targetZero: Uint8Array.from([0b0110]), leaves: [undefined, undefined, undefined, diff().leaves[3]] })), c, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeDiff(wire(encodeDiff({ ...diff(), differs: Uint8Array.from([0b1010]) })), c, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
  // A differing region whose blocks are all zero on the target must be marked target-zero instead.
  const allZero = diff();
  allZero.leaves[1] = { blockZero: Uint8Array.from([0b1111]), digests: undefined };
  assert.throws(() => decodeDiff(wire(encodeDiff(allZero)), c, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
});

test('write, zero, flush: blocks inside the compared range only', () => {
  assert.deepEqual(decodeWrite(wire(encodeWrite(8192, Buffer.alloc(8192, 1))), SPAN).offset, 8192);
  assert.deepEqual(decodeZero(encodeZero(4096, 4096), SPAN), { offset: 4096, length: 4096 });
  assert.equal(decodeWrite(wire(encodeWrite(SPAN.end - 512, Buffer.alloc(512))), SPAN).data.length, 512); // short last block
  assert.throws(() => decodeWrite(wire(encodeWrite(100, Buffer.alloc(4096))), SPAN), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeWrite(wire(encodeWrite(4096, Buffer.alloc(100))), SPAN), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeWrite(wire(encodeWrite(SPAN.end - 512, Buffer.alloc(4096))), SPAN), refused('RESYNC_OUT_OF_RANGE'));
  assert.throws(() => decodeWrite(Buffer.alloc(7), SPAN), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeZero(encodeZero(0, 2 * 65536), SPAN), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeZero(encodeZero(10 * 65536 + 4096, 4096), SPAN), refused('RESYNC_OUT_OF_RANGE'));
  assert.throws(() => decodeId(Buffer.alloc(5), 'flush'), refused('RESYNC_BAD_MESSAGE'));
});

test('layout, sizes and cursor rules', () => {
  assert.throws(() => checkLayout({ blockBytes: 4096, regionBytes: 6144, batchBytes: 65536 }), (e: unknown) => e instanceof ResyncError && e.code === 'RESYNC_LAYOUT');
  assert.throws(() => checkLayout({ blockBytes: 256, regionBytes: 4096, batchBytes: 65536 }), (e: unknown) => e instanceof ResyncError && e.code === 'RESYNC_LAYOUT');
  const mismatch = (f: () => unknown, both: number[]) =>
    assert.throws(f, (e: unknown) => e instanceof ResyncError && e.code === 'RESYNC_SIZE_MISMATCH' && both.every((n) => e.message.includes(String(n))));
  mismatch(() => checkSizes(1048576, 1048064, false), [1048576, 1048064]);
  mismatch(() => checkSizes(1048576, 1048576 + 4096, false), [1048576, 1052672]);
  mismatch(() => checkSizes(1048576, 1048064, true), [1048576, 1048064]);
  assert.equal(checkSizes(1048576, 2097152, true), 1048576);
  assert.equal(checkCursor(32768, 100000, LAYOUT), 32768);
  assert.equal(checkCursor(100000, 100000, LAYOUT), 100000);
  for (const bad of [-16384, 4096, 200000, 1.5]) assert.throws(() => checkCursor(bad, 100000, LAYOUT), (e: unknown) => e instanceof ResyncError && e.code === 'RESYNC_CURSOR');
});
