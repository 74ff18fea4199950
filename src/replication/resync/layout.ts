import { ResyncError } from './errors.js';

/**
 * How a resync cuts a disk: blocks are the unit that is sent (and the finest unit compared),
 * regions the coarse unit whose digests travel for every byte of the disk, sub-regions the
 * levels a differing region is refined through on its way down to blocks (largest first; none:
 * straight to blocks), batches the unit of one compare request (and of the engine's reads). The
 * last block, sub-region, region and batch of a disk may be short: sizes need not be multiples of
 * anything.
 */
export interface ResyncLayout {
  blockBytes: number;
  regionBytes: number;
  /** Absent or empty: a differing region is refined straight to blocks. */
  subRegionBytes?: readonly number[];
  batchBytes: number;
}

/**
 * 64 KiB regions refined through 16 KiB sub-regions. A digest costs a fixed 2.5–4 µs per call on
 * top of ~7 GB/s, and every level of a refinement is hashed again where it differs, so the tree
 * balances calls against bytes hashed twice: per side and 2 GiB with 1% of the blocks changed at
 * random, 64/16/4 KiB makes 72.9 k calls over 2.55 GB where 32/4 KiB (the previous default) made
 * 106 k over 2.31 GB (1 MiB regions: 92% of them differ, the disk is hashed twice). Measured
 * (docs/benchmarks.md): CPU of both ends 11% lower with 0% and 0.1% changed, unchanged at 1% and
 * 10%, where the extra round trip costs what the calls save. Batches of 2, 4 or 8 MiB ran alike.
 */
export const DEFAULT_LAYOUT: Readonly<Required<ResyncLayout>> = Object.freeze({
  blockBytes: 4096,
  regionBytes: 64 * 1024,
  subRegionBytes: Object.freeze([16 * 1024]),
  batchBytes: 2 * 1024 * 1024,
});

const LAYOUT_LIMITS = Object.freeze({
  minBlockBytes: 512,
  maxBlockBytes: 1024 * 1024,
  maxBlocksPerRegion: 4096,
  maxSubRegionLevels: 3,
  maxRegionsPerBatch: 4096,
  maxBatchBytes: 16 * 1024 * 1024,
});

/**
 * Batches a target keeps in memory between its diff and the source's last refine of them; the
 * source keeps no more compares in flight than this (see maxBatchesInFlight).
 */
const MAX_HELD_BYTES = 64 * 1024 * 1024;

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** Checks a layout; every size a peer could make us allocate is bounded here. */
export function checkLayout(l: ResyncLayout): Required<ResyncLayout> {
  const sub = l.subRegionBytes ?? [];
  const bad = (why: string): never => {
    throw new ResyncError('RESYNC_LAYOUT', `resync layout (block ${l.blockBytes}, region ${l.regionBytes}, sub-regions ${JSON.stringify(sub)}, batch ${l.batchBytes} bytes): ${why}`);
  };
  if (!isPowerOfTwo(l.blockBytes) || l.blockBytes < LAYOUT_LIMITS.minBlockBytes || l.blockBytes > LAYOUT_LIMITS.maxBlockBytes)
    bad(`the block size must be a power of two from ${LAYOUT_LIMITS.minBlockBytes} to ${LAYOUT_LIMITS.maxBlockBytes}`);
  if (!Number.isSafeInteger(l.regionBytes) || l.regionBytes <= 0 || l.regionBytes % l.blockBytes !== 0 || l.regionBytes / l.blockBytes > LAYOUT_LIMITS.maxBlocksPerRegion)
    bad(`the region size must be a multiple of the block size, at most ${LAYOUT_LIMITS.maxBlocksPerRegion} blocks`);
  if (!Array.isArray(sub) || sub.length > LAYOUT_LIMITS.maxSubRegionLevels) bad(`at most ${LAYOUT_LIMITS.maxSubRegionLevels} sub-region sizes`);
  let above = l.regionBytes;
  for (const s of sub) {
    if (!Number.isSafeInteger(s) || s <= l.blockBytes || s >= above || above % s !== 0 || s % l.blockBytes !== 0)
      bad('each sub-region size must be a multiple of the block size, larger than a block and a proper divisor of the size above it');
    above = s;
  }
  if (!Number.isSafeInteger(l.batchBytes) || l.batchBytes <= 0 || l.batchBytes % l.regionBytes !== 0 || l.batchBytes > LAYOUT_LIMITS.maxBatchBytes || l.batchBytes / l.regionBytes > LAYOUT_LIMITS.maxRegionsPerBatch)
    bad(`the batch size must be a multiple of the region size, at most ${LAYOUT_LIMITS.maxBatchBytes} bytes and ${LAYOUT_LIMITS.maxRegionsPerBatch} regions`);
  return { blockBytes: l.blockBytes, regionBytes: l.regionBytes, subRegionBytes: [...sub], batchBytes: l.batchBytes };
}

