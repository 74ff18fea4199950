import { CorruptionError } from '../replication/errors.js';
import type { Bookmark, BookmarkKind } from '../replication/batch.js';
import { lineageFromBytes, lineageToBytes, type LineageId } from '../replication/position.js';
import { frameRecord, RecordType } from './frame.js';

/**
 * Payloads of the three journal record types, little-endian. Bookmarks use the batch format's
 * 88-byte entry: kind u8, id length u8, 6 reserved, time u64, seq u64, id (64 bytes).
 *
 * UNDO    0 lineage (16)  16 first seq u64  24 last seq u64  32 time u64  40 extent count u32  44 reserved u32
 *         48 extent table: count × 16 — offset u64, length u32, kind u8 (0 data, 1 zero), 3 reserved
 *         then the bytes of every data extent, in table order
 * COMMIT  0 lineage (16)  16 first seq u64  24 last seq u64  32 first time u64  40 last time u64
 *         48 time u64  56 batch flags u16  58 state flags u8  59 reserved u8  60 bookmark count u16
 *         62 reserved u16  64 bookmarks
 * STATE   0 state flags u8  1 reserved (3)  4 bookmark count u16  6 reserved u16  8 lineage (16)
 *         24 last seq u64  32 time u64  40 retired count u32  44 reserved u32  48 bookmarks
 *         then retired lineages, 16 bytes each
 *
 * Times named "time" are the master target's clock (retention is measured on it); first/last
 * time and bookmark times are the source's.
 */

const BOOKMARK_BYTES = 88;
const BOOKMARK_ID_BYTES = 64;
const BOOKMARK_KINDS: readonly BookmarkKind[] = ['crash', 'app', 'group'];
const UNDO_FIXED = 48;
const UNDO_EXTENT_BYTES = 16;
const COMMIT_FIXED = 64;
const STATE_FIXED = 48;
const LINEAGE_BYTES = 16;

const StateFlag = Object.freeze({ hasLineage: 1, consistent: 2, closed: 4 });

function bad(message: string): never {
  throw new CorruptionError('JOURNAL_RECORD', message);
}

function writeU64(buf: Buffer, at: number, n: number): void {
  buf.writeBigUInt64LE(BigInt(n), at);
}

function readU64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) bad(`value ${v} at ${at} exceeds 2^53`);
  return Number(v);
}

function need(buf: Buffer, length: number, what: string): void {
  if (buf.length < length) bad(`${what} record of ${buf.length} bytes is shorter than its ${length}-byte layout`);
}

function writeBookmarks(out: Buffer, at: number, bookmarks: readonly Bookmark[]): void {
  for (const b of bookmarks) {
    out.fill(0, at, at + BOOKMARK_BYTES);
    out.writeUInt8(BOOKMARK_KINDS.indexOf(b.kind), at);
    out.writeUInt8(out.write(b.id, at + 24, BOOKMARK_ID_BYTES, 'utf8'), at + 1);
    writeU64(out, at + 8, b.time);
    writeU64(out, at + 16, b.seq);
    at += BOOKMARK_BYTES;
  }
}

function readBookmarks(buf: Buffer, at: number, count: number): Bookmark[] {
  const out: Bookmark[] = [];
  for (let i = 0; i < count; i++, at += BOOKMARK_BYTES) {
    const kind = BOOKMARK_KINDS[buf.readUInt8(at)];
    const idLen = buf.readUInt8(at + 1);
    if (kind === undefined || idLen === 0 || idLen > BOOKMARK_ID_BYTES) bad(`bookmark ${i} is malformed`);
    out.push({ kind, id: buf.toString('utf8', at + 24, at + 24 + idLen), time: readU64(buf, at + 8), seq: readU64(buf, at + 16) });
  }
  return out;
}

export interface UndoExtent {
  offset: number;
  length: number;
  /** The before-image was all zeroes: no bytes are stored for it. */
  zero: boolean;
}

export interface UndoRecord {
  lineage: LineageId;
  firstSeq: number;
  lastSeq: number;
  time: number;
  extents: UndoExtent[];
}

/** Frames an undo record; `data` holds the before-image of every non-zero extent, in order. */
export function encodeUndo(u: UndoRecord, data: readonly Buffer[]): Buffer[] {
  const meta = Buffer.alloc(UNDO_FIXED + u.extents.length * UNDO_EXTENT_BYTES);
  lineageToBytes(u.lineage, meta, 0);
  writeU64(meta, 16, u.firstSeq);
  writeU64(meta, 24, u.lastSeq);
  writeU64(meta, 32, u.time);
  meta.writeUInt32LE(u.extents.length, 40);
  let at = UNDO_FIXED;
  for (const e of u.extents) {
    writeU64(meta, at, e.offset);
    meta.writeUInt32LE(e.length, at + 8);
    meta.writeUInt8(e.zero ? 1 : 0, at + 12);
    at += UNDO_EXTENT_BYTES;
  }
  return frameRecord(RecordType.undo, [meta, ...data]);
}

/** Size of an undo record's payload without its data. */
export function undoMetaBytes(extentCount: number): number {
  return UNDO_FIXED + extentCount * UNDO_EXTENT_BYTES;
}

