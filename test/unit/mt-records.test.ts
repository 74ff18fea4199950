import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { CorruptionError } from '../../src/replication/errors.js';
import { newLineage } from '../../src/replication/position.js';
import type { BlockDevice } from '../../src/replication/disk.js';
import { frameRecord, parseRecordHeader, RECORD_HEADER_BYTES, RecordType, crcOf } from '../../src/mt/frame.js';
import { decodeCommit, decodeState, decodeUndo, encodeCommit, encodeState, encodeUndo, type CommitRecord, type StateRecord } from '../../src/mt/records.js';
import { coverage, readBeforeImages, UNDO_PART_BYTES } from '../../src/mt/undo.js';
import { Mutex } from '../../src/mt/mutex.js';

function payloadOf(parts: Buffer[]): Buffer {
  const rec = Buffer.concat(parts);
  const h = parseRecordHeader(rec);
  assert.ok(h);
  assert.equal(h.payloadLength, rec.length - RECORD_HEADER_BYTES);
  assert.equal(h.payloadCrc, crcOf([rec.subarray(RECORD_HEADER_BYTES)]));
  return rec.subarray(RECORD_HEADER_BYTES);
}

test('record headers: type, length and checksums; damage and other versions are told apart', () => {
  const rec = Buffer.concat(frameRecord(RecordType.commit, [Buffer.from('abc'), Buffer.from('defg')]));
  assert.deepEqual(parseRecordHeader(rec), { type: RecordType.commit, payloadLength: 7, payloadCrc: crcOf([Buffer.from('abcdefg')]) });
  for (const at of [0, 4, 8, 12, 20]) {
    const bad = Buffer.from(rec);
    bad[at] = (bad[at] as number) ^ 1;
    assert.equal(parseRecordHeader(bad), undefined, `a flipped bit at ${at} is caught`);
  }
  assert.equal(parseRecordHeader(rec.subarray(0, RECORD_HEADER_BYTES - 1)), undefined);
  assert.equal(parseRecordHeader(Buffer.alloc(RECORD_HEADER_BYTES)), undefined);
  // A valid header of a newer version is not damage: it must not be cut off as a torn tail.
  const newer = Buffer.from(rec);
  newer[5] = 2;
  const fixed = Buffer.concat(frameRecord(RecordType.commit, [Buffer.from('abcdefg')]));
  fixed.copy(newer, 8, 8, 20);
  newer.writeUInt32LE(crc32(newer.subarray(0, 20)), 20);
  assert.throws(() => parseRecordHeader(newer), (e: unknown) => e instanceof CorruptionError && e.code === 'JOURNAL_VERSION');
});

test('commit, state and undo payloads round-trip', () => {
  const c: CommitRecord = {
    lineage: newLineage(),
    firstSeq: 10,
    lastSeq: 20,
    firstTime: 1_700_000_000_000,
    lastTime: 1_700_000_000_500,
    time: 1_700_000_001_000,
    batchFlags: 6,
    consistent: true,
    bookmarks: [
      { id: 'app-1', kind: 'app', time: 1_700_000_000_400, seq: 20 },
      { id: 'g'.repeat(64), kind: 'group', time: 1, seq: 20 },
    ],
  };
  assert.deepEqual(decodeCommit(payloadOf(encodeCommit(c))), c);

  const s: StateRecord = { lineage: newLineage(), lastSeq: 2 ** 40, time: 5, consistent: true, closed: true, bookmarks: [{ id: 'c', kind: 'crash', time: 3, seq: 4 }], retired: [newLineage(), newLineage()] };
  assert.deepEqual(decodeState(payloadOf(encodeState(s))), s);
  const empty: StateRecord = { lineage: undefined, lastSeq: 0, time: 0, consistent: false, closed: false, bookmarks: [], retired: [] };
  assert.deepEqual(decodeState(payloadOf(encodeState(empty))), empty);

  const data = Buffer.alloc(8192, 9);
  const u = { lineage: newLineage(), firstSeq: 1, lastSeq: 3, time: 7, extents: [ { offset: 0, length: 4096, zero: true }, { offset: 4096, length: 8192, zero: false } ] };
  const d = decodeUndo(payloadOf(encodeUndo(u, [data])));
  assert.deepEqual({ ...d, data: undefined }, { ...u, data: undefined });
  assert.deepEqual(d.data, [undefined, data]);
  assert.throws(() => decodeUndo(payloadOf(encodeUndo(u, [data.subarray(0, 100)]))), CorruptionError);
});

test('coverage merges ranges and notices overlaps', () => {
  assert.deepEqual(coverage([{ offset: 8192, length: 4096 }, { offset: 0, length: 4096 }, { offset: 4096, length: 4096 }]), { ranges: [[0, 12288]], overlapping: false });
  assert.deepEqual(coverage([{ offset: 0, length: 8192 }, { offset: 4096, length: 8192 }, { offset: 65536, length: 512 }]), { ranges: [[0, 12288], [65536, 66048]], overlapping: true });
});

test('before-images: zero runs carry no bytes, parts stay within their size', async () => {
  const size = 3 * UNDO_PART_BYTES;
  const written = new Map<number, Buffer>([[UNDO_PART_BYTES - 4096, Buffer.alloc(4096 + 65536, 1)]]);
  // A sparse disk: zero everywhere except the range above.
  const disk: BlockDevice = {
    size,
    read: async () => Buffer.alloc(0),
    readInto: async (into, offset) => {
      into.fill(0);
      for (const [at, b] of written) {
        const from = Math.max(at, offset);
        const to = Math.min(at + b.length, offset + into.length);
        if (from < to) b.copy(into, from - offset, from - at, to - at);
      }
    },
    write: async () => undefined,
    writeZeroes: async () => undefined,
    flush: async () => undefined,
    close: async () => undefined,
  };
  const parts = [];
  for await (const p of readBeforeImages(disk, [[0, 2 * UNDO_PART_BYTES + 4096]])) parts.push(p);
  assert.equal(parts.length, 3);
  const all = parts.flatMap((p) => p.extents);
  assert.deepEqual(
    all.filter((e) => !e.zero),
    [
      // Zeroes are found per aligned 64 KiB grain; the part boundary splits the run.
      { offset: UNDO_PART_BYTES - 65536, length: 65536, zero: false },
      { offset: UNDO_PART_BYTES, length: 65536, zero: false },
    ],
  );
  assert.equal(all.reduce((n, e) => n + e.length, 0), 2 * UNDO_PART_BYTES + 4096);
  assert.equal(parts.flatMap((p) => p.data).reduce((n, b) => n + b.length, 0), 2 * 65536);
});

test('the mutex runs one operation at a time, in call order, whatever their outcome', async () => {
  const m = new Mutex();
  const log: string[] = [];
  let active = 0;
  const op = (name: string, fail: boolean) =>
    m.run(async () => {
      assert.equal(active++, 0);
      log.push(`start ${name}`);
      await Promise.resolve();
      log.push(`end ${name}`);
      active--;
      if (fail) throw new Error(name);
      return name;
    });
  const results = await Promise.allSettled([op('a', false), op('b', true), op('c', false)]);
  assert.deepEqual(log, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
});
