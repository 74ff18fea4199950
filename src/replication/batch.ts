import { crc32 } from 'node:zlib';
import { BatchFormatError } from './errors.js';
import { isDiskId, lineageFromBytes, lineageToBytes, type LineageId } from './position.js';

/**
 * The batch: the unit of replication on every hop (agent → PS → MT). A batch holds the events of
 * one disk's lineage with sequence numbers firstSeq..lastSeq, in order: extents (data or zeroes)
 * and bookmarks. A batch is applied whole or not at all.
 *
 * Wire format v1, little-endian:
 *
 *   header (80 bytes)
 *     0  magic "BMRB"          4  version u16        6  flags u16
 *     8  total length u32     12  extent count u32   16  bookmark count u32
 *    20  disk id length u16   22  reserved u16       24  lineage (16 bytes, uuid)
 *    40  first seq u64        48  last seq u64       56  first time u64 (ms)   64  last time u64 (ms)
 *    72  data length u64
 *   disk id (utf-8)
 *   extent table: count × 16 bytes — offset u64, length u32, kind u8, 3 reserved
 *   bookmark table: count × 88 bytes — kind u8, id length u8, 6 reserved, time u64, seq u64, id (64)
 *   data: the data of every "data" extent, in table order
 *   crc32 (u32) of everything before it
 *
 * Parsing checks every length against the limits below before using it, so a hostile or corrupt
 * batch can never make the reader allocate or read past the buffer.
 */

export const BATCH_MAGIC = 0x42524d42; // "BMRB" read as little-endian u32
export const BATCH_VERSION = 1;
export const SECTOR = 512;

export const BATCH_LIMITS = Object.freeze({
  maxBytes: 64 * 1024 * 1024,
  maxExtents: 65_536,
  maxBookmarks: 64,
  maxExtentLength: 32 * 1024 * 1024,
  maxDiskIdBytes: 128,
  maxBookmarkIdBytes: 64,
});

const HEADER = 80;
const EXTENT_ENTRY = 16;
const BOOKMARK_ENTRY = 88;
const TRAILER = 4;

export const BatchFlags = Object.freeze({
  /** First batch of a new lineage: the replica is inconsistent until a resync completes. */
  lineageStart: 1,
  /** The extents are resync data (read from the source disk), not captured writes. */
  resync: 2,
  /** The last resync extent of the lineage is in this batch: the replica is now consistent. */
  resyncDone: 4,
});
const KNOWN_FLAGS = BatchFlags.lineageStart | BatchFlags.resync | BatchFlags.resyncDone;

export type ExtentKind = 'data' | 'zero';
const EXTENT_KINDS: readonly ExtentKind[] = ['data', 'zero'];

export interface Extent {
  offset: number;
  length: number;
  /** Present for 'data' extents, exactly `length` bytes; absent for 'zero'. */
  data?: Buffer;
}

export type BookmarkKind = 'crash' | 'app' | 'group';
const BOOKMARK_KINDS: readonly BookmarkKind[] = ['crash', 'app', 'group'];

export interface Bookmark {
  id: string;
  kind: BookmarkKind;
  /** Wall-clock time the bookmark was taken, ms since the epoch. */
  time: number;
  /** Sequence number of the bookmark event: the state after every event before it. */
  seq: number;
}

export interface Batch {
  diskId: string;
  lineage: LineageId;
  firstSeq: number;
  lastSeq: number;
  firstTime: number;
  lastTime: number;
  flags: number;
  extents: Extent[];
  bookmarks: Bookmark[];
}

export function hasFlag(batch: Pick<Batch, 'flags'>, flag: number): boolean {
  return (batch.flags & flag) !== 0;
}

export function batchDataBytes(batch: Pick<Batch, 'extents'>): number {
  let n = 0;
  for (const e of batch.extents) if (e.data) n += e.length;
  return n;
}

function fail(code: string, message: string): never {
  throw new BatchFormatError(code, message);
}

function checkExtent(e: Extent, i: number): void {
  if (!Number.isSafeInteger(e.offset) || e.offset < 0 || e.offset % SECTOR !== 0)
    fail('BATCH_EXTENT_UNALIGNED', `extent ${i}: offset ${e.offset} is not a multiple of ${SECTOR}`);
  if (!Number.isSafeInteger(e.length) || e.length <= 0 || e.length % SECTOR !== 0)
    fail('BATCH_EXTENT_UNALIGNED', `extent ${i}: length ${e.length} is not a positive multiple of ${SECTOR}`);
  if (e.length > BATCH_LIMITS.maxExtentLength)
    fail('BATCH_LIMIT', `extent ${i}: length ${e.length} exceeds ${BATCH_LIMITS.maxExtentLength}`);
  if (!Number.isSafeInteger(e.offset + e.length)) fail('BATCH_EXTENT_RANGE', `extent ${i}: end beyond 2^53`);
}