/** Decodes an undo payload; extent data are views into `payload`. */
export function decodeUndo(payload: Buffer): UndoRecord & { data: Array<Buffer | undefined> } {
  need(payload, UNDO_FIXED, 'undo');
  const count = payload.readUInt32LE(40);
  need(payload, UNDO_FIXED + count * UNDO_EXTENT_BYTES, 'undo');
  const extents: UndoExtent[] = [];
  const data: Array<Buffer | undefined> = [];
  let dataAt = UNDO_FIXED + count * UNDO_EXTENT_BYTES;
  for (let i = 0, at = UNDO_FIXED; i < count; i++, at += UNDO_EXTENT_BYTES) {
    const e: UndoExtent = { offset: readU64(payload, at), length: payload.readUInt32LE(at + 8), zero: payload.readUInt8(at + 12) === 1 };
    extents.push(e);
    if (e.zero) {
      data.push(undefined);
    } else {
      if (dataAt + e.length > payload.length) bad(`undo extent ${i} runs past the record`);
      data.push(payload.subarray(dataAt, dataAt + e.length));
      dataAt += e.length;
    }
  }
  if (dataAt !== payload.length) bad(`undo record has ${payload.length - dataAt} bytes after its extents`);
  return {
    lineage: lineageFromBytes(payload, 0),
    firstSeq: readU64(payload, 16),
    lastSeq: readU64(payload, 24),
    time: readU64(payload, 32),
    extents,
    data,
  };
}

export interface CommitRecord {
  lineage: LineageId;
  firstSeq: number;
  lastSeq: number;
  firstTime: number;
  lastTime: number;
  time: number;
  batchFlags: number;
  /** The replica is consistent after this batch: its bookmarks are recovery points. */
  consistent: boolean;
  bookmarks: Bookmark[];
}

export function encodeCommit(c: CommitRecord): Buffer[] {
  const p = Buffer.alloc(COMMIT_FIXED + c.bookmarks.length * BOOKMARK_BYTES);
  lineageToBytes(c.lineage, p, 0);
  writeU64(p, 16, c.firstSeq);
  writeU64(p, 24, c.lastSeq);
  writeU64(p, 32, c.firstTime);
  writeU64(p, 40, c.lastTime);
  writeU64(p, 48, c.time);
  p.writeUInt16LE(c.batchFlags, 56);
  p.writeUInt8(c.consistent ? StateFlag.consistent : 0, 58);
  p.writeUInt16LE(c.bookmarks.length, 60);
  writeBookmarks(p, COMMIT_FIXED, c.bookmarks);
  return frameRecord(RecordType.commit, [p]);
}

export function decodeCommit(p: Buffer): CommitRecord {
  need(p, COMMIT_FIXED, 'commit');
  const count = p.readUInt16LE(60);
  if (p.length !== COMMIT_FIXED + count * BOOKMARK_BYTES) bad(`commit record of ${p.length} bytes does not hold ${count} bookmarks`);
  return {
    lineage: lineageFromBytes(p, 0),
    firstSeq: readU64(p, 16),
    lastSeq: readU64(p, 24),
    firstTime: readU64(p, 32),
    lastTime: readU64(p, 40),
    time: readU64(p, 48),
    batchFlags: p.readUInt16LE(56),
    consistent: (p.readUInt8(58) & StateFlag.consistent) !== 0,
    bookmarks: readBookmarks(p, COMMIT_FIXED, count),
  };
}

export interface StateRecord {
  lineage: LineageId | undefined;
  lastSeq: number;
  time: number;
  consistent: boolean;
  /** The lineage was closed by an in-place restore: its later batches are obsolete. */
  closed: boolean;
  /** Bookmarks of the batch that produced this position (recovery points if consistent). */
  bookmarks: Bookmark[];
  /** Lineages superseded by a later one: their batches are obsolete. */
  retired: LineageId[];
}

export function encodeState(s: StateRecord): Buffer[] {
  const p = Buffer.alloc(STATE_FIXED + s.bookmarks.length * BOOKMARK_BYTES + s.retired.length * LINEAGE_BYTES);
  p.writeUInt8(
    (s.lineage !== undefined ? StateFlag.hasLineage : 0) | (s.consistent ? StateFlag.consistent : 0) | (s.closed ? StateFlag.closed : 0),
    0,
  );
  p.writeUInt16LE(s.bookmarks.length, 4);
  if (s.lineage !== undefined) lineageToBytes(s.lineage, p, 8);
  writeU64(p, 24, s.lastSeq);
  writeU64(p, 32, s.time);
  p.writeUInt32LE(s.retired.length, 40);
  writeBookmarks(p, STATE_FIXED, s.bookmarks);
  let at = STATE_FIXED + s.bookmarks.length * BOOKMARK_BYTES;
  for (const l of s.retired) {
    lineageToBytes(l, p, at);
    at += LINEAGE_BYTES;
  }
  return frameRecord(RecordType.state, [p]);
}

export function decodeState(p: Buffer): StateRecord {
  need(p, STATE_FIXED, 'state');
  const flags = p.readUInt8(0);
  const bookmarkCount = p.readUInt16LE(4);
  const retiredCount = p.readUInt32LE(40);
  const retiredAt = STATE_FIXED + bookmarkCount * BOOKMARK_BYTES;
  if (p.length !== retiredAt + retiredCount * LINEAGE_BYTES) bad(`state record of ${p.length} bytes does not match its counts`);
  const retired: LineageId[] = [];
  for (let i = 0; i < retiredCount; i++) retired.push(lineageFromBytes(p, retiredAt + i * LINEAGE_BYTES));
  return {
    lineage: (flags & StateFlag.hasLineage) !== 0 ? lineageFromBytes(p, 8) : undefined,
    lastSeq: readU64(p, 24),
    time: readU64(p, 32),
    consistent: (flags & StateFlag.consistent) !== 0,
    closed: (flags & StateFlag.closed) !== 0,
    bookmarks: readBookmarks(p, STATE_FIXED, bookmarkCount),
    retired,
  };
}
