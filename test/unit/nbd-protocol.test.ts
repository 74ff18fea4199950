import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import {
  Cmd,
  CmdFlag,
  Errno,
  Info,
  StreamReader,
  decodeInfoRequest,
  decodeRequest,
  encodeInfoRequest,
  encodeRequest,
  encodeSimpleReply,
  errnoName,
} from '../../src/agent/nbd/protocol.js';
import { ProtocolError } from '../../src/replication/errors.js';

test('request header round-trips, including offsets above 2^32', () => {
  const handle = Buffer.from('0102030405060708', 'hex');
  const req = { flags: CmdFlag.FUA, type: Cmd.WRITE, handle, offset: 2 ** 40 + 512, length: 65536 };
  const wire = encodeRequest(req);
  assert.equal(wire.length, 28);
  assert.deepEqual(decodeRequest(wire), req);
});

test('a request with a wrong magic is a protocol error', () => {
  const wire = encodeRequest({ flags: 0, type: Cmd.READ, handle: Buffer.alloc(8), offset: 0, length: 512 });
  wire.writeUInt32BE(0xdeadbeef, 0);
  assert.throws(() => decodeRequest(wire), (err: unknown) => err instanceof ProtocolError && err.code === 'NBD_BAD_MAGIC');
});

test('simple reply carries the error and echoes the handle', () => {
  const reply = encodeSimpleReply(Buffer.from('aabbccddeeff0011', 'hex'), Errno.ENOSPC);
  assert.equal(reply.toString('hex'), '67446698' + '0000001c' + 'aabbccddeeff0011');
  assert.equal(errnoName(Errno.ENOSPC), 'ENOSPC');
  assert.equal(errnoName(4242), 'NBD_ERRNO_4242');
});

test('info request decodes its name and rejects inconsistent lengths', () => {
  const data = encodeInfoRequest('disk-é', [Info.BLOCK_SIZE, Info.NAME]);
  assert.equal(decodeInfoRequest(data), 'disk-é');
  assert.equal(decodeInfoRequest(data.subarray(0, data.length - 1)), undefined);
  assert.equal(decodeInfoRequest(Buffer.concat([data, Buffer.alloc(1)])), undefined);
  const lying = Buffer.from(data);
  lying.writeUInt32BE(0xffffffff, 0);
  assert.equal(decodeInfoRequest(lying), undefined);
  assert.equal(decodeInfoRequest(Buffer.alloc(3)), undefined);
});

test('stream reader assembles exact lengths across chunks and returns owned copies', async () => {
  const stream = new PassThrough();
  const reader = new StreamReader(stream);
  const source = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
  const first = reader.next(10);
  stream.write(source.subarray(0, 3));
  stream.write(source.subarray(3, 40));
  const a = await first;
  assert.deepEqual(a, source.subarray(0, 10));
  stream.write(source.subarray(40));
  const b = await reader.read(90);
  assert.deepEqual(b, source.subarray(10));
  b.fill(0); // mutating what we got must not affect anything else
  assert.deepEqual(a, source.subarray(0, 10));
  stream.end();
  assert.equal(await reader.next(1), null);
});

test('stream reader: end inside a message is an error, end between messages is null', async () => {
  const stream = new PassThrough();
  const reader = new StreamReader(stream);
  const pending = reader.next(8);
  stream.end(Buffer.alloc(5));
  await assert.rejects(pending, (err: unknown) => err instanceof ProtocolError && err.code === 'NBD_TRUNCATED');

  const other = new PassThrough();
  const reader2 = new StreamReader(other);
  const closed = reader2.read(4);
  other.end();
  await assert.rejects(closed, (err: unknown) => err instanceof ProtocolError && err.code === 'NBD_CLOSED');
});

test('stream reader pauses its stream above the high-water mark and resumes when read', async () => {
  const stream = new PassThrough();
  const reader = new StreamReader(stream, 1024);
  stream.write(Buffer.alloc(512));
  await reader.read(100); // flowing
  const delivered = once(stream, 'data');
  stream.write(Buffer.alloc(2048));
  await delivered;
  assert.equal(stream.isPaused(), true);
  await reader.read(2048 + 412);
  assert.equal(stream.isPaused(), false);
});

test('cancel makes a pending read resolve null', async () => {
  const stream = new PassThrough();
  const reader = new StreamReader(stream);
  stream.write(Buffer.alloc(4));
  const pending = reader.next(8);
  reader.cancel();
  assert.equal(await pending, null);
  assert.equal(await reader.next(1), null);
});
