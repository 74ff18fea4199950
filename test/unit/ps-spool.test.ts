import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { encodeBatch } from '../../src/replication/batch.js';
import { BoomerangError } from '../../src/replication/errors.js';
import { newLineage } from '../../src/replication/position.js';
import { Spool, QUARANTINE_DIR } from '../../src/ps/spool.js';

const LINEAGE = newLineage();

/** A batch of one data extent whose bytes are derived from (disk, seq), so content can be checked. */
function makeBatch(diskId: string, seq: number, sectors = 1, lineage = LINEAGE): Buffer {
  const data = Buffer.alloc(sectors * 512, `${diskId}:${seq}:`);
  return encodeBatch({
    diskId,
    lineage,
    firstSeq: seq,
    lastSeq: seq,
    firstTime: 1_000,
    lastTime: 1_000,
    flags: 0,
    extents: [{ offset: seq * 512, length: data.length, data }],
    bookmarks: [],
  });
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-spool-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const MB = 1024 * 1024;

function seqs(spool: Spool, diskId: string): number[] {
  return spool.pending(diskId).map((e) => e.lastSeq);
}

test('put, pending, read and remove round trip', () =>
  withDir(async (dir) => {
    const spool = await Spool.open({ dir, maxBytes: MB });
    const b1 = makeBatch('disk-a', 1);
    const b2 = makeBatch('disk-a', 2, 3);
    const e1 = await spool.put(b1);
    const e2 = await spool.put(b2);
    assert.deepEqual(e1, { diskId: 'disk-a', lineage: LINEAGE, firstSeq: 1, lastSeq: 1, bytes: b1.length, id: 0 });
    assert.equal(e2.id, 1);
    assert.deepEqual(spool.disks(), ['disk-a']);
    assert.deepEqual(spool.pending('disk-a'), [e1, e2]);
    assert.deepEqual(spool.pending('other'), []);
    assert.deepEqual(await spool.read(e2), b2);
    assert.deepEqual(await readdir(join(dir, 'disk-a')), ['0000000000000000.batch', '0000000000000001.batch']);
    assert.deepEqual(spool.usage(), { bytes: b1.length + b2.length, maxBytes: MB, batches: 2, ratio: (b1.length + b2.length) / MB, state: 'ok' });

    await spool.remove(e1);
    await spool.remove(e1); // a second remove of the same entry is a no-op
    assert.deepEqual(spool.pending('disk-a'), [e2]);
    assert.equal(spool.usage().bytes, b2.length);
    await spool.remove(e2);
    assert.deepEqual(spool.disks(), []);
    assert.deepEqual(await readdir(join(dir, 'disk-a')), []);
    assert.equal(spool.usage().batches, 0);
  }));

test('order per disk survives a reopen and new names sort after old ones', () =>
  withDir(async (dir) => {
    const first = await Spool.open({ dir, maxBytes: MB });
    for (let seq = 1; seq <= 12; seq++) {
      await first.put(makeBatch('disk-a', seq));
      if (seq % 3 === 0) await first.put(makeBatch('disk-b', seq));
    }
    const [a1] = first.pending('disk-a');
    assert.ok(a1);
    await first.remove(a1);

    const second = await Spool.open({ dir, maxBytes: MB });
    assert.deepEqual(second.disks().sort(), ['disk-a', 'disk-b']);
    assert.deepEqual(seqs(second, 'disk-a'), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.deepEqual(seqs(second, 'disk-b'), [3, 6, 9, 12]);
    assert.deepEqual(second.usage().batches, 15);
    const e13 = await second.put(makeBatch('disk-a', 13));
    assert.equal(e13.id, 12);

    const third = await Spool.open({ dir, maxBytes: MB });
    assert.deepEqual(seqs(third, 'disk-a'), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    for (const e of third.pending('disk-a')) assert.deepEqual(await third.read(e), makeBatch('disk-a', e.lastSeq));
  }));

test('leftover .tmp files from a crash are deleted on open', () =>
  withDir(async (dir) => {
    const spool = await Spool.open({ dir, maxBytes: MB });
    await spool.put(makeBatch('disk-a', 1));
    const half = makeBatch('disk-a', 2).subarray(0, 100);
    await writeFile(join(dir, 'disk-a', '0000000000000001.batch.tmp'), half);
    await writeFile(join(dir, 'disk-a', 'notes.txt'), 'not a batch');

    const reopened = await Spool.open({ dir, maxBytes: MB });
    assert.deepEqual(seqs(reopened, 'disk-a'), [1]);
    assert.deepEqual((await readdir(join(dir, 'disk-a'))).sort(), ['0000000000000000.batch', 'notes.txt']);
    assert.deepEqual(reopened.quarantined(), []);
    assert.equal((await reopened.put(makeBatch('disk-a', 2))).id, 1);
  }));

test('a corrupted or misplaced batch file is quarantined on open, never indexed', () =>
  withDir(async (dir) => {
    const spool = await Spool.open({ dir, maxBytes: MB });
    for (let seq = 1; seq <= 3; seq++) await spool.put(makeBatch('disk-a', seq));
    const bad = makeBatch('disk-a', 2);
    bad.writeUInt8(bad.readUInt8(bad.length - 10) ^ 0xff, bad.length - 10); // flip a data byte: the checksum no longer matches
    await writeFile(join(dir, 'disk-a', '0000000000000001.batch'), bad);
    // A valid batch of another disk in disk-a's directory must not be forwarded as disk-a's.
    await writeFile(join(dir, 'disk-a', '0000000000000007.batch'), makeBatch('disk-b', 9));

    const reopened = await Spool.open({ dir, maxBytes: MB });
    assert.deepEqual(seqs(reopened, 'disk-a'), [1, 3]);
    assert.deepEqual(reopened.disks(), ['disk-a']);
    const q = reopened.quarantined();
    assert.equal(q.length, 2);
    assert.match(q[0]?.reason ?? '', /checksum/);
    assert.match(q[1]?.reason ?? '', /disk-b/);
    const names = await readdir(join(dir, QUARANTINE_DIR));
    assert.equal(names.length, 2);
    assert.ok(names.every((n) => n.startsWith('disk-a.')));
    // New names still sort after the quarantined ones.
    assert.equal((await reopened.put(makeBatch('disk-a', 4))).id, 8);
  }));

test('a batch corrupted at rest after indexing is quarantined by read', () =>
  withDir(async (dir) => {
    const spool = await Spool.open({ dir, maxBytes: MB });
    const e1 = await spool.put(makeBatch('disk-a', 1));
    await spool.put(makeBatch('disk-a', 2));
    await writeFile(join(dir, 'disk-a', '0000000000000000.batch'), makeBatch('disk-a', 1).subarray(0, 200));
    await assert.rejects(spool.read(e1), (err: unknown) => err instanceof BoomerangError && err.code === 'SPOOL_CORRUPT');
    assert.deepEqual(seqs(spool, 'disk-a'), [2]);
    assert.equal(spool.quarantined().length, 1);
    assert.equal(spool.usage().batches, 1);
  }));

test('SPOOL_FULL when the next batch does not fit, recovery after remove', () =>
  withDir(async (dir) => {
    const size = makeBatch('disk-a', 1, 8).length;
    const spool = await Spool.open({ dir, maxBytes: size * 5 + 10, nearlyFullRatio: 0.75 });
    const entries = [];
    for (let seq = 1; seq <= 5; seq++) {
      entries.push(await spool.put(makeBatch('disk-a', seq, 8)));
      assert.equal(spool.usage().state, seq >= 4 ? 'nearly-full' : 'ok');
    }
    const full = (err: unknown) => err instanceof BoomerangError && err.code === 'SPOOL_FULL' && err.retryable;
    await assert.rejects(spool.put(makeBatch('disk-a', 6, 8)), full);
    await assert.rejects(spool.put(makeBatch('disk-b', 1, 8)), full);
    assert.equal(spool.usage().state, 'full');
    assert.equal(spool.usage().batches, 5);
    assert.deepEqual(await readdir(join(dir, 'disk-a')), entries.map((_, i) => `000000000000000${i}.batch`));

    const [oldest] = entries;
    assert.ok(oldest);
    await spool.remove(oldest);
    assert.equal(spool.usage().state, 'nearly-full');
    const e6 = await spool.put(makeBatch('disk-a', 6, 8));
    assert.deepEqual(seqs(spool, 'disk-a'), [2, 3, 4, 5, 6]);
    assert.deepEqual(await spool.read(e6), makeBatch('disk-a', 6, 8));

    await assert.rejects(spool.put(makeBatch('disk-a', 7, 2048)), (err: unknown) => err instanceof BoomerangError && err.code === 'SPOOL_BATCH_TOO_LARGE' && !err.retryable);
  }));

test('a resent batch returns the pending entry without a second copy', () =>
  withDir(async (dir) => {
    const spool = await Spool.open({ dir, maxBytes: MB });
    const e1 = await spool.put(makeBatch('disk-a', 1));
    const [again, concurrent] = await Promise.all([spool.put(makeBatch('disk-a', 1)), spool.put(makeBatch('disk-a', 1))]);
    assert.equal(again, e1);
    assert.equal(concurrent, e1);
    // Same sequence on another disk or another lineage is a different batch.
    await spool.put(makeBatch('disk-b', 1));
    await spool.put(makeBatch('disk-a', 1, 1, newLineage()));
    assert.equal(spool.usage().batches, 3);
    assert.equal((await readdir(join(dir, 'disk-a'))).length, 2);

    const reopened = await Spool.open({ dir, maxBytes: MB });
    assert.deepEqual(await reopened.put(makeBatch('disk-a', 1)), e1);
    assert.equal(reopened.usage().batches, 3);

    // Once the MT acknowledged it and it was removed, a resend is stored again (the MT dedupes).
    await spool.remove(e1);
    assert.notEqual(await spool.put(makeBatch('disk-a', 1)), e1);
  }));

test('100 concurrent puts across 3 disks land in call order per disk', () =>
  withDir(async (dir) => {
    const spool = await Spool.open({ dir, maxBytes: 16 * MB });
    const woken: string[] = [];
    const off = spool.onPut((e) => woken.push(`${e.diskId}/${e.lastSeq}`));
    const disks = ['d0', 'd1', 'd2'];
    const puts = [];
    for (let i = 0; i < 100; i++) {
      const diskId = disks[i % 3] ?? 'd0';
      // Varying sizes so that later puts could finish writing first if they were not ordered.
      puts.push(spool.put(makeBatch(diskId, i + 1, 1 + ((i * 37) % 16))));
    }
    const entries = await Promise.all(puts);
    off();
    await spool.put(makeBatch('d0', 1000));
    assert.equal(woken.length, 100);
    for (const [d, diskId] of disks.entries()) {
      const expected = Array.from({ length: 100 }, (_, i) => i + 1).filter((s) => (s - 1) % 3 === d);
      assert.deepEqual(seqs(spool, diskId).slice(0, expected.length), expected);
      assert.deepEqual(
        entries.filter((e) => e.diskId === diskId).map((e) => e.id),
        expected.map((_, i) => i),
      );
    }
    const reopened = await Spool.open({ dir, maxBytes: 16 * MB });
    for (const diskId of disks) assert.deepEqual(seqs(reopened, diskId), seqs(spool, diskId));
  }));

test('concurrent puts never exceed maxBytes', () =>
  withDir(async (dir) => {
    const size = makeBatch('d0', 1, 4).length;
    const spool = await Spool.open({ dir, maxBytes: size * 10 });
    const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => spool.put(makeBatch(`d${i % 3}`, i + 1, 4))));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 10);
    assert.equal(spool.usage().bytes, size * 10);
    assert.equal(spool.usage().state, 'full');
  }));