function checkSeqs(b: Pick<Batch, 'firstSeq' | 'lastSeq' | 'firstTime' | 'lastTime'>): void {
  if (!Number.isSafeInteger(b.firstSeq) || b.firstSeq < 1) fail('BATCH_SEQ', `first sequence ${b.firstSeq} must be ≥ 1`);
  if (!Number.isSafeInteger(b.lastSeq) || b.lastSeq < b.firstSeq)
    fail('BATCH_SEQ', `last sequence ${b.lastSeq} is before first sequence ${b.firstSeq}`);
  if (!Number.isSafeInteger(b.firstTime) || !Number.isSafeInteger(b.lastTime) || b.firstTime < 0 || b.lastTime < b.firstTime)
    fail('BATCH_TIME', `times ${b.firstTime}..${b.lastTime} are not an ordered pair of epoch milliseconds`);
}

/** Size in bytes that encodeBatch will produce. */
export function encodedBatchSize(batch: Batch): number {
  return (
    HEADER +
    Buffer.byteLength(batch.diskId) +
    batch.extents.length * EXTENT_ENTRY +
    batch.bookmarks.length * BOOKMARK_ENTRY +
    batchDataBytes(batch) +
    TRAILER
  );
}

/**
 * Encodes a batch as a list of buffers: one with the header and tables, then the extents' data
 * as they are (not copied), then the checksum. The sender writes them with one writev; the
 * agent never copies captured data into a batch.
 */
export function encodeBatchParts(batch: Batch): { parts: Buffer[]; length: number } {
  if (!isDiskId(batch.diskId)) fail('BATCH_DISK_ID', `disk id ${JSON.stringify(batch.diskId)} is not valid`);
  checkSeqs(batch);
  if ((batch.flags & ~KNOWN_FLAGS) !== 0) fail('BATCH_FLAGS', `unknown flags ${batch.flags}`);
  if (batch.extents.length > BATCH_LIMITS.maxExtents) fail('BATCH_LIMIT', `${batch.extents.length} extents exceed ${BATCH_LIMITS.maxExtents}`);
  if (batch.bookmarks.length > BATCH_LIMITS.maxBookmarks)
    fail('BATCH_LIMIT', `${batch.bookmarks.length} bookmarks exceed ${BATCH_LIMITS.maxBookmarks}`);
  batch.extents.forEach((e, i) => {
    checkExtent(e, i);
    if (e.data && e.data.length !== e.length) fail('BATCH_EXTENT_DATA', `extent ${i}: ${e.data.length} data bytes for length ${e.length}`);
  });
  const total = encodedBatchSize(batch);
  if (total > BATCH_LIMITS.maxBytes) fail('BATCH_LIMIT', `batch of ${total} bytes exceeds ${BATCH_LIMITS.maxBytes}`);

  const dataBytes = batchDataBytes(batch);
  const head = Buffer.allocUnsafe(total - dataBytes - TRAILER);
  const diskIdLen = head.write(batch.diskId, HEADER, 'utf8');
  head.writeUInt32LE(BATCH_MAGIC, 0);
  head.writeUInt16LE(BATCH_VERSION, 4);
  head.writeUInt16LE(batch.flags, 6);
  head.writeUInt32LE(total, 8);
  head.writeUInt32LE(batch.extents.length, 12);
  head.writeUInt32LE(batch.bookmarks.length, 16);
  head.writeUInt16LE(diskIdLen, 20);
  head.writeUInt16LE(0, 22);
  lineageToBytes(batch.lineage, head, 24);
  head.writeBigUInt64LE(BigInt(batch.firstSeq), 40);
  head.writeBigUInt64LE(BigInt(batch.lastSeq), 48);
  head.writeBigUInt64LE(BigInt(batch.firstTime), 56);
  head.writeBigUInt64LE(BigInt(batch.lastTime), 64);
  head.writeBigUInt64LE(BigInt(dataBytes), 72);

  let at = HEADER + diskIdLen;
  for (const e of batch.extents) {
    head.writeBigUInt64LE(BigInt(e.offset), at);
    head.writeUInt32LE(e.length, at + 8);
    head.writeUInt32LE(e.data ? 0 : 1, at + 12); // kind in the low byte, reserved bytes zero
    at += EXTENT_ENTRY;
  }
  for (const b of batch.bookmarks) {
    const kind = BOOKMARK_KINDS.indexOf(b.kind);
    if (kind < 0) fail('BATCH_BOOKMARK', `bookmark kind ${JSON.stringify(b.kind)} is not crash, app or group`);
    if (!Number.isSafeInteger(b.seq) || b.seq < batch.firstSeq || b.seq > batch.lastSeq)
      fail('BATCH_BOOKMARK', `bookmark ${b.id} seq ${b.seq} is outside ${batch.firstSeq}..${batch.lastSeq}`);
    if (!Number.isSafeInteger(b.time) || b.time < 0) fail('BATCH_BOOKMARK', `bookmark ${b.id} time ${b.time} is invalid`);
    head.fill(0, at, at + BOOKMARK_ENTRY);
    const idLen = head.write(b.id, at + 24, BATCH_LIMITS.maxBookmarkIdBytes, 'utf8');
    if (idLen === 0 || idLen !== Buffer.byteLength(b.id))
      fail('BATCH_BOOKMARK', `bookmark id ${JSON.stringify(b.id)} must be 1..${BATCH_LIMITS.maxBookmarkIdBytes} bytes`);
    head.writeUInt8(kind, at);
    head.writeUInt8(idLen, at + 1);
    head.writeBigUInt64LE(BigInt(b.time), at + 8);
    head.writeBigUInt64LE(BigInt(b.seq), at + 16);
    at += BOOKMARK_ENTRY;
  }
  const parts: Buffer[] = [head];
  let crc = crc32(head);
  for (const e of batch.extents) {
    if (!e.data) continue;
    parts.push(e.data);
    crc = crc32(e.data, crc);
  }
  const trailer = Buffer.allocUnsafe(TRAILER);
  trailer.writeUInt32LE(crc, 0);
  parts.push(trailer);
  return { parts, length: total };
}

