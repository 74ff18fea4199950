import { open, readFile, rename } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { FileDisk } from '../../src/replication/disk.js';
import { runResync } from '../../src/replication/resync/engine.js';
import type { ResyncLayout } from '../../src/replication/resync/layout.js';
import type { ResyncSink } from '../../src/replication/resync/sink.js';
import { StandaloneSink } from '../../src/replication/resync/standalone-sink.js';
import { RemoteTarget } from '../../src/replication/resync/target-client.js';
import { createResyncTargetServer } from '../../src/replication/resync/target-service.js';
import type { TlsMaterial } from '../../src/replication/transport.js';

/**
 * Child of resync-kill.test, one side of a resync in its own process so the test can kill it
 * with SIGKILL:
 *   node resync-child.js <config.json>
 * target: serves `path`, prints "listening <port>".
 * source: resyncs `path` to 127.0.0.1:<port> from the cursor persisted in `cursorPath` (if any);
 *   prints "wrote <offset>" once each differing extent is on the socket; at each checkpoint
 *   persists the cursor (fsync, rename), prints "cursor <offset>" and waits for a line on stdin
 *   before going on (so the test decides how far it gets); prints "done <result json>" at the end.
 * Output to a pipe is synchronous: what is printed has happened.
 * Either exits when stdin closes, so a failed test leaves no process behind.
 */
interface ChildConfig {
  mode: 'target' | 'source';
  path: string;
  material: TlsMaterial;
  token: string;
  port?: number;
  cursorPath?: string;
  layout?: Partial<ResyncLayout>;
  windowBatches?: number;
  checkpointBytes?: number;
}

const c = JSON.parse(await readFile(process.argv[2] ?? '', 'utf8')) as ChildConfig;
const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const nextLine = async () => {
  const r = await stdin.next();
  if (r.done) process.exit(0);
};

if (c.mode === 'target') {
  const server = createResyncTargetServer({ material: c.material, token: c.token, openDisk: () => FileDisk.open(c.path) });
  const endpoint = await server.listen({ host: '127.0.0.1', port: 0 });
  process.stdout.write(`listening ${endpoint.port}\n`);
  await nextLine();
} else {
  const persisted = await readFile(c.cursorPath!, 'utf8').then((t) => JSON.parse(t) as { offset: number }, () => undefined);
  const remote = await RemoteTarget.connect({ host: '127.0.0.1', port: c.port! }, c.material, c.token);
  const source = await FileDisk.open(c.path, { readOnly: true });
  const standalone = new StandaloneSink(remote);
  const sink: ResyncSink = {
    write: async (e) => {
      await standalone.write(e);
      process.stdout.write(`wrote ${e.offset}\n`);
    },
    flush: () => standalone.flush(),
  };
  const result = await runResync({
    diskId: 'disk-0',
    source,
    remote,
    sink,
    ...(persisted ? { cursor: persisted } : {}),
    ...(c.layout ? { layout: c.layout } : {}),
    ...(c.windowBatches ? { windowBatches: c.windowBatches } : {}),
    ...(c.checkpointBytes ? { checkpointBytes: c.checkpointBytes } : {}),
    onCursor: async (cursor) => {
      const tmp = `${c.cursorPath!}.tmp`;
      const fh = await open(tmp, 'w');
      await fh.writeFile(JSON.stringify(cursor));
      await fh.sync();
      await fh.close();
      await rename(tmp, c.cursorPath!);
      process.stdout.write(`cursor ${cursor.offset}\n`);
      await nextLine();
    },
  });
  await remote.close();
  await source.close();
  process.stdout.write(`done ${JSON.stringify(result)}\n`);
  process.exit(0);
}
