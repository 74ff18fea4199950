import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Prng } from '../../src/lab/prng.js';
import { answerCompare, answerRefine, SourceBatch } from '../../src/replication/resync/compare.js';
import { createDigester, newHashKey, summariseRegions } from '../../src/replication/resync/hashing.js';
import { checkLayout, resolveLayout, type ResyncLayout } from '../../src/replication/resync/layout.js';
import { decodeCompare, decodeDiff, decodeRefine, decodeRefined, encodeCompare, encodeDiff, encodeRefine, encodeRefined } from '../../src/replication/resync/messages.js';

/** Regions refined straight to blocks, and through one sub-region level: the same answers. */
const LAYOUTS: ResyncLayout[] = [
  checkLayout({ blockBytes: 4096, regionBytes: 16 * 1024, batchBytes: 128 * 1024 }),
  checkLayout({ blockBytes: 4096, regionBytes: 16 * 1024, subRegionBytes: [8 * 1024], batchBytes: 128 * 1024 }),
];
const LAYOUT = LAYOUTS[0]!;

function random(bytes: number, seed: number): Buffer {
  return new Prng(seed).fill(Buffer.allocUnsafe(bytes));
}

/**
 * One batch through both sides and the wire format: the source's summary, the target's diff, the
 * refines it calls for, the source's extents. Applies the extents to the target and returns them
 * (the same for every layout, which is checked) with the number of refines.
 */
function roundTrip(source: Buffer, target: Buffer, layouts = LAYOUTS) {
  const results = layouts.map((layout) => {
    const t = Buffer.from(target);
    const digester = createDigester('gmac-aes128', newHashKey('gmac-aes128'));
    const span = { end: source.length, layout };
    const s = summariseRegions(source, layout.regionBytes, digester);
    const sent = decodeCompare(Buffer.concat(encodeCompare({ id: 7, offset: 0, length: source.length, regionZero: s.zero, digests: s.digests })), span);
    const batch = new SourceBatch(source, sent, layout, digester);
    let next = batch.onDiff(decodeDiff(Buffer.concat(encodeDiff(answerCompare(sent, t, layout, digester))), sent, layout));
    let refines = 0;
    for (; next && refines < 10; refines++) {
      const req = decodeRefine(Buffer.concat(encodeRefine(next)), span);
      next = batch.onRefined(req, decodeRefined(Buffer.concat(encodeRefined(answerRefine(req, t, layout, digester))), req, layout));
    }
    assert.equal(next, undefined, 'the refinement ends');
    const d = batch.result();
    for (const e of d.extents) {
      if (e.data) e.data.copy(t, e.offset);
      else t.fill(0, e.offset, e.offset + e.length);
    }
    assert.deepEqual(t, source);
    return { ...d, refines };
  });
  for (const r of results.slice(1)) assert.deepEqual({ ...r, refines: 0 }, { ...results[0]!, refines: 0 });
  target.set(source);
  return results[0]!;
}

test('equal batches produce nothing; changed blocks are found exactly and adjacent ones merged', () => {
  const source = random(LAYOUT.batchBytes, 1);
  assert.equal(roundTrip(source, Buffer.from(source)).extents.length, 0);
  const target = Buffer.from(source);
  for (const b of [0, 5, 6, 7, 31]) target[b * 4096 + 100]! ^= 0xff; // first block, a run of three, the last block
  const d = roundTrip(source, target);
  assert.deepEqual(d.extents.map((e) => [e.offset / 4096, e.length / 4096, e.data !== undefined]), [[0, 1, true], [5, 3, true], [31, 1, true]]);
  assert.equal(d.blocksDifferent, 5);
  assert.equal(d.bytesChanged, 5 * 4096);
  assert.equal(d.regionsDifferent, 3);
});

test('zeroes: a zero source region over data zeroes only the target blocks that are not zero', () => {
  const source = random(LAYOUT.batchBytes, 2);
  source.fill(0, 16 * 1024, 32 * 1024); // region 1 zero on the source
  const target = random(LAYOUT.batchBytes, 3);
  source.copy(target, 0, 0, 16 * 1024);
  source.copy(target, 32 * 1024, 32 * 1024);
  target.fill(0, 16 * 1024, 24 * 1024); // target region 1: two zero blocks, two data blocks
  const d = roundTrip(source, target);
  assert.deepEqual(d.extents, [{ offset: 24 * 1024, length: 8192 }]);
  assert.equal(d.bytesChanged, 8192);
});

test('zeroes: a zero target region (alternate location) receives only the source blocks that are not zero', () => {
  const source = random(LAYOUT.batchBytes, 4);
  source.fill(0, 4096, 8192);
  source.fill(0, 64 * 1024, 80 * 1024); // a whole zero region: equal to the empty target, skipped
  const target = Buffer.alloc(LAYOUT.batchBytes);
  const d = roundTrip(source, target);
  assert.equal(d.extents.every((e) => e.data !== undefined), true);
  assert.equal(d.bytesChanged, LAYOUT.batchBytes - 4096 - 16 * 1024);
  assert.equal(d.regionsDifferent, LAYOUT.batchBytes / LAYOUT.regionBytes - 1);
});

test('zeroes inside mixed regions: data over a zero block, zero over a data block', () => {
  const source = random(LAYOUT.batchBytes, 5);
  const target = Buffer.from(source);
  source.fill(0, 8192, 12288); // source block 2 becomes zero
  target.fill(0, 40960, 45056); // target block 10 is zero, the source's is not
  const d = roundTrip(source, target);
  assert.deepEqual(d.extents.map((e) => [e.offset / 4096, e.length / 4096, e.data !== undefined]), [[2, 1, false], [10, 1, true]]);
});

test('a short batch at the end of a disk: short last region and short last block', () => {
  const length = 2 * 16 * 1024 + 4096 + 512;
  const source = random(length, 6);
  const target = Buffer.from(source);
  target[length - 1]! ^= 1;
  target[0]! ^= 1;
  const d = roundTrip(source, target);
  assert.deepEqual(d.extents.map((e) => [e.offset, e.length]), [[0, 4096], [length - 512, 512]]);
});

test('the default layout (64 KiB regions, 16 KiB sub-regions) finds exactly the blocks that differ, with one refine', () => {
  const layout = resolveLayout({ batchBytes: 2 * 1024 * 1024 });
  assert.deepEqual(layout.subRegionBytes, [16384]);
  const source = random(layout.batchBytes, 7);
  const target = Buffer.from(source);
  const prng = new Prng(8);
  const changed = new Set<number>();
  for (let i = 0; i < 20; i++) changed.add(Math.floor(prng.next() * 512));
  for (const b of changed) target[b * 4096 + 7]! ^= 0x5a;
  target.fill(0, 100 * 4096, 101 * 4096); // a block of data zero on the target only
  changed.add(100);
  source.fill(0, 300 * 4096, 302 * 4096); // two blocks zero on the source only
  changed.add(300).add(301);
  const d = roundTrip(source, target, [layout]);
  assert.equal(d.refines, 1);
  assert.equal(d.blocksDifferent, changed.size);
  const blocks = d.extents.flatMap((e) => Array.from({ length: e.length / 4096 }, (_, i) => e.offset / 4096 + i));
  assert.deepEqual(blocks, [...changed].sort((a, b) => a - b));
});
