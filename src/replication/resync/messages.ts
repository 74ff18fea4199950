import { ProtocolError } from '../errors.js';
import { isDiskId, isLineage, lineageFromBytes, lineageToBytes, type LineageId } from '../position.js';
import { jsonPayload, parseJson } from '../transport.js';
import { bitmapBytes, countBits, getBit, paddingIsZero } from './bits.js';
import { ResyncError } from './errors.js';
import { DIGEST_BYTES, hashKeyBytes, isHashSuite, type HashSuite } from './hashing.js';
import { blocksIn, checkLayout, regionsIn, type ResyncLayout } from './layout.js';

/**
 * The resync protocol, over one connection of the data transport (`transport.ts` framing, TLS,
 * token hello). The source side (which has the source disk) drives; the target side answers.
 *
 *   32 open     source → target  JSON {diskId, sourceSize, blockBytes, regionBytes, batchBytes, hash, key, allowLargerTarget}
 *   33 ready    target → source  JSON {targetSize}   (or the transport's `error` frame, e.g. RESYNC_SIZE_MISMATCH)
 *   34 compare  source → target  id u32 | offset u64 | length u32 | zero-region bitmap | digest of each non-zero region
 *   35 diff     target → source  id u32 | offset u64 | length u32 | differs bitmap | target-zero bitmap |
 *                                for each differing region whose target is not all zero: zero-block bitmap,
 *                                then (unless the source region is all zero) the digest of each non-zero target block
 *   36 write    source → target  offset u64 | data          (the standalone sink)
 *   37 zero     source → target  offset u64 | length u32
 *   38 flush    source → target  id u32: make every write so far durable
 *   39 flushed  target → source  id u32
 *   40 wait     source → target  id u32 | seq u64 | lineage (16 bytes): answer once the target's
 *                                replication stream has applied `seq` of `lineage` (the capture sink)
 *   41 reached  target → source  id u32
 *
 * `open` may carry a fence {fenceLineage, fenceTime}: the target is a replica fed by a replication
 * stream (the master target), and batches of any other lineage sealed before `fenceTime` (the
 * source's clock) must never be applied to it again — they could undo what the compare found
 * equal. The target makes the fence durable before it answers `ready`.
 *
 * Offsets and lengths are bytes (little-endian). A compare covers whole regions (the last one may
 * be short at the end of the disk); diffs come back in request order. Every message is checked
 * against the open session before anything is allocated or written; anything else is refused
 * with a ProtocolError (RESYNC_BAD_MESSAGE, RESYNC_OUT_OF_RANGE) and the connection ends.
 */
export const ResyncFrame = Object.freeze({
  open: 32,
  ready: 33,
  compare: 34,
  diff: 35,
  write: 36,
  zero: 37,
  flush: 38,
  flushed: 39,
  wait: 40,
  reached: 41,
});

/** See `open`: no batch of another lineage sealed before `time` may be applied after the compare. */
export interface ResyncFence {
  lineage: LineageId;
  /** Milliseconds since the epoch, on the source's batch clock. */
  time: number;
}

export interface OpenRequest {
  diskId: string;
  sourceSize: number;
  layout: ResyncLayout;
  hash: HashSuite;
  key: Buffer;
  allowLargerTarget: boolean;
  fence?: ResyncFence;
}

export interface OpenReply {
  targetSize: number;
}

export interface CompareRequest {
  id: number;
  offset: number;
  length: number;
  /** Bit i: region i of the request is all zero on the source. */
  regionZero: Uint8Array;
  /** DIGEST_BYTES for each non-zero region, in order. */
  digests: Buffer;
}

export interface RegionLeaves {
  /** Bit j: block j of the region is all zero on the target. */
  blockZero: Uint8Array;
  /** Digests of the target's non-zero blocks, in order; absent when the source region is all zero. */
  digests: Buffer | undefined;
}