/**
 * The child puts batches on two disks as fast as it can and prints each one once put resolved;
 * the parent kills it with SIGKILL mid-stream. Every batch reported as stored must survive.
 * (This exercises the tmp/rename protocol and recovery; it cannot simulate a power cut.)
 */
test('batches acknowledged before a kill -9 are present and intact after reopen', { timeout: 60_000 }, () =>
  withDir(async (dir) => {
    const spoolUrl = new URL('../../src/ps/spool.js', import.meta.url).href;
    const batchUrl = new URL('../../src/replication/batch.js', import.meta.url).href;
    const child = `
      const { Spool } = await import(${JSON.stringify(spoolUrl)});
      const { encodeBatch } = await import(${JSON.stringify(batchUrl)});
      const [dir, lineage] = process.argv.slice(-2);
      const make = (diskId, seq) => {
        const data = Buffer.alloc((1 + (seq % 8)) * 512, diskId + ':' + seq + ':');
        return encodeBatch({ diskId, lineage, firstSeq: seq, lastSeq: seq, firstTime: 1000, lastTime: 1000, flags: 0,
          extents: [{ offset: seq * 512, length: data.length, data }], bookmarks: [] });
      };
      const spool = await Spool.open({ dir, maxBytes: 1 << 30 });
      const run = async (diskId) => {
        for (let seq = 1; seq <= 5000; seq++) {
          await spool.put(make(diskId, seq));
          process.stdout.write(diskId + ' ' + seq + '\\n');
        }
      };
      await Promise.all([run('k0'), run('k1')]);
    `;
    const proc = spawn(process.execPath, ['--input-type=module', '-e', child, dir, LINEAGE], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acked = new Map<string, number>([
      ['k0', 0],
      ['k1', 0],
    ]);
    let lines = 0;
    const exited = new Promise<NodeJS.Signals | null>((resolve) => proc.on('exit', (_code, signal) => resolve(signal)));
    for await (const line of createInterface({ input: proc.stdout })) {
      const [diskId, seq] = line.split(' ');
      acked.set(diskId ?? '', Number(seq));
      if (++lines === 150) proc.kill('SIGKILL');
    }
    assert.equal(await exited, 'SIGKILL', 'the child finished before it could be killed');

    const spool = await Spool.open({ dir, maxBytes: 1 << 30 });
    assert.deepEqual(spool.quarantined(), []);
    for (const [diskId, last] of acked) {
      assert.ok(last > 0);
      const pending = spool.pending(diskId);
      // Everything reported is there, in order; at most the put in flight got further.
      assert.ok(pending.length === last || pending.length === last + 1, `${diskId}: ${pending.length} stored, ${last} reported`);
      assert.deepEqual(
        pending.map((e) => e.lastSeq),
        Array.from({ length: pending.length }, (_, i) => i + 1),
      );
      for (const e of pending) {
        const data = await spool.read(e);
        const expected = Buffer.alloc((1 + (e.lastSeq % 8)) * 512, `${diskId}:${e.lastSeq}:`);
        assert.deepEqual(data.subarray(data.length - 4 - expected.length, data.length - 4), expected);
      }
      assert.ok((await readdir(join(dir, diskId))).every((n) => n.endsWith('.batch')));
    }
  }));
