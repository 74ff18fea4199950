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
  decodeRefine,
  decodeRefined,
  decodeWrite,
  decodeZero,
  encodeCompare,
  encodeDiff,
  encodeOpen,
  encodeRefine,
  encodeRefined,
  encodeWrite,
  encodeZero,
  type CompareRequest,
  type DiffReply,
  type RefineReply,
  type RefineRequest,
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
    children: [
      undefined,
      { zero: Uint8Array.from([0b0001]), digests: undefined },
      undefined,
      { zero: Uint8Array.from([0b1000]), digests: Buffer.alloc(3 * 16, 0xcd) },
    ],
  };
}

const wire = (parts: Buffer[]) => Buffer.concat(parts);

test('open: round trip, and every field checked', () => {
  const key = newHashKey('gmac-aes128');
  const open = { diskId: 'disk-0', sourceSize: 12345 * 512, layout: LAYOUT, hash: 'gmac-aes128' as const, key, allowLargerTarget: false };
  assert.deepEqual(decodeOpen(encodeOpen(open)), { ...open, layout: { ...LAYOUT, subRegionBytes: [] } });
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
  assert.equal(d.children[1]?.digests, undefined);
  assert.equal(d.children[3]?.digests?.length, 3 * 16);
  assert.equal(d.children[2], undefined);
  const bytes = wire(encodeDiff(diff()));
  assert.throws(() => decodeDiff(bytes, { ...c, id: 4 }, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeDiff(Buffer.concat([bytes, Buffer.alloc(1)]), c, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeDiff(bytes.subarray(0, bytes.length - 1), c, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
  // Target zero on a region the source also has zero (they are equal), and on a region that does not differ.
  assert.throws(() => decodeDiff(wire(encodeDiff({ ...diff(), targetZero: Uint8Array.from([0b0110]), children: [undefined, undefined, undefined, diff().children[3]] })), c, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeDiff(wire(encodeDiff({ ...diff(), differs: Uint8Array.from([0b1010]) })), c, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
  // A differing region whose blocks are all zero on the target must be marked target-zero instead.
  const allZero = diff();
  allZero.children[1] = { zero: Uint8Array.from([0b1111]), digests: undefined };
  assert.throws(() => decodeDiff(wire(encodeDiff(allZero)), c, LAYOUT), refused('RESYNC_BAD_MESSAGE'));
});

/** 64 KiB batches of 16 KiB regions refined through 8 KiB sub-regions (8 of them per batch). */
const REFINED: ResyncLayout = { ...LAYOUT, subRegionBytes: [8192] };

/** Expand sub-regions 2 (zero on the source) and 5 of the batch of compare(). */
function refine(): RefineRequest {
  return { id: 3, offset: 65536, length: 65536, level: 1, expand: Uint8Array.from([0b100100]), sourceZero: Uint8Array.from([0b000100]) };
}

/** Sub-region 2: block 0 zero on the target, no digests (the source's is zero); 5: both blocks with digests. */
function refined(): RefineReply {
  const children: RefineReply['children'] = new Array(8);
  children[2] = { zero: Uint8Array.from([0b01]), digests: undefined };
  children[5] = { zero: Uint8Array.from([0b00]), digests: Buffer.alloc(2 * 16, 0xee) };
  return { id: 3, offset: 65536, length: 65536, level: 1, children };
}

test('open carries the sub-region sizes; a layout whose sub-regions do not nest is refused', () => {
  const open = { diskId: 'disk-0', sourceSize: 65536, layout: REFINED, hash: 'gmac-aes128' as const, key: newHashKey('gmac-aes128'), allowLargerTarget: false };
  assert.deepEqual(decodeOpen(encodeOpen(open)).layout, REFINED);
  const bad = (patch: Record<string, unknown>) => Buffer.from(JSON.stringify({ ...JSON.parse(encodeOpen(open).toString()), ...patch }));
  for (const subRegionBytes of [[16384], [6144], [4096], [8192, 8192], 'x', [8192.5], [12288]])
    assert.throws(() => decodeOpen(bad({ subRegionBytes })), refused('RESYNC_BAD_MESSAGE'), JSON.stringify(subRegionBytes));
  assert.deepEqual(decodeOpen(bad({ subRegionBytes: undefined })).layout.subRegionBytes, [], 'absent: straight to blocks');
});

test('refine and refined: round trip; a level, bitmap or content that does not fit is refused', () => {
  const span = { end: SPAN.end, layout: REFINED };
  const r = decodeRefine(wire(encodeRefine(refine())), span);
  assert.deepEqual({ ...r, expand: [...r.expand], sourceZero: [...r.sourceZero] }, { ...refine(), expand: [0b100100], sourceZero: [0b000100] });
  const at = (patch: Partial<RefineRequest>) => wire(encodeRefine({ ...refine(), ...patch }));
  assert.throws(() => decodeRefine(at({ level: 0 }), span), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeRefine(at({ level: 2 }), span), refused('RESYNC_BAD_MESSAGE')); // the block level
  assert.throws(() => decodeRefine(at({}), SPAN), refused('RESYNC_BAD_MESSAGE')); // no sub-regions in this session
  assert.throws(() => decodeRefine(at({ sourceZero: Uint8Array.from([0b1000]) }), span), refused('RESYNC_BAD_MESSAGE')); // zero but not expanded
  assert.throws(() => decodeRefine(at({ offset: 4096 }), span), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeRefine(at({ offset: 11 * 65536 }), span), refused('RESYNC_OUT_OF_RANGE'));
  assert.throws(() => decodeRefine(wire(encodeRefine(refine())).subarray(0, 18), span), refused('RESYNC_BAD_MESSAGE'));
  const req = refine();
  const d = decodeRefined(wire(encodeRefined(refined())), req, REFINED);
  assert.equal(d.children[2]?.digests, undefined);
  assert.equal(d.children[5]?.digests?.length, 32);
  assert.equal(d.children.filter(Boolean).length, 2);
  const bytes = wire(encodeRefined(refined()));
  assert.throws(() => decodeRefined(bytes, { ...req, id: 4 }, REFINED), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeRefined(Buffer.concat([bytes, Buffer.alloc(1)]), req, REFINED), refused('RESYNC_BAD_MESSAGE'));
  assert.throws(() => decodeRefined(bytes.subarray(0, bytes.length - 1), req, REFINED), refused('RESYNC_BAD_MESSAGE'));
  const allZero = refined();
  allZero.children[2] = { zero: Uint8Array.from([0b11]), digests: undefined }; // the source was told it has data
  assert.throws(() => decodeRefined(wire(encodeRefined(allZero)), req, REFINED), refused('RESYNC_BAD_MESSAGE'));
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