export interface DiffReply {
  id: number;
  offset: number;
  length: number;
  differs: Uint8Array;
  /** Bit i: region i differs and is all zero on the target (no leaves follow). */
  targetZero: Uint8Array;
  /** Per region: present for differing regions whose target is not all zero. */
  leaves: (RegionLeaves | undefined)[];
}

/** What a message is checked against: the compared range and the layout of the session. */
export interface ResyncSpan {
  end: number;
  layout: ResyncLayout;
}

const HEADER = 16; // id u32 | offset u64 | length u32
const MAX_SAFE_HIGH = Math.floor(Number.MAX_SAFE_INTEGER / 2 ** 32);

function malformed(message: string): never {
  throw new ProtocolError('RESYNC_BAD_MESSAGE', message);
}

function outOfRange(message: string): never {
  throw new ProtocolError('RESYNC_OUT_OF_RANGE', message);
}

function writeU64(buf: Buffer, n: number, at: number): void {
  buf.writeUInt32LE(n % 2 ** 32, at);
  buf.writeUInt32LE(Math.floor(n / 2 ** 32), at + 4);
}

function readU64(buf: Buffer, at: number): number {
  const high = buf.readUInt32LE(at + 4);
  if (high > MAX_SAFE_HIGH) malformed('offset beyond 2^53');
  return high * 2 ** 32 + buf.readUInt32LE(at);
}

function header(id: number, offset: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER);
  h.writeUInt32LE(id >>> 0, 0);
  writeU64(h, offset, 4);
  h.writeUInt32LE(length, 12);
  return h;
}

function asBuffer(map: Uint8Array): Buffer {
  return Buffer.from(map.buffer, map.byteOffset, map.byteLength);
}

export function encodeOpen(o: OpenRequest): Buffer {
  return jsonPayload({
    diskId: o.diskId,
    sourceSize: o.sourceSize,
    blockBytes: o.layout.blockBytes,
    regionBytes: o.layout.regionBytes,
    batchBytes: o.layout.batchBytes,
    hash: o.hash,
    key: o.key.toString('base64'),
    allowLargerTarget: o.allowLargerTarget,
    ...(o.fence ? { fenceLineage: o.fence.lineage, fenceTime: o.fence.time } : {}),
  });
}

export function decodeOpen(payload: Buffer): OpenRequest {
  const v = parseJson<Record<string, unknown>>({ type: ResyncFrame.open, payload }, 'resync open');
  if (typeof v.diskId !== 'string' || !isDiskId(v.diskId)) malformed('open: diskId is not a disk id');
  if (!Number.isSafeInteger(v.sourceSize) || (v.sourceSize as number) < 0) malformed('open: sourceSize is not a size');
  let layout: ResyncLayout;
  try {
    layout = checkLayout({ blockBytes: v.blockBytes as number, regionBytes: v.regionBytes as number, batchBytes: v.batchBytes as number });
  } catch (err) {
    if (err instanceof ResyncError) malformed(`open: ${err.message}`);
    throw err;
  }
  if (!isHashSuite(v.hash)) malformed(`open: unknown hash ${JSON.stringify(v.hash)}`);
  if (typeof v.key !== 'string') malformed('open: key is not a string');
  const key = Buffer.from(v.key, 'base64');
  if (key.length !== hashKeyBytes(v.hash) || key.toString('base64') !== v.key) malformed(`open: a ${v.hash} key is ${hashKeyBytes(v.hash)} bytes of base64`);
  if (typeof v.allowLargerTarget !== 'boolean') malformed('open: allowLargerTarget is not a boolean');
  const request: OpenRequest = { diskId: v.diskId, sourceSize: v.sourceSize as number, layout, hash: v.hash, key, allowLargerTarget: v.allowLargerTarget };
  if (v.fenceLineage !== undefined || v.fenceTime !== undefined) {
    if (typeof v.fenceLineage !== 'string' || !isLineage(v.fenceLineage)) malformed('open: fenceLineage is not a lineage id');
    if (!Number.isSafeInteger(v.fenceTime) || (v.fenceTime as number) < 0) malformed('open: fenceTime is not a time');
    request.fence = { lineage: v.fenceLineage, time: v.fenceTime as number };
  }
  return request;
}