/** The batch as one contiguous buffer (see encodeBatchParts). */
export function encodeBatch(batch: Batch): Buffer {
  const { parts, length } = encodeBatchParts(batch);
  return Buffer.concat(parts, length);
}

function readSafe(buf: Buffer, at: number, what: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('BATCH_RANGE', `${what} ${v} exceeds 2^53`);
  return Number(v);
}

/** Reads the fields that routing needs without verifying the body (the spool index uses it). */
export function peekBatchHeader(buf: Buffer): Pick<Batch, 'diskId' | 'lineage' | 'firstSeq' | 'lastSeq' | 'flags'> & { totalLength: number } {
  if (buf.length < HEADER) fail('BATCH_TRUNCATED', `batch of ${buf.length} bytes is shorter than its ${HEADER}-byte header`);
  if (buf.readUInt32LE(0) !== BATCH_MAGIC) fail('BATCH_MAGIC', 'not a batch (bad magic)');
  const version = buf.readUInt16LE(4);
  if (version !== BATCH_VERSION) fail('BATCH_VERSION', `batch version ${version} is not supported (this build reads ${BATCH_VERSION})`);
  const totalLength = buf.readUInt32LE(8);
  const diskIdLen = buf.readUInt16LE(20);
  if (diskIdLen === 0 || diskIdLen > BATCH_LIMITS.maxDiskIdBytes) fail('BATCH_DISK_ID', `disk id length ${diskIdLen} is out of range`);
  if (buf.length < HEADER + diskIdLen) fail('BATCH_TRUNCATED', 'batch ends inside its disk id');
  const diskId = buf.toString('utf8', HEADER, HEADER + diskIdLen);
  if (!isDiskId(diskId)) fail('BATCH_DISK_ID', `disk id ${JSON.stringify(diskId)} is not valid`);
  return {
    diskId,
    lineage: lineageFromBytes(buf, 24),
    firstSeq: readSafe(buf, 40, 'first sequence'),
    lastSeq: readSafe(buf, 48, 'last sequence'),
    flags: buf.readUInt16LE(6),
    totalLength,
  };
}

/**
 * Parses and verifies a whole batch. Extent data are views into `buf` (no copy): keep `buf`
 * alive and unmodified while the batch is in use.
 */
