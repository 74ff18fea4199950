import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BATCH_LIMITS, BatchFlags, decodeBatch, encodeBatch, peekBatchHeader, type Batch } from '../../src/replication/batch.js';
import { BatchFormatError } from '../../src/replication/errors.js';
import { newLineage } from '../../src/replication/position.js';
import { Prng } from '../../src/lab/prng.js';
import * as zlib from 'node:zlib';

function sample(): Batch {
  const prng = new Prng(7);
  return {
    diskId: 'disk0',
    lineage: newLineage(),
    firstSeq: 10,
    lastSeq: 13,
    firstTime: 1_700_000_000_000,
    lastTime: 1_700_000_000_050,
    flags: BatchFlags.lineageStart | BatchFlags.resync,
    extents: [
      { offset: 0, length: 4096, data: prng.fill(Buffer.alloc(4096)) },
      { offset: 1 << 20, length: 1 << 20 },
      { offset: 512, length: 512, data: prng.fill(Buffer.alloc(512)) },
    ],
    bookmarks: [{ id: 'bm-1', kind: 'app', time: 1_700_000_000_050, seq: 13 }],
  };
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BatchFormatError, `expected BatchFormatError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a BatchFormatError');
}

test('a batch round-trips through encode and decode', () => {
  const b = sample();
  const buf = encodeBatch(b);
  const d = decodeBatch(buf);
  assert.deepEqual({ ...d, extents: d.extents.map((e) => (e.data ? { ...e, data: Buffer.from(e.data) } : e)) }, b);
  assert.deepEqual(peekBatchHeader(buf), { diskId: 'disk0', lineage: b.lineage, firstSeq: 10, lastSeq: 13, flags: b.flags, totalLength: buf.length });
});

test('every single bit flip is rejected', () => {
  const buf = encodeBatch({ ...sample(), extents: [{ offset: 0, length: 512, data: Buffer.alloc(512, 1) }] });
  let rejected = 0;
  for (let byte = 0; byte < buf.length; byte++) {
    for (let bit = 0; bit < 8; bit++) {
      const bad = Buffer.from(buf);
      bad[byte]! ^= 1 << bit;
      assert.throws(() => decodeBatch(bad), BatchFormatError);
      rejected++;
    }
  }
  assert.equal(rejected, buf.length * 8);
});

test('truncated batches are rejected at every length', () => {
  const buf = encodeBatch(sample());
  for (let n = 0; n < buf.length; n += 97) assert.throws(() => decodeBatch(buf.subarray(0, n)), BatchFormatError);
});

test('the parser checks lengths before trusting them', () => {
  const buf = encodeBatch(sample());
  // A huge extent count with a recomputed checksum must fail on limits, not allocate.
  const { crc32 } = zlib;
  const forge = (mutate: (b: Buffer) => void) => {
    const b = Buffer.from(buf);
    mutate(b);
    b.writeUInt32LE(crc32(b.subarray(0, b.length - 4)), b.length - 4);
    return b;
  };
  assert.equal(code(() => decodeBatch(forge((b) => b.writeUInt32LE(0xffffffff, 12)))), 'BATCH_LIMIT');
  assert.equal(code(() => decodeBatch(forge((b) => b.writeUInt32LE(2, 12)))), 'BATCH_LENGTH');
  assert.equal(code(() => decodeBatch(forge((b) => b.writeUInt16LE(9, 4)))), 'BATCH_VERSION');
  assert.equal(code(() => decodeBatch(forge((b) => b.writeUInt16LE(0x100, 6)))), 'BATCH_FLAGS');
  assert.equal(code(() => decodeBatch(forge((b) => b.writeBigUInt64LE(2n ** 60n, 40)))), 'BATCH_RANGE');
  assert.equal(code(() => decodeBatch(forge((b) => b.writeUInt16LE(0, 20)))), 'BATCH_DISK_ID');
  // Extent table starts after the 80-byte header and the 5-byte disk id.
  assert.equal(code(() => decodeBatch(forge((b) => b.writeBigUInt64LE(100n, 85)))), 'BATCH_EXTENT_UNALIGNED');
});

test('encode refuses what decode would refuse', () => {
  const b = sample();
  assert.equal(code(() => encodeBatch({ ...b, extents: [{ offset: 100, length: 512 }] })), 'BATCH_EXTENT_UNALIGNED');
  assert.equal(code(() => encodeBatch({ ...b, extents: [{ offset: 0, length: 1000 }] })), 'BATCH_EXTENT_UNALIGNED');
  assert.equal(code(() => encodeBatch({ ...b, extents: [{ offset: 0, length: 512, data: Buffer.alloc(10) }] })), 'BATCH_EXTENT_DATA');
  assert.equal(code(() => encodeBatch({ ...b, diskId: '../etc' })), 'BATCH_DISK_ID');
  assert.equal(code(() => encodeBatch({ ...b, lastSeq: 5 })), 'BATCH_SEQ');
  assert.equal(code(() => encodeBatch({ ...b, bookmarks: [{ id: 'x', kind: 'app', time: 1, seq: 99 }] })), 'BATCH_BOOKMARK');
  assert.equal(code(() => encodeBatch({ ...b, bookmarks: [{ id: 'x'.repeat(65), kind: 'app', time: 1, seq: 13 }] })), 'BATCH_BOOKMARK');
  assert.equal(code(() => encodeBatch({ ...b, extents: [{ offset: 0, length: BATCH_LIMITS.maxExtentLength + 512 }] })), 'BATCH_LIMIT');
});

