import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { newLineage } from '../../src/replication/position.js';
import { ReplicaDisk } from '../../src/mt/replica.js';
import { fileHash, Model, prng, randInt, scriptedBatches, withTempDir } from '../unit/mt-fixtures.js';

const CHILD = fileURLToPath(new URL('./mt-crash-child.js', import.meta.url));
const SIZE = 4 * 1024 * 1024;
const COUNT = 400;
const ROUNDS = 8;

/**
 * Runs the child until it has printed `killAfter` acks, then kills it with SIGKILL `delayMs` later
 * (the delay only spreads the kill over the phases of the next apply). Returns the last acked seq.
 */
async function runAndKill(config: object, killAfter: number, delayMs: number): Promise<{ lastAcked: number; finished: boolean }> {
  const child = spawn(process.execPath, [CHILD, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const guard = setTimeout(() => child.kill('SIGKILL'), 30_000); // a hung child must not hang the suite
  let acks = 0;
  let lastAcked = 0;
  let finished = false;
  for await (const line of createInterface({ input: child.stdout })) {
    const m = /^acked (\d+)$/.exec(line);
    if (m) {
      lastAcked = Number(m[1]);
      if (++acks === killAfter) setTimeout(() => child.kill('SIGKILL'), delayMs);
    } else if (line === 'done') {
      finished = true;
    }
  }
  const [code, signal] = await exited;
  clearTimeout(guard);
  assert.ok(signal === 'SIGKILL' || (code === 0 && finished), `child failed (code ${code}, signal ${signal}): ${stderr}`);
  return { lastAcked, finished };
}

test('kill -9 of the master target mid-stream: nothing acknowledged is lost, the disk and every point are exact', async () => {
  await withTempDir(async (dir) => {
    const seed = 0xb00;
    const rand = prng(seed);
    const lineage = newLineage();
    const config = {
      seed,
      lineage,
      size: SIZE,
      count: COUNT,
      targetPath: join(dir, 'target.img'),
      retentionDir: join(dir, 'retention'),
      segmentBytes: 96 * 1024,
      maxJournalBytes: 1024 * 1024,
    };
    // Expected hashes: of the disk after every batch that carries a bookmark, and after every batch.
    const model = new Model(SIZE);
    const afterSeq = new Map<number, string>();
    for (const b of scriptedBatches(seed, lineage, SIZE, COUNT)) {
      model.apply(b);
      afterSeq.set(b.lastSeq, model.hash());
    }

    let previous = 0;
    let checkedPoints = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const { lastAcked, finished } = await runAndKill(config, randInt(rand, 2, 40), rand() * 6);
      const disk = await ReplicaDisk.open({ diskId: 'disk-0', targetPath: config.targetPath, retentionDir: config.retentionDir, size: SIZE, segmentBytes: config.segmentBytes, maxJournalBytes: config.maxJournalBytes });
      try {
        const pos = disk.position();
        assert.ok(pos, 'the replica has a position');
        assert.equal(pos.lineage, lineage);
        assert.ok(pos.lastSeq >= lastAcked, `position ${pos.lastSeq} is behind the last ack ${lastAcked}`);
        assert.ok(pos.lastSeq >= previous);
        previous = pos.lastSeq;
        assert.equal(await fileHash(config.targetPath), afterSeq.get(pos.lastSeq), `round ${round}: the target equals the model at ${pos.lastSeq}`);
        const points = disk.recoveryPoints();
        assert.ok(points.length > 0 || pos.lastSeq < 10);
        for (const p of points) {
          assert.ok(p.seq <= pos.lastSeq);
          const out = join(dir, 'point.img');
          await disk.restore(p.id, out);
          assert.equal(await fileHash(out), afterSeq.get(p.seq), `round ${round}: point ${p.id}`);
          await rm(out);
          checkedPoints++;
        }
      } finally {
        await disk.close();
      }
      if (finished) break;
    }
    assert.ok(previous > 0 && checkedPoints > 0);
  });
});
