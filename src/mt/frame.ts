import { crc32 } from 'node:zlib';
import { CorruptionError } from '../replication/errors.js';

/**
 * Framing of journal records. Every record is a 24-byte header followed by its payload,
 * little-endian:
 *
 *    0 magic "BMRJ" u32    4 type u8    5 version u8    6 reserved u16
 *    8 payload length u32  12 payload crc32 u32   16 reserved u32
 *   20 header crc32 u32 (over bytes 0..19)
 *
 * The header carries its own checksum so a scan can trust a record's type and length without
 * reading the payload: undo payloads are large, and they are verified when they are used.
 */
export const RECORD_MAGIC = 0x4a524d42; // "BMRJ" read as little-endian u32
export const RECORD_VERSION = 1;
export const RECORD_HEADER_BYTES = 24;

export const RecordType = Object.freeze({
  /** The disk's state: first record of every segment (a checkpoint) and the mark of an in-place restore. */
  state: 1,
  /** Before-images of the extents a batch is about to overwrite. */
  undo: 2,
  /** The batch whose undo records precede it is applied to the target. */
  commit: 3,
});

export interface RecordHeader {
  type: number;
  payloadLength: number;
  payloadCrc: number;
}

export function crcOf(parts: readonly Buffer[]): number {
  let c = 0;
  for (const p of parts) c = crc32(p, c);
  return c;
}

/** Header plus payload as a list of buffers, ready for one writev (payloads are not copied). */
export function frameRecord(type: number, payload: readonly Buffer[]): Buffer[] {
  let length = 0;
  for (const p of payload) length += p.length;
  const h = Buffer.alloc(RECORD_HEADER_BYTES);
  h.writeUInt32LE(RECORD_MAGIC, 0);
  h.writeUInt8(type, 4);
  h.writeUInt8(RECORD_VERSION, 5);
  h.writeUInt32LE(length, 8);
  h.writeUInt32LE(crcOf(payload), 12);
  h.writeUInt32LE(crc32(h.subarray(0, 20)), 20);
  return [h, ...payload];
}

export function framedLength(parts: readonly Buffer[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/**
 * Parses a header; undefined when the bytes are not a valid header (torn or corrupt — the caller
 * knows which from where it sits). A valid header of another version is a hard error: it was
 * written by a different build and must not be mistaken for damage.
 */
export function parseRecordHeader(buf: Buffer): RecordHeader | undefined {
  if (buf.length < RECORD_HEADER_BYTES) return undefined;
  if (buf.readUInt32LE(0) !== RECORD_MAGIC) return undefined;
  if (crc32(buf.subarray(0, 20)) !== buf.readUInt32LE(20)) return undefined;
  const version = buf.readUInt8(5);
  if (version !== RECORD_VERSION)
    throw new CorruptionError('JOURNAL_VERSION', `journal record version ${version} is not supported (this build reads ${RECORD_VERSION})`);
  return { type: buf.readUInt8(4), payloadLength: buf.readUInt32LE(8), payloadCrc: buf.readUInt32LE(12) };
}