export function encodeReady(r: OpenReply): Buffer {
  return jsonPayload({ targetSize: r.targetSize });
}

export function decodeReady(payload: Buffer): OpenReply {
  const v = parseJson<Record<string, unknown>>({ type: ResyncFrame.ready, payload }, 'resync ready');
  if (!Number.isSafeInteger(v.targetSize) || (v.targetSize as number) < 0) malformed('ready: targetSize is not a size');
  return { targetSize: v.targetSize as number };
}

export function encodeCompare(r: CompareRequest): Buffer[] {
  return [header(r.id, r.offset, r.length), asBuffer(r.regionZero), r.digests];
}

/** The range a compare or diff covers: whole regions, one batch at most, inside the span. */
function checkBatchRange(offset: number, length: number, span: ResyncSpan, what: string): void {
  const { regionBytes, batchBytes } = span.layout;
  if (offset % regionBytes !== 0) malformed(`${what}: offset ${offset} is not a region boundary`);
  if (length === 0 || length > batchBytes) malformed(`${what}: length ${length} is not 1..${batchBytes}`);
  if (offset + length > span.end) outOfRange(`${what}: ${offset}+${length} is beyond the compared range (${span.end} bytes)`);
  if (length % regionBytes !== 0 && offset + length !== span.end) malformed(`${what}: a short batch must end the compared range`);
}

export function decodeCompare(p: Buffer, span: ResyncSpan): CompareRequest {
  if (p.length < HEADER) malformed('compare: truncated header');
  const id = p.readUInt32LE(0);
  const offset = readU64(p, 4);
  const length = p.readUInt32LE(12);
  checkBatchRange(offset, length, span, 'compare');
  const regions = regionsIn(length, span.layout);
  const bm = bitmapBytes(regions);
  if (p.length < HEADER + bm) malformed('compare: truncated bitmap');
  const regionZero = p.subarray(HEADER, HEADER + bm);
  if (!paddingIsZero(regionZero, regions)) malformed('compare: bitmap padding is not zero');
  const digestBytes = (regions - countBits(regionZero, regions)) * DIGEST_BYTES;
  if (p.length !== HEADER + bm + digestBytes) malformed(`compare: ${p.length} bytes, expected ${HEADER + bm + digestBytes}`);
  return { id, offset, length, regionZero, digests: p.subarray(HEADER + bm) };
}

export function encodeDiff(r: DiffReply): Buffer[] {
  const parts = [header(r.id, r.offset, r.length), asBuffer(r.differs), asBuffer(r.targetZero)];
  for (const l of r.leaves) {
    if (!l) continue;
    parts.push(asBuffer(l.blockZero));
    if (l.digests) parts.push(l.digests);
  }
  return parts;
}

