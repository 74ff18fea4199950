import { bitmapBytes, getBit, setBit } from './bits.js';
import { DIGEST_BYTES, isZero, summariseChildren, type Digester } from './hashing.js';
import { levelSizes, nodesIn, regionsIn, type ResyncLayout } from './layout.js';
import type { CompareRequest, DiffReply, NodeChildren, RefineReply, RefineRequest } from './messages.js';
import type { ResyncExtent } from './sink.js';

/**
 * The comparison rules of both sides for one batch. Regions are compared by digest unless one
 * side is all zero (then no digest is needed); a differing region is refined level by level
 * (sub-regions, then blocks), each level compared by digest where both sides have data, and an
 * all-zero node is recognised by comparison with zeroes and never hashed.
 */

/** Target side: which regions of the batch differ, with the children the source needs to refine them. */
export function answerCompare(req: CompareRequest, target: Buffer, layout: ResyncLayout, digester: Digester): DiffReply {
  const regions = regionsIn(req.length, layout);
  const childBytes = levelSizes(layout)[1]!;
  const differs = new Uint8Array(bitmapBytes(regions));
  const targetZero = new Uint8Array(bitmapBytes(regions));
  const children: (NodeChildren | undefined)[] = new Array(regions);
  const mine = Buffer.allocUnsafe(DIGEST_BYTES);
  let k = 0;
  for (let i = 0; i < regions; i++) {
    const region = target.subarray(i * layout.regionBytes, Math.min(req.length, (i + 1) * layout.regionBytes));
    const sourceZero = getBit(req.regionZero, i);
    const zero = isZero(region);
    if (sourceZero && zero) continue;
    const theirs = sourceZero ? -1 : k++ * DIGEST_BYTES;
    if (zero) {
      setBit(differs, i);
      setBit(targetZero, i);
      continue;
    }
    if (theirs >= 0) {
      digester.digestInto(region, mine, 0);
      if (mine.compare(req.digests, theirs, theirs + DIGEST_BYTES) === 0) continue;
    }
    setBit(differs, i);
    children[i] = summariseChildren(region, childBytes, sourceZero ? undefined : digester);
  }
  return { id: req.id, offset: req.offset, length: req.length, differs, targetZero, children };
}

/** Target side: the children of the nodes the source asks to expand. */
export function answerRefine(req: RefineRequest, target: Buffer, layout: ResyncLayout, digester: Digester): RefineReply {
  const sizes = levelSizes(layout);
  const size = sizes[req.level]!;
  const childBytes = sizes[req.level + 1]!;
  const nodes = nodesIn(req.length, size);
  const children: (NodeChildren | undefined)[] = new Array(nodes);
  for (let n = 0; n < nodes; n++) {
    if (!getBit(req.expand, n)) continue;
    const node = target.subarray(n * size, Math.min(req.length, (n + 1) * size));
    children[n] = summariseChildren(node, childBytes, getBit(req.sourceZero, n) ? undefined : digester);
  }
  return { id: req.id, offset: req.offset, length: req.length, level: req.level, children };
}

/** Whether a message that carried `children` is followed by a refine of the next level. */
export function refineFollows(children: readonly (NodeChildren | undefined)[], level: number, layout: ResyncLayout): boolean {
  return level + 1 < levelSizes(layout).length - 1 && children.some((c) => c !== undefined);
}

export interface BatchDifferences {
  /** In offset order; adjacent blocks of the same kind are merged (never across a batch). */
  extents: ResyncExtent[];
  regionsDifferent: number;
  blocksDifferent: number;
  bytesChanged: number;
}

// What a block of the batch needs, decided as the refinement reaches it.
const SAME = 0;
const DATA = 1;
const ZERO = 2;

/**
 * Source side of one batch: takes the target's diff, then its answers to each refine, and
 * decides block by block what the target needs. One object per batch; the per-block decisions
 * live in one small array rather than in an object per block.
 */
export class SourceBatch {
  private readonly sizes: number[];
  private readonly blockBytes: number;
  private readonly verdict: Uint8Array;
  private regionsDifferent = 0;
  private readonly mine = Buffer.allocUnsafe(DIGEST_BYTES);

  constructor(
    private readonly source: Buffer,
    private readonly req: CompareRequest,
    private readonly layout: ResyncLayout,
    private readonly digester: Digester,
  ) {
    this.sizes = levelSizes(layout);
    this.blockBytes = layout.blockBytes;
    this.verdict = new Uint8Array(nodesIn(source.length, this.blockBytes));
  }

