import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { startComponent } from '../../src/lab/process.js';
import type { Endpoint } from '../../src/replication/transport.js';
import { writeTokenFile } from '../../src/security/token.js';
import { testPki, withDir } from '../helpers/stack.js';

/**
 * An agent is told the MT's resync endpoint when its protection starts and keeps it: a restarted
 * `boomerang mt` without `resyncListen` must come back on the same one (the port after its data
 * port), not on a port the OS picks anew.
 */

function listenOnce(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => {
      const bound = (server.address() as { port: number }).port;
      server.close(() => resolve(bound));
    });
  });
}

/** A port whose successor is free too (both the data and the resync listener need one). */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await listenOnce(0);
    if (port !== undefined && port < 65535 && (await listenOnce(port + 1)) !== undefined) return port;
  }
  throw new Error('no two consecutive free ports on 127.0.0.1 in 20 attempts');
}

test('the MT’s default resync endpoint is the port after its data port, the same after a restart', async () => {
  await withDir('mt-resync-endpoint', async (dir) => {
    const { material, token } = await testPki();
    const tls = { ca: join(dir, 'ca.pem'), cert: join(dir, 'mt.pem'), key: join(dir, 'mt.key') };
    await writeFile(tls.ca, material.ca);
    await writeFile(tls.cert, material.cert);
    await writeFile(tls.key, material.key, { mode: 0o600 });
    await writeTokenFile(join(dir, 'token'), token);
    await mkdir(join(dir, 'retention'));
    const port = await freePortPair();
    const config = join(dir, 'mt.json');
    await writeFile(config, JSON.stringify({ name: 'mt-port', listen: `127.0.0.1:${port}`, control: '127.0.0.1:0', retention: { dir: join(dir, 'retention') }, tls, tokenFile: join(dir, 'token') }));

    const seen: Endpoint[] = [];
    for (let run = 0; run < 2; run++) {
      const mt = await startComponent<{ event?: string; resync: Endpoint }>(['mt', '--config', config], join(dir, `mt-${run}.log`), 'mt');
      seen.push(mt.ready.resync);
      mt.proc.kill('SIGKILL');
      await mt.exited;
    }
    assert.deepEqual(seen[0], { host: '127.0.0.1', port: port + 1 });
    assert.deepEqual(seen[1], seen[0]);
  });
});
