import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { hashFile } from '../../src/lab/hash.js';
import { FileDisk } from '../../src/replication/disk.js';
import { runResync, type ResyncCursor } from '../../src/replication/resync/engine.js';
import type { ResyncSink } from '../../src/replication/resync/sink.js';
import { StandaloneSink } from '../../src/replication/resync/standalone-sink.js';
import { RemoteTarget } from '../../src/replication/resync/target-client.js';
import { BLOCK, changeBlocks, KiB, MiB, pickBlocks, resyncTo, startTarget, tlsMaterial, TOKEN, withTempDir, writeImage } from './resync-fixtures.js';

/**
 * kill -9 of either side mid-resync, then a run resumed from the persisted cursor: it compares only
 * what is after the cursor, sends no more than the differences there (plus one window), and the
 * target ends equal to the source.
 */

const CHILD = fileURLToPath(new URL('./resync-child.js', import.meta.url));
const SIZE = 32 * MiB;
const LAYOUT = { batchBytes: 256 * KiB };
const WINDOW = 4;
const CHECKPOINT = 2 * MiB;
const ONE_WINDOW = WINDOW * LAYOUT.batchBytes;

interface Child {
  proc: ChildProcessWithoutNullStreams;
  lines: AsyncIterator<string>;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  stderr: () => string;
}

async function startChild(dir: string, name: string, config: object): Promise<Child> {
  const path = join(dir, `${name}.json`);
  await writeFile(path, JSON.stringify({ ...config, material: await tlsMaterial(), token: TOKEN }));
  const proc = spawn(process.execPath, [CHILD, path], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const guard = setTimeout(() => proc.kill('SIGKILL'), 30_000); // a hung child must not hang the suite
  void exited.then(() => clearTimeout(guard));
  return { proc, lines: createInterface({ input: proc.stdout })[Symbol.asyncIterator](), exited, stderr: () => stderr };
}

async function nextLine(c: Child): Promise<string> {
  const r = await c.lines.next();
  if (r.done) throw new Error(`child ended early: ${c.stderr()}`);
  return r.value;
}

/** A source image and a target that differs from it in 2% of its blocks; the differing block indexes. */
async function prepare(dir: string): Promise<{ source: string; target: string; changed: number[] }> {
  const source = join(dir, 'source.img');
  const target = join(dir, 'target.img');
  await writeImage(source, SIZE, 51);
  await copyFile(source, target);
  const changed = pickBlocks(SIZE / BLOCK / 50, SIZE / BLOCK, 52);
  await changeBlocks(source, changed, 53);
  return { source, target, changed };
}

function bytesAfter(changed: number[], cursor: number): number {
  return changed.filter((b) => b * BLOCK >= cursor).length * BLOCK;
}

test('kill -9 of the source mid-resync, then a resumed run from its persisted cursor', async () => {
  await withTempDir(async (dir) => {
    const { source, target, changed } = await prepare(dir);
    const server = await startTarget(target);
    try {
      const cursorPath = join(dir, 'cursor.json');
      const child = await startChild(dir, 'source', { mode: 'source', path: source, port: server.endpoint.port, cursorPath, layout: LAYOUT, windowBatches: WINDOW, checkpointBytes: CHECKPOINT });
      // Let it pass three checkpoints, then kill it after its first write beyond the third: the
      // fourth checkpoint waits for our go (and the run cannot pass the fifth), so the kill lands
      // between checkpoints, mid-resync.
      let cursors = 0;
      let third = Infinity;
      let killedAfter = -1;
      for (;;) {
        const line = await nextLine(child);
        const [what, value] = line.split(' ');
        if (what === 'cursor') {
          cursors++;
          if (cursors === 3) third = Number(value);
          if (cursors <= 3) child.proc.stdin.write('go\n');
        } else if (what === 'wrote' && Number(value) >= third) {
          killedAfter = Number(value);
          child.proc.kill('SIGKILL');
          break;
        }
        assert.notEqual(what, 'done', 'the source must not finish before it is killed');
      }
      const [, signal] = await child.exited;
      assert.equal(signal, 'SIGKILL');
      await server.nextSession(); // the target saw the connection go
      // The third cursor, or the fourth if its checkpoint came before the kill landed.
      const cursor = (JSON.parse(await readFile(cursorPath, 'utf8')) as ResyncCursor).offset;
      assert.ok(cursor >= third && cursor < SIZE && killedAfter >= third, `persisted cursor ${cursor}, third ${third}`);

      const resumed = await resyncTo(server.endpoint, source, { cursor: { offset: cursor }, layout: LAYOUT, windowBatches: WINDOW });
      assert.equal(resumed.result.completed, true);
      assert.equal(resumed.result.bytesCompared, SIZE - cursor);
      const remaining = bytesAfter(changed, cursor);
      assert.ok(resumed.result.bytesSent + resumed.result.zeroBytes <= remaining + ONE_WINDOW, `resumed run sent ${resumed.result.bytesSent} for ${remaining} remaining`);
      assert.equal(await hashFile(target), await hashFile(source));
    } finally {
      await server.close();
    }
  });
});

test('kill -9 of the target mid-resync, then a resumed run against a restarted target', async () => {
  await withTempDir(async (dir) => {
    const { source, target, changed } = await prepare(dir);
    const startServer = async () => {
      const child = await startChild(dir, 'target', { mode: 'target', path: target });
      const [what, port] = (await nextLine(child)).split(' ');
      assert.equal(what, 'listening');
      return { child, port: Number(port) };
    };
    const first = await startServer();
    const material = await tlsMaterial();
    const disk = await FileDisk.open(source, { readOnly: true });
    let persisted: ResyncCursor | undefined;
    let cursors = 0;
    let third = Infinity;
    try {
      const remote = await RemoteTarget.connect({ host: '127.0.0.1', port: first.port }, material, TOKEN);
      const standalone = new StandaloneSink(remote);
      // After the third checkpoint, the first write beyond it kills the target.
      const sink: ResyncSink = {
        write: async (e) => {
          await standalone.write(e);
          if (e.offset >= third && first.child.proc.exitCode === null && first.child.proc.signalCode === null) first.child.proc.kill('SIGKILL');
        },
        flush: () => standalone.flush(),
      };
      const run = runResync({
        diskId: 'disk-0',
        source: disk,
        remote,
        sink,
        layout: LAYOUT,
        windowBatches: WINDOW,
        checkpointBytes: CHECKPOINT,
        onCursor: (c) => {
          persisted = c;
          if (++cursors === 3) third = c.offset;
        },
      });
      await assert.rejects(run);
      await remote.close();
      const [, signal] = await first.child.exited;
      assert.equal(signal, 'SIGKILL');
      assert.ok(persisted && persisted.offset >= third && persisted.offset < SIZE);

      const second = await startServer();
      try {
        const resumed = await resyncTo({ host: '127.0.0.1', port: second.port }, source, { cursor: persisted, layout: LAYOUT, windowBatches: WINDOW });
        assert.equal(resumed.result.bytesCompared, SIZE - persisted.offset);
        const remaining = bytesAfter(changed, persisted.offset);
        assert.ok(resumed.result.bytesSent + resumed.result.zeroBytes <= remaining + ONE_WINDOW, `resumed run sent ${resumed.result.bytesSent} for ${remaining} remaining`);
        assert.equal(await hashFile(target), await hashFile(source));
      } finally {
        second.child.proc.stdin.end();
        await second.child.exited;
      }
    } finally {
      await disk.close();
      first.child.proc.kill('SIGKILL');
    }
  });
});