  /** Takes the diff; returns the first refine to send, if the protocol calls for one. */
  onDiff(reply: DiffReply): RefineRequest | undefined {
    const { regionBytes } = this.layout;
    const next = this.round(1);
    for (let i = 0, regions = regionsIn(this.source.length, this.layout); i < regions; i++) {
      if (!getBit(reply.differs, i)) continue;
      this.regionsDifferent++;
      const start = i * regionBytes;
      const end = Math.min(this.source.length, start + regionBytes);
      if (getBit(reply.targetZero, i)) this.markNonZero(start, end);
      else this.settleChildren(0, start, end, reply.children[i]!, getBit(this.req.regionZero, i), next);
    }
    return refineFollows(reply.children, 0, this.layout) ? next : undefined;
  }

  /** Takes the answer to a refine; returns the next refine to send, if any. */
  onRefined(request: RefineRequest, reply: RefineReply): RefineRequest | undefined {
    const size = this.sizes[request.level]!;
    const next = this.round(request.level + 1);
    for (let n = 0, nodes = reply.children.length; n < nodes; n++) {
      const children = reply.children[n];
      if (!children) continue;
      const start = n * size;
      this.settleChildren(request.level, start, Math.min(this.source.length, start + size), children, getBit(request.sourceZero, n), next);
    }
    return refineFollows(reply.children, request.level, this.layout) ? next : undefined;
  }

  /** The differing blocks as extents, once no refine is left to send. */
  result(): BatchDifferences {
    const extents: ResyncExtent[] = [];
    const { verdict, blockBytes, source, req } = this;
    let blocksDifferent = 0;
    let bytesChanged = 0;
    for (let j = 0; j < verdict.length; ) {
      const kind = verdict[j]!;
      if (kind === SAME) {
        j++;
        continue;
      }
      const from = j * blockBytes;
      while (j < verdict.length && verdict[j] === kind) j++;
      const to = Math.min(source.length, j * blockBytes);
      blocksDifferent += j - from / blockBytes;
      bytesChanged += to - from;
      extents.push(kind === ZERO ? { offset: req.offset + from, length: to - from } : { offset: req.offset + from, length: to - from, data: source.subarray(from, to) });
    }
    return { extents, regionsDifferent: this.regionsDifferent, blocksDifferent, bytesChanged };
  }

  /** An empty refine of `level` (meaningful only while that level is above blocks). */
  private round(level: number): RefineRequest {
    const size = this.sizes[Math.min(level, this.sizes.length - 1)]!;
    const bm = bitmapBytes(nodesIn(this.source.length, size));
    return { id: this.req.id, offset: this.req.offset, length: this.req.length, level, expand: new Uint8Array(bm), sourceZero: new Uint8Array(bm) };
  }

  /**
   * Settles the children of one differing node [start, end) at `level` from what the target said
   * of them: a child equal by zeroes or digest is done, a block that differs gets its verdict, a
   * sub-region that differs is put in the next refine.
   */
  private settleChildren(level: number, start: number, end: number, children: NodeChildren, sourceZero: boolean, next: RefineRequest): void {
    const childBytes = this.sizes[level + 1]!;
    const leaf = level + 1 === this.sizes.length - 1;
    const { digests } = children;
    let k = 0; // the next target digest
    for (let c = 0, count = nodesIn(end - start, childBytes); c < count; c++) {
      const from = start + c * childBytes;
      const to = Math.min(end, from + childBytes);
      const child = this.source.subarray(from, to);
      const zero = sourceZero || isZero(child);
      if (getBit(children.zero, c)) {
        if (!zero) this.markNonZero(from, to);
        continue;
      }
      // Every non-zero target child has a digest here unless the source node is all zero.
      const theirs = digests ? k++ * DIGEST_BYTES : -1;
      if (!zero) {
        this.digester.digestInto(child, this.mine, 0);
        if (this.mine.compare(digests!, theirs, theirs + DIGEST_BYTES) === 0) continue;
      }
      // Differs: data on one side at least. Over target data, a zero child's blocks are sorted out below.
      if (leaf) {
        this.verdict[from / this.blockBytes] = zero ? ZERO : DATA;
      } else {
        const n = from / childBytes;
        setBit(next.expand, n);
        if (zero) setBit(next.sourceZero, n);
      }
    }
  }

  /** The target is all zero over [start, end): every source block that is not zero differs. */
  private markNonZero(start: number, end: number): void {
    for (let from = start; from < end; from += this.blockBytes) {
      if (!isZero(this.source.subarray(from, Math.min(end, from + this.blockBytes)))) this.verdict[from / this.blockBytes] = DATA;
    }
  }
}