/** Checks a diff against the request it answers: same batch, consistent bits, exact length. */
export function decodeDiff(p: Buffer, req: CompareRequest, layout: ResyncLayout): DiffReply {
  if (p.length < HEADER) malformed('diff: truncated header');
  const id = p.readUInt32LE(0);
  if (id !== req.id || readU64(p, 4) !== req.offset || p.readUInt32LE(12) !== req.length)
    malformed(`diff ${id} does not answer compare ${req.id} (${req.offset}+${req.length})`);
  const regions = regionsIn(req.length, layout);
  const bm = bitmapBytes(regions);
  if (p.length < HEADER + 2 * bm) malformed('diff: truncated bitmaps');
  const differs = p.subarray(HEADER, HEADER + bm);
  const targetZero = p.subarray(HEADER + bm, HEADER + 2 * bm);
  if (!paddingIsZero(differs, regions) || !paddingIsZero(targetZero, regions)) malformed('diff: bitmap padding is not zero');
  const leaves: (RegionLeaves | undefined)[] = new Array(regions);
  let at = HEADER + 2 * bm;
  for (let i = 0; i < regions; i++) {
    const d = getBit(differs, i);
    const tz = getBit(targetZero, i);
    const sz = getBit(req.regionZero, i);
    if (tz && (!d || sz)) malformed(`diff: region ${i} is marked all zero on the target but ${d ? 'is zero on the source too' : 'does not differ'}`);
    if (!d || tz) continue;
    const regionLength = Math.min(layout.regionBytes, req.length - i * layout.regionBytes);
    const blocks = blocksIn(regionLength, layout);
    const zb = bitmapBytes(blocks);
    if (p.length < at + zb) malformed('diff: truncated block bitmap');
    const blockZero = p.subarray(at, at + zb);
    at += zb;
    if (!paddingIsZero(blockZero, blocks)) malformed('diff: block bitmap padding is not zero');
    const nonZero = blocks - countBits(blockZero, blocks);
    if (nonZero === 0) malformed(`diff: region ${i} has no non-zero block but is not marked all zero`);
    let digests: Buffer | undefined;
    if (!sz) {
      if (p.length < at + nonZero * DIGEST_BYTES) malformed('diff: truncated block digests');
      digests = p.subarray(at, at + nonZero * DIGEST_BYTES);
      at += nonZero * DIGEST_BYTES;
    }
    leaves[i] = { blockZero, digests };
  }
  if (at !== p.length) malformed(`diff: ${p.length - at} bytes after the last region`);
  return { id, offset: req.offset, length: req.length, differs, targetZero, leaves };
}

export function encodeWrite(offset: number, data: Buffer): Buffer[] {
  const h = Buffer.allocUnsafe(8);
  writeU64(h, offset, 0);
  return [h, data];
}

/** An extent a sink may write: whole blocks (the last one may be short at the end), one batch at most. */
function checkExtent(offset: number, length: number, span: ResyncSpan, what: string): void {
  const { blockBytes, batchBytes } = span.layout;
  if (offset % blockBytes !== 0) malformed(`${what}: offset ${offset} is not a block boundary`);
  if (length === 0 || length > batchBytes) malformed(`${what}: length ${length} is not 1..${batchBytes}`);
  if (offset + length > span.end) outOfRange(`${what}: ${offset}+${length} is beyond the compared range (${span.end} bytes)`);
  if (length % blockBytes !== 0 && offset + length !== span.end) malformed(`${what}: a short block must end the compared range`);
}

export function decodeWrite(p: Buffer, span: ResyncSpan): { offset: number; data: Buffer } {
  if (p.length < 8) malformed('write: truncated');
  const offset = readU64(p, 0);
  checkExtent(offset, p.length - 8, span, 'write');
  return { offset, data: p.subarray(8) };
}

export function encodeZero(offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(12);
  writeU64(b, offset, 0);
  b.writeUInt32LE(length, 8);
  return b;
}

export function decodeZero(p: Buffer, span: ResyncSpan): { offset: number; length: number } {
  if (p.length !== 12) malformed('zero: wrong length');
  const offset = readU64(p, 0);
  const length = p.readUInt32LE(8);
  checkExtent(offset, length, span, 'zero');
  return { offset, length };
}

export function encodeId(id: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(id >>> 0, 0);
  return b;
}

export function decodeId(p: Buffer, what: string): number {
  if (p.length !== 4) malformed(`${what}: wrong length`);
  return p.readUInt32LE(0);
}

export interface WaitRequest {
  id: number;
  lineage: LineageId;
  seq: number;
}

export function encodeWait(w: WaitRequest): Buffer {
  const b = Buffer.allocUnsafe(28);
  b.writeUInt32LE(w.id >>> 0, 0);
  writeU64(b, w.seq, 4);
  lineageToBytes(w.lineage, b, 12);
  return b;
}

export function decodeWait(p: Buffer): WaitRequest {
  if (p.length !== 28) malformed('wait: wrong length');
  return { id: p.readUInt32LE(0), seq: readU64(p, 4), lineage: lineageFromBytes(p, 12) };
}
