import { isAllZero } from '../replication/disk.js';
import { CorruptionError } from '../replication/errors.js';
import { crcOf, parseRecordHeader, RECORD_HEADER_BYTES, RecordType, type RecordHeader } from './frame.js';
import { JournalIndex } from './journal-index.js';
import { decodeCommit, decodeState } from './records.js';
import { segmentName, type RecordRef, type SegmentFile, type SegmentStore } from './segments.js';

/**
 * Reads the journal from its oldest segment to its newest and rebuilds the index. Headers and
 * state/commit payloads are verified here; undo payloads are verified where they are used
 * (restore, rollback), except those of an unfinished batch at the tail, which are verified now.
 *
 * Only the newest segment may end badly: a record cut short, or one whose bytes did not all reach
 * the disk, at its very end, is a torn write. Anything else that fails a check is corruption and
 * stops the scan — a damaged record is never skipped.
 */
export interface ScanTail {
  segment: number;
  /** Undo records after the last commit, all intact: the batch being applied when the writer stopped. */
  uncommitted: RecordRef[];
  /** Where the committed journal ends: the newest segment is cut back to here. */
  end: number;
  /** Bytes after `end` that are unusable (a torn write, or undo records that never became durable). */
  tornBytes: number;
}

export interface ScanResult {
  index: JournalIndex;
  tail: ScanTail;
}

/** State and commit payloads are small; a larger length is damage, not data. */
const MAX_META_PAYLOAD = 16 * 1024 * 1024;
const WINDOW = 256 * 1024;

/** Reads a segment through a window, so runs of small records cost few reads. */
class SegmentReader {
  private buf: Buffer = Buffer.alloc(0);
  private at = 0;

  constructor(
    private readonly store: SegmentStore,
    readonly seg: Readonly<SegmentFile>,
  ) {}

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset >= this.at && offset + length <= this.at + this.buf.length) return this.buf.subarray(offset - this.at, offset - this.at + length);
    if (length > WINDOW) return this.store.read(this.seg.index, offset, length);
    this.buf = await this.store.read(this.seg.index, offset, Math.min(WINDOW, this.seg.size - offset));
    this.at = offset;
    return this.buf.subarray(0, length);
  }

  async zeroFrom(offset: number): Promise<boolean> {
    for (let at = offset; at < this.seg.size; at += WINDOW) {
      if (!isAllZero(await this.read(at, Math.min(WINDOW, this.seg.size - at)))) return false;
    }
    return true;
  }
}

export async function scanJournal(store: SegmentStore): Promise<ScanResult> {
  const index = new JournalIndex();
  const segs = store.list();
  if (segs.length === 0) throw new CorruptionError('JOURNAL_EMPTY', `journal ${store.dir} has no segments`);
  let tail: ScanTail | undefined;
  for (const [i, seg] of segs.entries()) tail = await scanSegment(new SegmentReader(store, seg), index, i === segs.length - 1);
  return { index, tail: tail as ScanTail };
}

async function scanSegment(r: SegmentReader, index: JournalIndex, newest: boolean): Promise<ScanTail> {
  const { seg } = r;
  const where = (at: number) => `journal segment ${segmentName(seg.index)} at offset ${at}`;
  let pending: RecordRef[] = [];
  let off = 0;
  while (off < seg.size) {
    const head = seg.size - off >= RECORD_HEADER_BYTES ? parseRecordHeader(await r.read(off, RECORD_HEADER_BYTES)) : undefined;
    const end = head ? off + RECORD_HEADER_BYTES + head.payloadLength : Infinity;
    let payload: Buffer | undefined;
    if (head && end <= seg.size && head.type !== RecordType.undo) {
      if (head.payloadLength > MAX_META_PAYLOAD) throw new CorruptionError('JOURNAL_CORRUPT', `${where(off)}: record length ${head.payloadLength} is implausible`);
      payload = await r.read(off + RECORD_HEADER_BYTES, head.payloadLength);
      if (crcOf([payload]) !== head.payloadCrc) payload = undefined;
    }
    if (!head || end > seg.size || (head.type !== RecordType.undo && !payload)) {
      if (newest && off > 0 && (await isTorn(r, off, head, end))) return finishTail(r, pending, off);
      throw new CorruptionError('JOURNAL_CORRUPT', `${where(off)}: ${head ? 'record checksum mismatch' : 'not a valid record header'}`);
    }
    if (off === 0 && head.type !== RecordType.state) throw new CorruptionError('JOURNAL_CORRUPT', `${where(0)}: segment does not start with a checkpoint`);
    if (head.type === RecordType.undo) {
      pending.push({ segment: seg.index, offset: off, length: end - off });
    } else if (head.type === RecordType.commit) {
      index.addCommit(seg.index, pending[0]?.offset ?? off, pending, decodeCommit(payload as Buffer));
      pending = [];
    } else if (head.type === RecordType.state) {
      if (pending.length > 0) throw new CorruptionError('JOURNAL_CORRUPT', `${where(off)}: state record inside an unfinished batch`);
      const state = decodeState(payload as Buffer);
      if (off === 0) index.addSegment(seg.index, state);
      else index.setState(state);
    } else {
      throw new CorruptionError('JOURNAL_CORRUPT', `${where(off)}: unknown record type ${head.type}`);
    }
    off = end;
  }
  if (!newest && pending.length > 0) throw new CorruptionError('JOURNAL_CORRUPT', `${where(off)}: segment ends inside a batch`);
  return finishTail(r, pending, seg.size);
}

/** A bad record is torn only if it is the last thing in the newest segment. */
async function isTorn(r: SegmentReader, off: number, head: RecordHeader | undefined, end: number): Promise<boolean> {
  if (!head) return r.seg.size - off < RECORD_HEADER_BYTES || (await r.zeroFrom(off));
  return end >= r.seg.size;
}

/**
 * Undo records after the last commit are used to roll the target back only if all are intact:
 * the target is written only after they were all made durable, so if one is damaged the target
 * was never touched and they are simply cut off.
 */
async function finishTail(r: SegmentReader, pending: RecordRef[], tornAt: number): Promise<ScanTail> {
  let intact = true;
  for (const ref of pending) {
    const rec = await r.read(ref.offset, ref.length);
    const head = parseRecordHeader(rec);
    if (!head || crcOf([rec.subarray(RECORD_HEADER_BYTES)]) !== head.payloadCrc) intact = false;
  }
  const end = pending[0]?.offset ?? tornAt;
  return { segment: r.seg.index, uncommitted: intact ? pending : [], end, tornBytes: r.seg.size - (intact ? tornAt : end) };
}
