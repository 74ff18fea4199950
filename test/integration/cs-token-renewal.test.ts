import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ConfigurationServer } from '../../src/cs/server.js';
import { HttpsJsonClient } from '../../src/runtime/https-client.js';
import { enrol, HeartbeatSender } from '../../src/runtime/cs-link.js';

// A component exchanges its CS token for a new one once two thirds of its lifetime have passed,
// keeps it in its registration file (a restart uses it), and the old token stops working.
test('a component renews its token when due, keeps it, and the old one is refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-token-'));
  const cs = await ConfigurationServer.start({ dataDir: join(dir, 'cs'), port: 0, hostnames: ['127.0.0.1'], initialPassphrase: 'correct-horse-battery-staple', componentTokenTtlSeconds: 3600, logger: pino({ level: 'silent' }) });
  try {
    const caPem = await readFile(cs.paths.ca, 'utf8');
    const stateDir = join(dir, 'agent');
    const link = { url: cs.url, caPem, kind: 'agent' as const, name: 'web01', stateDir, passphrase: async () => 'correct-horse-battery-staple' };
    const first = await enrol(link);
    const oldToken = first.token.value;
    assert.equal(first.token.dueForRenewal(), false, 'a fresh token is not due');

    // Make the kept token look old: issued long ago, so two thirds of its life have passed.
    const file = join(stateDir, 'cs', 'registration.json');
    const kept = JSON.parse(await readFile(file, 'utf8')) as { tokenIssuedAt: number };
    await writeFile(file, JSON.stringify({ ...kept, tokenIssuedAt: Date.now() - 10 * 3600 * 1000 }));
    const again = await enrol(link);
    assert.equal(again.token.value, oldToken, 'a kept registration is used, not a new one');
    assert.equal(again.token.dueForRenewal(), true);

    const sender = new HeartbeatSender({ url: cs.url, caPem, token: again.token, intervalMs: 60_000, report: async () => ({ agent: { disks: [] } }), log: pino({ level: 'silent' }) });
    sender.start();
    await sender.stop(); // the first beat, and the renewal after it, are done
    assert.equal(sender.lastError, undefined);
    assert.notEqual(again.token.value, oldToken);
    assert.equal(again.token.dueForRenewal(), false);
    const onDisk = JSON.parse(await readFile(file, 'utf8')) as { token: string };
    assert.equal(onDisk.token, again.token.value, 'the new token is kept for the next start');

    const beat = (token: string) => {
      const c = new HttpsJsonClient(cs.url, caPem, token);
      return c.call('POST', '/v1/heartbeat', { agent: { disks: [] } }).finally(() => c.close());
    };
    await assert.rejects(beat(oldToken), (e: Error & { code?: string }) => e.code === 'BAD_TOKEN');
    await beat(again.token.value);
  } finally {
    await cs.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
