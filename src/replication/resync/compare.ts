import { bitmapBytes, getBit, setBit } from './bits.js';
import { DIGEST_BYTES, isZero, summariseBlocks, type Digester } from './hashing.js';
import { blocksIn, regionsIn, type ResyncLayout } from './layout.js';
import type { CompareRequest, DiffReply, RegionLeaves } from './messages.js';
import type { ResyncExtent } from './sink.js';

/**
 * The comparison rules of both sides for one batch. Regions are compared by digest unless one
 * side is all zero (then no digest is needed); a differing region is refined block by block,
 * where an all-zero block is recognised by comparison with zeroes and never hashed.
 */

/** Target side: which regions of the batch differ, with what the source needs to refine them. */
export function answerCompare(req: CompareRequest, target: Buffer, layout: ResyncLayout, digester: Digester): DiffReply {
  const regions = regionsIn(req.length, layout);
  const differs = new Uint8Array(bitmapBytes(regions));
  const targetZero = new Uint8Array(bitmapBytes(regions));
  const leaves: (RegionLeaves | undefined)[] = new Array(regions);
  const mine = Buffer.allocUnsafe(DIGEST_BYTES);
  let k = 0;
  for (let i = 0; i < regions; i++) {
    const region = target.subarray(i * layout.regionBytes, Math.min(req.length, (i + 1) * layout.regionBytes));
    const sourceZero = getBit(req.regionZero, i);
    const theirs = sourceZero ? undefined : req.digests.subarray(k * DIGEST_BYTES, ++k * DIGEST_BYTES);
    const zero = isZero(region);
    if (sourceZero && zero) continue;
    if (zero) {
      setBit(differs, i);
      setBit(targetZero, i);
      continue;
    }
    if (theirs) {
      digester.digestInto(region, mine, 0);
      if (mine.equals(theirs)) continue;
    }
    setBit(differs, i);
    const blocks = summariseBlocks(region, layout.blockBytes, sourceZero ? undefined : digester);
    leaves[i] = { blockZero: blocks.zero, digests: blocks.digests };
  }
  return { id: req.id, offset: req.offset, length: req.length, differs, targetZero, leaves };
}

export interface BatchDifferences {
  /** In offset order; adjacent blocks of the same kind are merged (never across a batch). */
  extents: ResyncExtent[];
  regionsDifferent: number;
  blocksDifferent: number;
  bytesChanged: number;
}

/** Source side: the extents that make the target's batch equal to `source` (the batch's bytes). */
export function differingExtents(source: Buffer, req: CompareRequest, reply: DiffReply, layout: ResyncLayout, digester: Digester): BatchDifferences {
  const extents: ResyncExtent[] = [];
  // The open extent: [start, end) relative to the batch, data or zero.
  let start = 0;
  let end = 0;
  let zeroRun = false;
  const close = () => {
    if (end > start) extents.push(zeroRun ? { offset: req.offset + start, length: end - start } : { offset: req.offset + start, length: end - start, data: source.subarray(start, end) });
  };
  const add = (zero: boolean, from: number, to: number) => {
    if (from === end && zero === zeroRun) {
      end = to;
      return;
    }
    close();
    start = from;
    end = to;
    zeroRun = zero;
  };
  const mine = Buffer.allocUnsafe(DIGEST_BYTES);
  const out = { regionsDifferent: 0, blocksDifferent: 0, bytesChanged: 0 };
  const regions = regionsIn(req.length, layout);
  for (let i = 0; i < regions; i++) {
    if (!getBit(reply.differs, i)) continue;
    out.regionsDifferent++;
    const regionStart = i * layout.regionBytes;
    const regionEnd = Math.min(req.length, regionStart + layout.regionBytes);
    const sourceZero = getBit(req.regionZero, i);
    const targetZero = getBit(reply.targetZero, i);
    const leaves = reply.leaves[i];
    let k = 0;
    for (let j = 0, blocks = blocksIn(regionEnd - regionStart, layout); j < blocks; j++) {
      const from = regionStart + j * layout.blockBytes;
      const to = Math.min(regionEnd, from + layout.blockBytes);
      const block = source.subarray(from, to);
      let zero: boolean | undefined; // the kind of extent this block needs, if it differs
      if (targetZero) {
        if (!isZero(block)) zero = false;
      } else if (!leaves) {
        zero = isZero(block); // nothing known of the target's blocks: send them all
      } else {
        const theirZero = getBit(leaves.blockZero, j);
        const theirs = theirZero || !leaves.digests ? undefined : leaves.digests.subarray(k * DIGEST_BYTES, ++k * DIGEST_BYTES);
        const ourZero = sourceZero || isZero(block);
        if (ourZero) {
          if (!theirZero) zero = true;
        } else if (!theirs) {
          zero = false;
        } else {
          digester.digestInto(block, mine, 0);
          if (!mine.equals(theirs)) zero = false;
        }
      }
      if (zero === undefined) continue;
      out.blocksDifferent++;
      out.bytesChanged += to - from;
      add(zero, from, to);
    }
  }
  close();
  return { extents, ...out };
}
