import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessServer } from '../../src/ps/process-server.js';
import { createLogger } from '../../src/runtime/log.js';
import { ensureDevPki, loadTlsMaterial } from '../../src/security/pki.js';
import { generateToken } from '../../src/security/token.js';
import { encodeBatch, BatchFlags } from '../../src/replication/batch.js';
import { newLineage } from '../../src/replication/position.js';
import { RemoteError } from '../../src/replication/errors.js';
import { connectData, FrameType, batchPayload, parseJson, writeFrame, type Ack, type Nack } from '../../src/replication/transport.js';

async function setup() {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-ps-'));
  const pki = await ensureDevPki(join(dir, 'pki'));
  const material = await loadTlsMaterial(pki);
  const token = generateToken();
  // The MT endpoint is closed: batches stay spooled, which is what these tests look at.
  const ps = await ProcessServer.start({
    name: 'ps-test',
    listen: { host: '127.0.0.1', port: 0 },
    spoolDir: join(dir, 'spool'),
    masterTarget: { host: '127.0.0.1', port: 1 },
    material,
    token,
    log: createLogger('ps', 'silent'),
  });
  return { dir, material, token, ps, done: async () => (await ps.stop(), await rm(dir, { recursive: true, force: true })) };
}

function batch(firstSeq: number, lineage = newLineage()): Buffer {
  return encodeBatch({
    diskId: 'disk0',
    lineage,
    firstSeq,
    lastSeq: firstSeq,
    firstTime: Date.now(),
    lastTime: Date.now(),
    flags: firstSeq === 1 ? BatchFlags.lineageStart : 0,
    extents: [{ offset: 4096, length: 4096, data: Buffer.alloc(4096, 7) }],
    bookmarks: [],
  });
}

test('a corrupted batch is refused with BATCH_CHECKSUM and never spooled; the resend is stored', async () => {
  const { material, token, ps, done } = await setup();
  try {
    const good = batch(1);
    const bad = Buffer.from(good);
    bad[bad.length - 100]! ^= 0x01;
    const c1 = await connectData(ps.endpoint!, material, { role: 'agent', name: 't', token });
    await writeFrame(c1.socket, FrameType.batch, batchPayload(1, bad));
    const reply = await c1.frames.next();
    assert.equal(reply.value?.type, FrameType.nack);
    const nack = parseJson<Nack>(reply.value!, 'nack');
    assert.equal(nack.code, 'BATCH_CHECKSUM');
    assert.equal((await c1.frames.next()).done, true, 'the PS drops the connection after a refusal');
    assert.equal(ps.spool.usage().batches, 0);

    const c2 = await connectData(ps.endpoint!, material, { role: 'agent', name: 't', token });
    await writeFrame(c2.socket, FrameType.batch, batchPayload(2, good));
    const ok = await c2.frames.next();
    assert.equal(ok.value?.type, FrameType.ack);
    assert.equal(parseJson<Ack>(ok.value!, 'ack').status, 'stored');
    assert.equal(ps.spool.usage().batches, 1);
    // The same batch again (a lost ack): acknowledged, stored once.
    await writeFrame(c2.socket, FrameType.batch, batchPayload(3, good));
    assert.equal((await c2.frames.next()).value?.type, FrameType.ack);
    assert.equal(ps.spool.usage().batches, 1);
    c2.socket.destroy();
  } finally {
    await done();
  }
});

test('a wrong token, a wrong role and a client without a certificate are refused', async () => {
  const { material, token, ps, done } = await setup();
  try {
    await assert.rejects(connectData(ps.endpoint!, material, { role: 'agent', name: 't', token: `${token}x` }), (e: unknown) => e instanceof RemoteError && e.code === 'AUTH_FAILED');
    await assert.rejects(connectData(ps.endpoint!, material, { role: 'ps', name: 't', token }), (e: unknown) => e instanceof RemoteError && e.code === 'ROLE_REFUSED');
    const socket = tls.connect({ host: '127.0.0.1', port: ps.endpoint!.port, ca: material.ca, servername: 'localhost' });
    const [err] = await Promise.race([once(socket, 'error'), once(socket, 'close').then(() => [new Error('closed')])]);
    assert.ok(err instanceof Error, 'the TLS handshake fails without a client certificate');
    socket.destroy();
    assert.equal(ps.spool.usage().batches, 0);
  } finally {
    await done();
  }
});
