import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, parseBytes } from '../../src/runtime/config.js';
import { ConfigError } from '../../src/replication/errors.js';
import { AgentConfigSchema } from '../../src/cli/agent.js';
import { MtConfigSchema } from '../../src/cli/mt.js';

test('a valid YAML agent config loads and is frozen', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-cfg-'));
  try {
    const path = join(dir, 'agent.yaml');
    await writeFile(
      path,
      'name: a\nstateDir: /s\nnbdSocket: /s/n.sock\nprocessServer: 127.0.0.1:9443\ntls: { ca: c, cert: c, key: k }\ntokenFile: t\ndisks: [ { id: disk0, path: /d, size: 1GiB } ]\n',
    );
    const cfg = await loadConfigFile(path, AgentConfigSchema);
    assert.equal(cfg.disks[0]?.size, '1GiB');
    assert.equal(parseBytes(cfg.disks[0]!.size!), 1024 ** 3);
    assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.disks[0]));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('every problem of an invalid config is reported with its path', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-cfg-'));
  try {
    const path = join(dir, 'mt.json');
    await writeFile(path, JSON.stringify({ name: 'm', listen: 'nohost', retention: {}, disks: [{ id: '../x', target: 't', size: 1 }], tls: { ca: 'c', cert: 'c', key: 'k' }, tokenFile: 't', extra: 1 }));
    await assert.rejects(loadConfigFile(path, MtConfigSchema), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'CONFIG_INVALID');
      for (const p of ['/listen', '/retention/dir', '/disks/0/id', '/extra']) assert.ok(err.message.includes(p), `names ${p}: ${err.message}`);
      return true;
    });
    await writeFile(path, '{ not json');
    await assert.rejects(loadConfigFile(path, MtConfigSchema), (err: unknown) => err instanceof ConfigError && err.code === 'CONFIG_SYNTAX');
    await assert.rejects(loadConfigFile(join(dir, 'missing.yaml'), MtConfigSchema), (err: unknown) => err instanceof ConfigError && err.code === 'CONFIG_READ');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('sizes parse with units and refuse nonsense', () => {
  assert.equal(parseBytes('512MiB'), 512 * 1024 * 1024);
  assert.equal(parseBytes('4g'), 4 * 1024 ** 3);
  assert.equal(parseBytes(4096), 4096);
  assert.throws(() => parseBytes('lots'), ConfigError);
});
