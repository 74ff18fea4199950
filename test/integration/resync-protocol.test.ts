import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { hashFile } from '../../src/lab/hash.js';
import { FileDisk } from '../../src/replication/disk.js';
import { ProtocolError, RemoteError } from '../../src/replication/errors.js';
import { runResync } from '../../src/replication/resync/engine.js';
import { newHashKey } from '../../src/replication/resync/hashing.js';
import { encodeOpen, encodeRefine, encodeWrite, ResyncFrame } from '../../src/replication/resync/messages.js';
import type { ResyncExtent } from '../../src/replication/resync/sink.js';
import { RemoteTarget } from '../../src/replication/resync/target-client.js';
import { connectData, createDataServer, FrameType, parseJson, writeFrame, type Endpoint, type Frame } from '../../src/replication/transport.js';
import { MiB, startTarget, tlsMaterial, TOKEN, withTempDir, writeImage } from './resync-fixtures.js';

/** Malformed or out-of-range protocol input, from either side, is refused with a typed error and changes nothing. */

const SIZE = 2 * MiB;
const OPEN = { diskId: 'disk-0', sourceSize: SIZE, layout: { blockBytes: 4096, regionBytes: 32768, batchBytes: 1048576 }, hash: 'gmac-aes128' as const, key: newHashKey('gmac-aes128'), allowLargerTarget: false };

/** The same with 8 KiB sub-regions, and a refine of the first batch that no compare preceded. */
const OPEN_REFINED = { ...OPEN, layout: { ...OPEN.layout, subRegionBytes: [8192] } };
const STRAY_REFINE = encodeRefine({ id: 1, offset: 0, length: 1048576, level: 1, expand: Uint8Array.from({ length: 16 }, (_, i) => (i === 0 ? 1 : 0)), sourceZero: new Uint8Array(16) });

async function raw(endpoint: Endpoint) {
  return connectData(endpoint, await tlsMaterial(), { role: 'agent', name: 'raw', token: TOKEN });
}

/** Reads up to the refusal; returns its code. The connection must end after it. */
async function refusal(frames: AsyncGenerator<Frame>): Promise<string> {
  for (let frame = 0; frame < 100; frame++) {
    const f = await frames.next();
    assert.equal(f.done, false, 'the target closed without saying why');
    if (f.value!.type === FrameType.error) {
      const code = parseJson<{ code: string }>(f.value!, 'error').code;
      for (let guard = 0; guard < 100; guard++) if ((await frames.next()).done) return code;
      assert.fail('the connection did not end after the refusal');
    }
  }
  assert.fail('no refusal');
}

test('the target refuses what is out of order, malformed or out of range, and applies nothing after it', async () => {
  await withTempDir(async (dir) => {
    const target = join(dir, 'target.img');
    await writeImage(target, SIZE, 61);
    const before = await hashFile(target);
    const server = await startTarget(target);
    try {
      const cases: { name: string; frames: [number, Buffer | Buffer[]][]; code: string }[] = [
        { name: 'compare before open', frames: [[ResyncFrame.compare, Buffer.alloc(16)]], code: 'RESYNC_UNEXPECTED' },
        { name: 'open with a bad layout', frames: [[ResyncFrame.open, Buffer.from(JSON.stringify({ ...JSON.parse(encodeOpen(OPEN).toString()), regionBytes: 3000 }))]], code: 'RESYNC_BAD_MESSAGE' },
        { name: 'a write beyond the disk', frames: [[ResyncFrame.open, encodeOpen(OPEN)], [ResyncFrame.write, encodeWrite(SIZE, Buffer.alloc(4096, 1))]], code: 'RESYNC_OUT_OF_RANGE' },
        { name: 'a misaligned write, then a valid one', frames: [[ResyncFrame.open, encodeOpen(OPEN)], [ResyncFrame.write, encodeWrite(100, Buffer.alloc(4096, 1))], [ResyncFrame.write, encodeWrite(0, Buffer.alloc(4096, 1))]], code: 'RESYNC_BAD_MESSAGE' },
        { name: 'a truncated compare', frames: [[ResyncFrame.open, encodeOpen(OPEN)], [ResyncFrame.compare, Buffer.alloc(20)]], code: 'RESYNC_BAD_MESSAGE' },
        { name: 'a refine that no diff called for', frames: [[ResyncFrame.open, encodeOpen(OPEN_REFINED)], [ResyncFrame.refine, STRAY_REFINE]], code: 'RESYNC_UNEXPECTED' },
        { name: 'a refine in a session without sub-regions', frames: [[ResyncFrame.open, encodeOpen(OPEN)], [ResyncFrame.refine, STRAY_REFINE]], code: 'RESYNC_BAD_MESSAGE' },
        { name: 'an unknown frame type', frames: [[ResyncFrame.open, encodeOpen(OPEN)], [200, Buffer.alloc(4)]], code: 'RESYNC_UNEXPECTED' },
      ];
      for (const c of cases) {
        const { socket, frames } = await raw(server.endpoint);
        for (const [type, payload] of c.frames) await writeFrame(socket, type, payload);
        assert.equal(await refusal(frames), c.code, c.name);
        socket.destroy();
        const session = await server.nextSession();
        assert.ok(session.error instanceof ProtocolError, c.name);
        assert.equal(session.bytesWritten + session.bytesZeroed, 0, c.name);
        assert.equal(await hashFile(target), before, c.name);
      }
      await assert.rejects(connectData(server.endpoint, await tlsMaterial(), { role: 'agent', name: 'raw', token: 'wrong' }), (e: unknown) => e instanceof RemoteError && e.code === 'AUTH_FAILED');
    } finally {
      await server.close();
    }
  });
});

test('the source refuses a malformed diff: the run fails with a ProtocolError and nothing reaches the sink', async () => {
  await withTempDir(async (dir) => {
    const sourcePath = join(dir, 'source.img');
    await writeImage(sourcePath, SIZE, 62);
    // A target that answers every compare with a diff that claims to answer another request.
    const fake = createDataServer({
      material: await tlsMaterial(),
      authorize: () => true,
      roles: ['agent'],
      onConnection: async ({ socket, frames }) => {
        for await (const f of frames) {
          if (f.type === ResyncFrame.open) await writeFrame(socket, ResyncFrame.ready, Buffer.from(JSON.stringify({ targetSize: SIZE })));
          else if (f.type === ResyncFrame.compare) {
            const reply = Buffer.from(f.payload.subarray(0, 16));
            reply.writeUInt32LE(reply.readUInt32LE(0) + 1, 0);
            await writeFrame(socket, ResyncFrame.diff, reply);
          }
        }
      },
    });
    const endpoint = await fake.listen({ host: '127.0.0.1', port: 0 });
    const remote = await RemoteTarget.connect(endpoint, await tlsMaterial(), TOKEN);
    const source = await FileDisk.open(sourcePath, { readOnly: true });
    const written: ResyncExtent[] = [];
    try {
      await assert.rejects(
        runResync({ diskId: 'disk-0', source, remote, sink: { write: async (e) => void written.push(e), flush: async () => undefined } }),
        (e: unknown) => e instanceof ProtocolError && e.code === 'RESYNC_BAD_MESSAGE',
      );
      assert.equal(written.length, 0);
    } finally {
      await remote.close();
      await source.close();
      await fake.close();
    }
  });
});
