import { ProtocolError } from '../errors.js';
import { isDiskId, isLineage, lineageFromBytes, lineageToBytes, type LineageId } from '../position.js';
import { jsonPayload, parseJson } from '../transport.js';
import { bitmapBytes, countBits, getBit, paddingIsZero } from './bits.js';
import { ResyncError } from './errors.js';
import { DIGEST_BYTES, hashKeyBytes, isHashSuite, type HashSuite } from './hashing.js';
import { checkLayout, levelSizes, nodesIn, regionsIn, type ResyncLayout } from './layout.js';

/**
 * The resync protocol, over one connection of the data transport (`transport.ts` framing, TLS,
 * token hello). The source side (which has the source disk) drives; the target side answers.
 *
 *   32 open     source → target  JSON {diskId, sourceSize, blockBytes, regionBytes, subRegionBytes, batchBytes, hash, key, allowLargerTarget}
 *   33 ready    target → source  JSON {targetSize}   (or the transport's `error` frame, e.g. RESYNC_SIZE_MISMATCH)
 *   34 compare  source → target  id u32 | offset u64 | length u32 | zero-region bitmap | digest of each non-zero region
 *   35 diff     target → source  id u32 | offset u64 | length u32 | differs bitmap | target-zero bitmap |
 *                                for each differing region whose target is not all zero: its children (see below)
 *   36 write    source → target  offset u64 | data          (the standalone sink)
 *   37 zero     source → target  offset u64 | length u32
 *   38 flush    source → target  id u32: make every write so far durable
 *   39 flushed  target → source  id u32
 *   40 wait     source → target  id u32 | seq u64 | lineage (16 bytes): answer once the target's
 *                                replication stream has applied `seq` of `lineage` (the capture sink)
 *   41 reached  target → source  id u32
 *   42 refine   source → target  id u32 | offset u64 | length u32 (the compare's) | level u8 | expand bitmap |
 *                                source-zero bitmap, both over the batch's nodes of that level
 *   43 refined  target → source  id u32 | offset u64 | length u32 | level u8 | for each node to expand: its children
 *
 * The children of a node (a region, or a sub-region of the level asked for) are the nodes of the
 * next level inside it, sub-regions or blocks: a bitmap of those that are all zero on the target,
 * then, unless the source node is all zero, the digest of each non-zero target child.
 *
 * Refinement (layouts with sub-regions): after a diff or refined message that carried children of
 * any node, when the next level is not blocks yet, the source sends exactly one refine of that
 * batch for the next level (the sub-regions it could not settle by digest, possibly none), and the
 * target keeps the batch's bytes until then: what it compares is what it read for the compare.
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
  refine: 42,
  refined: 43,
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

/** What the target says of the children of one node (see the protocol above). */
export interface NodeChildren {
  /** Bit j: child j of the node is all zero on the target. */
  zero: Uint8Array;
  /** Digests of the target's non-zero children, in order; absent when the source node is all zero. */
  digests: Buffer | undefined;
}

export interface DiffReply {
  id: number;
  offset: number;
  length: number;
  differs: Uint8Array;
  /** Bit i: region i differs and is all zero on the target (no children follow). */
  targetZero: Uint8Array;
  /** Per region: present for differing regions whose target is not all zero. */
  children: (NodeChildren | undefined)[];
}

/** The sub-regions of one level of a batch that the source could not settle by digest. */
export interface RefineRequest {
  /** The compare's id, offset and length. */
  id: number;
  offset: number;
  length: number;
  /** 1 for the first sub-region size; never the block level. */
  level: number;
  /** Bit n: node n of the batch at this level is to be expanded into its children. */
  expand: Uint8Array;
  /** Bit n: node n is all zero on the source (its children need no digests); only for expanded nodes. */
  sourceZero: Uint8Array;
}