/**
 * A caller's partial layout completed with the defaults. The default sub-regions are kept only
 * where they fit the region and block sizes asked for (a caller choosing 16 KiB regions gets
 * none, not a refused layout).
 */
export function resolveLayout(partial: Partial<ResyncLayout> = {}): Required<ResyncLayout> {
  const blockBytes = partial.blockBytes ?? DEFAULT_LAYOUT.blockBytes;
  const regionBytes = partial.regionBytes ?? DEFAULT_LAYOUT.regionBytes;
  const subRegionBytes = partial.subRegionBytes ?? DEFAULT_LAYOUT.subRegionBytes.filter((s) => s < regionBytes && regionBytes % s === 0 && s > blockBytes && s % blockBytes === 0);
  return checkLayout({ blockBytes, regionBytes, subRegionBytes, batchBytes: partial.batchBytes ?? DEFAULT_LAYOUT.batchBytes });
}

/** The node size of each refinement level: the region first, the block last. */
export function levelSizes(l: ResyncLayout): number[] {
  return [l.regionBytes, ...(l.subRegionBytes ?? []), l.blockBytes];
}

/** How many batches may be between their compare and their last refine at once. */
export function maxBatchesInFlight(l: ResyncLayout): number {
  return Math.max(2, Math.floor(MAX_HELD_BYTES / l.batchBytes));
}

/**
 * The byte range a resync compares: the whole source. A smaller target cannot hold it; a larger
 * one is refused too unless the caller opts in, because a replica with a tail the source does not
 * have is not "the same disk" — with `allowLargerTarget` the common prefix is made equal and the
 * tail is left as it is (no resize: that is the fabric's job, before or after).
 */
export function checkSizes(sourceSize: number, targetSize: number, allowLargerTarget: boolean): number {
  if (targetSize < sourceSize)
    throw new ResyncError('RESYNC_SIZE_MISMATCH', `the target disk has ${targetSize} bytes, fewer than the source's ${sourceSize}: grow the target to at least ${sourceSize} bytes first`);
  if (targetSize > sourceSize && !allowLargerTarget)
    throw new ResyncError('RESYNC_SIZE_MISMATCH', `the target disk has ${targetSize} bytes, more than the source's ${sourceSize}: shrink it, or allow a larger target to make only the first ${sourceSize} bytes equal`);
  return sourceSize;
}

/** A resume point must be a region boundary inside the compared range. */
export function checkCursor(offset: number, end: number, layout: ResyncLayout): number {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > end || (offset % layout.regionBytes !== 0 && offset !== end))
    throw new ResyncError('RESYNC_CURSOR', `cursor ${offset} is not a region boundary (${layout.regionBytes} bytes) within 0..${end}`);
  return offset;
}

export function regionsIn(length: number, layout: ResyncLayout): number {
  return Math.ceil(length / layout.regionBytes);
}

/** Nodes of `size` bytes in `length` bytes (the last one may be short). */
export function nodesIn(length: number, size: number): number {
  return Math.ceil(length / size);
}
