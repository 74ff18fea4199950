import type { Extent } from '../replication/batch.js';
import { isAllZero, type BlockDevice } from '../replication/disk.js';
import { CorruptionError } from '../replication/errors.js';
import { crcOf, parseRecordHeader, RECORD_HEADER_BYTES, RecordType } from './frame.js';
import { decodeUndo, undoMetaBytes, type UndoExtent } from './records.js';
import type { RecordRef, SegmentStore } from './segments.js';

/**
 * Before-images: reading them from the target ahead of a batch, and writing them back to roll a
 * disk (the target or a restored copy) back past batches.
 */

/** Most bytes of before-images in one undo record: bounds memory for batches that zero huge ranges. */
export const UNDO_PART_BYTES = 32 * 1024 * 1024;
/** Before-images are checked for zeroes in aligned grains of this size; all-zero runs store no bytes. */
const ZERO_GRAIN = 64 * 1024;

export type Range = readonly [start: number, end: number];

/** The sorted union of the extents' ranges, and whether any two extents overlap. */
export function coverage(extents: readonly Extent[]): { ranges: Range[]; overlapping: boolean } {
  const sorted = extents.map((e): Range => [e.offset, e.offset + e.length]).sort((a, b) => a[0] - b[0]);
  const ranges: Array<[number, number]> = [];
  let overlapping = false;
  for (const [s, e] of sorted) {
    const last = ranges.at(-1);
    if (last && s <= last[1]) {
      if (s < last[1]) overlapping = true;
      last[1] = Math.max(last[1], e);
    } else {
      ranges.push([s, e]);
    }
  }
  return { ranges, overlapping };
}

/** An upper bound of the journal bytes the undo records for `ranges` take (zero runs only shrink them). */
export function undoBytesBound(ranges: readonly Range[]): number {
  let bytes = 0;
  let extents = 0;
  for (const [s, e] of ranges) {
    bytes += e - s;
    extents += Math.ceil((e - s) / ZERO_GRAIN) + 1;
  }
  const parts = Math.max(1, Math.ceil(bytes / UNDO_PART_BYTES));
  return bytes + parts * (RECORD_HEADER_BYTES + undoMetaBytes(1)) + undoMetaBytes(extents) - undoMetaBytes(0);
}

export interface UndoPart {
  extents: UndoExtent[];
  /** Before-images of the non-zero extents, in order: views into one read buffer. */
  data: Buffer[];
}

/**
 * Reads the before-images of `ranges` in parts of at most UNDO_PART_BYTES. Every read happens
 * before the caller writes anything, so overlapping writes within a batch are undone correctly.
 */
export async function* readBeforeImages(disk: BlockDevice, ranges: readonly Range[]): AsyncGenerator<UndoPart> {
  let pieces: Array<[number, number]> = [];
  let bytes = 0;
  for (const [s, e] of ranges) {
    for (let at = s; at < e; ) {
      const take = Math.min(e - at, UNDO_PART_BYTES - bytes);
      pieces.push([at, at + take]);
      bytes += take;
      at += take;
      if (bytes === UNDO_PART_BYTES) {
        yield await readPart(disk, pieces, bytes);
        pieces = [];
        bytes = 0;
      }
    }
  }
  if (pieces.length > 0) yield await readPart(disk, pieces, bytes);
}

async function readPart(disk: BlockDevice, pieces: ReadonlyArray<readonly [number, number]>, bytes: number): Promise<UndoPart> {
  const buf = Buffer.allocUnsafe(bytes);
  const reads: Array<Promise<void>> = [];
  let at = 0;
  for (const [s, e] of pieces) {
    reads.push(disk.readInto(buf.subarray(at, at + e - s), s));
    at += e - s;
  }
  await Promise.all(reads);

  // Split into runs of zero / non-zero grains; a run never crosses a piece boundary.
  const extents: UndoExtent[] = [];
  const data: Buffer[] = [];
  let runStart = 0;
  at = 0;
  for (const [s, e] of pieces) {
    for (let off = s; off < e; ) {
      const next = Math.min(e, (Math.floor(off / ZERO_GRAIN) + 1) * ZERO_GRAIN);
      const zero = isAllZero(buf.subarray(at, at + next - off));
      const last = extents.at(-1);
      if (last && last.zero === zero && last.offset + last.length === off) {
        last.length += next - off;
        if (!zero) data[data.length - 1] = buf.subarray(runStart, at + next - off);
      } else {
        extents.push({ offset: off, length: next - off, zero });
        runStart = at;
        if (!zero) data.push(buf.subarray(at, at + next - off));
      }
      at += next - off;
      off = next;
    }
  }
  return { extents, data };
}

/** Writes the batch's extents in order. Without overlaps the order does not matter, so they go in parallel. */
export async function writeExtents(disk: BlockDevice, extents: readonly Extent[], overlapping: boolean): Promise<void> {
  const write = (e: Extent) => (e.data ? disk.write(e.offset, e.data) : disk.writeZeroes(e.offset, e.length));
  if (overlapping) {
    for (const e of extents) await write(e);
  } else {
    await Promise.all(extents.map(write));
  }
}

/** Reads an undo record and verifies it (undo payloads are not verified when the journal is scanned). */
async function readUndo(store: SegmentStore, ref: RecordRef): Promise<Buffer> {
  const rec = await store.read(ref.segment, ref.offset, ref.length);
  const head = parseRecordHeader(rec);
  const payload = rec.subarray(RECORD_HEADER_BYTES);
  if (!head || head.type !== RecordType.undo || crcOf([payload]) !== head.payloadCrc)
    throw new CorruptionError('JOURNAL_CORRUPT', `undo record in journal segment ${ref.segment} at offset ${ref.offset} fails its checksum`);
  return payload;
}

async function writeBack(disk: BlockDevice, payload: Buffer): Promise<void> {
  const u = decodeUndo(payload);
  for (const e of u.extents) {
    if (e.offset + e.length > disk.size) throw new CorruptionError('JOURNAL_CORRUPT', `undo extent at ${e.offset} lies beyond the disk`);
  }
  // The extents of one undo record never overlap (they come from merged ranges).
  await Promise.all(
    u.extents.map((e, i) => {
      const d = u.data[i];
      return d ? disk.write(e.offset, d) : disk.writeZeroes(e.offset, e.length);
    }),
  );
}

/**
 * Writes back the before-images of `refs` (newest first) and flushes: the disk then holds the
 * state before the oldest of them. The next record is read while one is written.
 */
export async function rollBack(disk: BlockDevice, store: SegmentStore, refs: readonly RecordRef[]): Promise<void> {
  let next = refs[0] && readUndo(store, refs[0]);
  for (let i = 0; next; i++) {
    const payload = await next;
    const ref = refs[i + 1];
    next = ref && readUndo(store, ref);
    next?.catch(() => undefined); // awaited on the next turn; a failed write must not leave it unhandled
    await writeBack(disk, payload);
  }
  await disk.flush();
}