export function decodeBatch(buf: Buffer): Batch {
  const head = peekBatchHeader(buf);
  if (head.totalLength !== buf.length) fail('BATCH_LENGTH', `header says ${head.totalLength} bytes, got ${buf.length}`);
  if (buf.length > BATCH_LIMITS.maxBytes) fail('BATCH_LIMIT', `batch of ${buf.length} bytes exceeds ${BATCH_LIMITS.maxBytes}`);
  const body = buf.length - TRAILER;
  if (crc32(buf.subarray(0, body)) !== buf.readUInt32LE(body)) fail('BATCH_CHECKSUM', 'batch checksum mismatch (corrupted in transit or at rest)');
  if ((head.flags & ~KNOWN_FLAGS) !== 0) fail('BATCH_FLAGS', `unknown flags ${head.flags}`);

  const extentCount = buf.readUInt32LE(12);
  const bookmarkCount = buf.readUInt32LE(16);
  if (extentCount > BATCH_LIMITS.maxExtents) fail('BATCH_LIMIT', `${extentCount} extents exceed ${BATCH_LIMITS.maxExtents}`);
  if (bookmarkCount > BATCH_LIMITS.maxBookmarks) fail('BATCH_LIMIT', `${bookmarkCount} bookmarks exceed ${BATCH_LIMITS.maxBookmarks}`);
  const diskIdLen = buf.readUInt16LE(20);
  const tables = HEADER + diskIdLen + extentCount * EXTENT_ENTRY + bookmarkCount * BOOKMARK_ENTRY;
  const dataLength = readSafe(buf, 72, 'data length');
  if (tables + dataLength !== body) fail('BATCH_LENGTH', `tables (${tables}) plus data (${dataLength}) do not fill the batch (${body})`);

  const batch: Batch = {
    diskId: head.diskId,
    lineage: head.lineage,
    firstSeq: head.firstSeq,
    lastSeq: head.lastSeq,
    firstTime: readSafe(buf, 56, 'first time'),
    lastTime: readSafe(buf, 64, 'last time'),
    flags: head.flags,
    extents: [],
    bookmarks: [],
  };
  checkSeqs(batch);

  let at = HEADER + diskIdLen;
  let dataAt = tables;
  for (let i = 0; i < extentCount; i++, at += EXTENT_ENTRY) {
    const offset = readSafe(buf, at, `extent ${i} offset`);
    const length = buf.readUInt32LE(at + 8);
    const kindByte = buf.readUInt8(at + 12);
    const kind = EXTENT_KINDS[kindByte];
    if (kind === undefined || buf.readUIntLE(at + 13, 3) !== 0) fail('BATCH_EXTENT_KIND', `extent ${i}: unknown kind ${kindByte}`);
    const e: Extent = { offset, length };
    checkExtent(e, i);
    if (kind === 'data') {
      if (dataAt + length > body) fail('BATCH_LENGTH', `extent ${i}: data runs past the end of the batch`);
      e.data = buf.subarray(dataAt, dataAt + length);
      dataAt += length;
    }
    batch.extents.push(e);
  }
  if (dataAt !== body) fail('BATCH_LENGTH', `extent data (${dataAt - tables} bytes) does not match the data length (${dataLength})`);
  for (let i = 0; i < bookmarkCount; i++, at += BOOKMARK_ENTRY) {
    const kind = BOOKMARK_KINDS[buf.readUInt8(at)];
    const idLen = buf.readUInt8(at + 1);
    if (kind === undefined) fail('BATCH_BOOKMARK', `bookmark ${i}: unknown kind ${buf.readUInt8(at)}`);
    if (idLen === 0 || idLen > BATCH_LIMITS.maxBookmarkIdBytes) fail('BATCH_BOOKMARK', `bookmark ${i}: id length ${idLen} is out of range`);
    const b: Bookmark = {
      kind,
      id: buf.toString('utf8', at + 24, at + 24 + idLen),
      time: readSafe(buf, at + 8, `bookmark ${i} time`),
      seq: readSafe(buf, at + 16, `bookmark ${i} seq`),
    };
    if (b.seq < batch.firstSeq || b.seq > batch.lastSeq) fail('BATCH_BOOKMARK', `bookmark ${b.id}: seq ${b.seq} is outside the batch`);
    batch.bookmarks.push(b);
  }
  return batch;
}