export interface RefineReply {
  id: number;
  offset: number;
  length: number;
  level: number;
  /** Per node of the level: present for the expanded ones. */
  children: (NodeChildren | undefined)[];
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
    subRegionBytes: o.layout.subRegionBytes ?? [],
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
    const subRegionBytes = v.subRegionBytes ?? [];
    if (!Array.isArray(subRegionBytes)) malformed('open: subRegionBytes is not a list');
    layout = checkLayout({ blockBytes: v.blockBytes as number, regionBytes: v.regionBytes as number, subRegionBytes: subRegionBytes as number[], batchBytes: v.batchBytes as number });
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

function pushChildren(parts: Buffer[], children: readonly (NodeChildren | undefined)[]): void {
  for (const c of children) {
    if (!c) continue;
    parts.push(asBuffer(c.zero));
    if (c.digests) parts.push(c.digests);
  }
}

export function encodeDiff(r: DiffReply): Buffer[] {
  const parts = [header(r.id, r.offset, r.length), asBuffer(r.differs), asBuffer(r.targetZero)];
  pushChildren(parts, r.children);
  return parts;
}

/**
 * Reads the children of one node at `at` (a non-zero node of the target: not every child may be
 * zero); returns them and where the next node's start.
 */
function readChildren(p: Buffer, at: number, nodeLength: number, childBytes: number, withDigests: boolean, what: string): { children: NodeChildren; at: number } {
  const count = nodesIn(nodeLength, childBytes);
  const zb = bitmapBytes(count);
  if (p.length < at + zb) malformed(`${what}: truncated child bitmap`);
  const zero = p.subarray(at, at + zb);
  at += zb;
  if (!paddingIsZero(zero, count)) malformed(`${what}: child bitmap padding is not zero`);
  const nonZero = count - countBits(zero, count);
  if (nonZero === 0) malformed(`${what}: a node has no non-zero child but is not marked all zero`);
  let digests: Buffer | undefined;
  if (withDigests) {
    if (p.length < at + nonZero * DIGEST_BYTES) malformed(`${what}: truncated child digests`);
    digests = p.subarray(at, at + nonZero * DIGEST_BYTES);
    at += nonZero * DIGEST_BYTES;
  }
  return { children: { zero, digests }, at };
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
  const children: (NodeChildren | undefined)[] = new Array(regions);
  const childBytes = levelSizes(layout)[1]!;
  let at = HEADER + 2 * bm;
  for (let i = 0; i < regions; i++) {
    const d = getBit(differs, i);
    const tz = getBit(targetZero, i);
    const sz = getBit(req.regionZero, i);
    if (tz && (!d || sz)) malformed(`diff: region ${i} is marked all zero on the target but ${d ? 'is zero on the source too' : 'does not differ'}`);
    if (!d || tz) continue;
    const regionLength = Math.min(layout.regionBytes, req.length - i * layout.regionBytes);
    const r = readChildren(p, at, regionLength, childBytes, !sz, `diff: region ${i}`);
    children[i] = r.children;
    at = r.at;
  }
  if (at !== p.length) malformed(`diff: ${p.length - at} bytes after the last region`);
  return { id, offset: req.offset, length: req.length, differs, targetZero, children };
}

const REFINE_HEADER = HEADER + 1;

function checkLevel(level: number, layout: ResyncLayout, what: string): number {
  const sizes = levelSizes(layout);
  if (level < 1 || level > sizes.length - 2) malformed(`${what}: level ${level} is not a sub-region level of this session (1..${sizes.length - 2})`);
  return sizes[level]!;
}

export function encodeRefine(r: RefineRequest): Buffer[] {
  const h = header(r.id, r.offset, r.length);
  return [h, Buffer.from([r.level]), asBuffer(r.expand), asBuffer(r.sourceZero)];
}

/** Checks a refine on its own; the target checks that it is the one it waits for. */
export function decodeRefine(p: Buffer, span: ResyncSpan): RefineRequest {
  if (p.length < REFINE_HEADER) malformed('refine: truncated header');
  const id = p.readUInt32LE(0);
  const offset = readU64(p, 4);
  const length = p.readUInt32LE(12);
  checkBatchRange(offset, length, span, 'refine');
  const level = p.readUInt8(16);
  const nodes = nodesIn(length, checkLevel(level, span.layout, 'refine'));
  const bm = bitmapBytes(nodes);
  if (p.length !== REFINE_HEADER + 2 * bm) malformed(`refine: ${p.length} bytes, expected ${REFINE_HEADER + 2 * bm}`);
  const expand = p.subarray(REFINE_HEADER, REFINE_HEADER + bm);
  const sourceZero = p.subarray(REFINE_HEADER + bm);
  if (!paddingIsZero(expand, nodes) || !paddingIsZero(sourceZero, nodes)) malformed('refine: bitmap padding is not zero');
  for (let i = 0; i < bm; i++) if ((sourceZero[i]! & ~expand[i]!) !== 0) malformed('refine: a node is marked zero on the source but not to be expanded');
  return { id, offset, length, level, expand, sourceZero };
}

export function encodeRefined(r: RefineReply): Buffer[] {
  const parts = [header(r.id, r.offset, r.length), Buffer.from([r.level])];
  pushChildren(parts, r.children);
  return parts;
}

/** Checks a refined message against the refine it answers: same batch and level, exact length. */
export function decodeRefined(p: Buffer, req: RefineRequest, layout: ResyncLayout): RefineReply {
  if (p.length < REFINE_HEADER) malformed('refined: truncated header');
  const id = p.readUInt32LE(0);
  if (id !== req.id || readU64(p, 4) !== req.offset || p.readUInt32LE(12) !== req.length || p.readUInt8(16) !== req.level)
    malformed(`refined ${id} does not answer refine ${req.id} (${req.offset}+${req.length}, level ${req.level})`);
  const size = checkLevel(req.level, layout, 'refined');
  const childBytes = levelSizes(layout)[req.level + 1]!;
  const nodes = nodesIn(req.length, size);
  const children: (NodeChildren | undefined)[] = new Array(nodes);
  let at = REFINE_HEADER;
  for (let n = 0; n < nodes; n++) {
    if (!getBit(req.expand, n)) continue;
    const r = readChildren(p, at, Math.min(size, req.length - n * size), childBytes, !getBit(req.sourceZero, n), `refined: node ${n}`);
    children[n] = r.children;
    at = r.at;
  }
  if (at !== p.length) malformed(`refined: ${p.length - at} bytes after the last node`);
  return { id, offset: req.offset, length: req.length, level: req.level, children };
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
