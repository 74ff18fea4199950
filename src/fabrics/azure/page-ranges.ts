import { PAGE_SIZE } from './page-blob-disk.js';

/**
 * Range arithmetic for the agentless change source, pure so that it can be tested on recorded
 * service answers. Ranges here are half-open byte ranges; the service's PageRangeInfo uses an
 * inclusive `end`, converted on the way in.
 */

/** A byte range [offset, offset + length). */
export interface ByteRange {
  offset: number;
  length: number;
}

/** One item of a Get Page Ranges (Diff) answer, as @azure/storage-blob returns it (`end` inclusive). */
export interface PageRangeItem {
  start: number;
  end: number;
  isClear: boolean;
}

/** What one round must send: ranges to read from the snapshot, and ranges that are now zero. */
export interface RoundPlan {
  data: ByteRange[];
  zero: ByteRange[];
}

/** A service range (inclusive end) as a byte range. */
export function fromPageRange(r: Pick<PageRangeItem, 'start' | 'end'>): ByteRange {
  return { offset: r.start, length: r.end - r.start + 1 };
}

/**
 * Sorted, with overlapping and adjacent ranges merged, widened to whole pages and clamped to
 * [0, size). Empty or out-of-range items disappear. Widening and merging only ever add bytes.
 */
export function normaliseRanges(ranges: Iterable<ByteRange>, size: number): ByteRange[] {
  const clamped: [number, number][] = [];
  for (const r of ranges) {
    if (!Number.isFinite(r.offset) || !Number.isFinite(r.length) || r.length <= 0) continue;
    const start = Math.max(0, Math.floor(r.offset / PAGE_SIZE) * PAGE_SIZE);
    const end = Math.min(size, Math.ceil((r.offset + r.length) / PAGE_SIZE) * PAGE_SIZE);
    if (end > start) clamped.push([start, end]);
  }
  clamped.sort((a, b) => a[0] - b[0]);
  const out: ByteRange[] = [];
  let cur: [number, number] | undefined;
  for (const [start, end] of clamped) {
    if (cur && start <= cur[1]) cur[1] = Math.max(cur[1], end);
    else {
      if (cur) out.push({ offset: cur[0], length: cur[1] - cur[0] });
      cur = [start, end];
    }
  }
  if (cur) out.push({ offset: cur[0], length: cur[1] - cur[0] });
  return out;
}

/** `a` minus `b`; both normalised (sorted, merged). */
export function subtractRanges(a: readonly ByteRange[], b: readonly ByteRange[]): ByteRange[] {
  const out: ByteRange[] = [];
  let j = 0;
  for (const r of a) {
    let start = r.offset;
    const end = r.offset + r.length;
    while (j < b.length && b[j]!.offset + b[j]!.length <= start) j++;
    for (let k = j; k < b.length && b[k]!.offset < end; k++) {
      const cut = b[k]!;
      if (cut.offset > start) out.push({ offset: start, length: cut.offset - start });
      start = Math.max(start, cut.offset + cut.length);
      if (start >= end) break;
    }
    if (start < end) out.push({ offset: start, length: end - start });
  }
  return out;
}

/** Pieces of at most `max` bytes (a multiple of the page size), in order. */
export function* splitRanges(ranges: Iterable<ByteRange>, max: number): Generator<ByteRange> {
  if (!Number.isSafeInteger(max) || max < PAGE_SIZE || max % PAGE_SIZE !== 0) throw new RangeError(`piece size ${max} must be a positive multiple of ${PAGE_SIZE}`);
  for (const r of ranges) {
    for (let at = 0; at < r.length; at += max) yield { offset: r.offset + at, length: Math.min(max, r.length - at) };
  }
}

/** Bytes covered by the ranges (which must not overlap). */
export function totalLength(ranges: Iterable<ByteRange>): number {
  let n = 0;
  for (const r of ranges) n += r.length;
  return n;
}

export interface PlanInput {
  /** Disk size at the round's snapshot; everything is clamped to it. */
  size: number;
  /**
   * The diff answer since the previous snapshot (changed and cleared ranges). On a first round,
   * the snapshot's page ranges. A service that ignores the previous snapshot (Azurite) answers
   * with every written range: more data, never less.
   */
  diff: Iterable<PageRangeItem>;
  /**
   * Written ranges of the previous and of this snapshot. Pages written before and not now were
   * cleared, whether or not the diff says so (Azurite's never does). Omit both when the service
   * is known to report clears.
   */
  previousWritten?: Iterable<PageRangeItem>;
  currentWritten?: Iterable<PageRangeItem>;
  /** First round: everything the snapshot has not written is sent as zeroes. */
  full?: boolean;
}

/**
 * The extents of a round. Data wins over zero where both appear: reading the snapshot gives the
 * true bytes either way, so a doubtful range costs bandwidth, never correctness.
 */
export function planRound(input: PlanInput): RoundPlan {
  const items = [...input.diff];
  const data = normaliseRanges(items.filter((r) => !r.isClear).map(fromPageRange), input.size);
  const cleared: ByteRange[] = items.filter((r) => r.isClear).map(fromPageRange);
  if (input.previousWritten && input.currentWritten) {
    const before = normaliseRanges([...input.previousWritten].filter((r) => !r.isClear).map(fromPageRange), input.size);
    const now = normaliseRanges([...input.currentWritten].filter((r) => !r.isClear).map(fromPageRange), input.size);
    cleared.push(...subtractRanges(before, now));
  }
  if (input.full) cleared.push({ offset: 0, length: input.size });
  return { data, zero: subtractRanges(normaliseRanges(cleared, input.size), data) };
}
