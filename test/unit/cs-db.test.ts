import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { MIGRATIONS } from '../../src/cs/db/migrations.js';
import { migrate, openDatabase } from '../../src/cs/db/open.js';

const TABLES = ['ca', 'commands', 'components', 'fabric_inventory', 'fabric_secrets', 'fabrics', 'item_disks', 'items', 'jobs', 'machines', 'policies', 'power_confirmations', 'recovery_points', 'server_tls', 'tasks', 'vault'];

test('migrations create the schema from empty, and a restart applies nothing and keeps the data', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-cs-db-'));
  const path = join(dir, 'cs.db');
  try {
    const names = Object.keys(MIGRATIONS);
    assert.deepEqual(names, [...names].sort(), 'migration names sort in apply order');
    assert.ok(names.every((n) => /^\d{4}_[a-z0-9_]+$/.test(n)));

    const db = await openDatabase(path);
    assert.deepEqual(await migrate(db), names);
    const tables = (await db.introspection.getTables()).map((t) => t.name).sort();
    assert.deepEqual(tables, TABLES);
    const jobs = (await db.introspection.getTables()).find((t) => t.name === 'jobs');
    assert.deepEqual(jobs?.columns.map((c) => c.name).sort(), [
      'cancel_requested_at', 'created_at', 'error', 'finished_at', 'id', 'kind', 'outcome', 'params', 'resource', 'resumes', 'seq', 'started_at', 'state', 'updated_at', 'version',
    ]);
    await db.insertInto('fabrics').values({ id: 'f1', kind: 'physical', name: 'site-a', config: '{}', created_at: '2030-01-01T00:00:00.000Z' }).execute();
    assert.equal((await sql<{ journal_mode: string }>`pragma journal_mode`.execute(db)).rows[0]?.journal_mode, 'wal');
    assert.equal((await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(db)).rows[0]?.foreign_keys, 1);
    // Foreign keys are enforced: a machine needs its fabric.
    await assert.rejects(db.insertInto('machines').values({ id: 'm1', fabric_id: 'nope', name: 'vm', power: '{}', state: 'unknown', created_at: '2030-01-01T00:00:00.000Z' }).execute(), /FOREIGN KEY/);
    // Checks are enforced: an unknown component kind is refused by the database itself.
    await assert.rejects(
      sql`insert into components (id, kind, name, cert_serial, cert_not_after, token_hash, token_expires_at, registered_at) values ('c', 'robot', 'n', 's', 'x', 'h', 'x', 'x')`.execute(db),
      /CHECK/,
    );
    await db.destroy();
    assert.equal((await stat(path)).mode & 0o777, 0o600);

    const again = await openDatabase(path);
    try {
      assert.deepEqual(await migrate(again), []);
      assert.equal((await again.selectFrom('fabrics').select('name').executeTakeFirst())?.name, 'site-a');
      assert.deepEqual(
        (await again.selectFrom('kysely_migration' as never).select('name' as never).execute()).map((r) => (r as { name: string }).name),
        names,
      );
    } finally {
      await again.destroy();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a second live component with the same kind and name is refused; a revoked one does not count', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'boomerang-cs-db-'));
  const db = await openDatabase(join(dir, 'cs.db'));
  try {
    await migrate(db);
    const row = (id: string, revoked: string | null) => ({
      id,
      kind: 'agent' as const,
      name: 'vm1',
      cert_serial: id,
      cert_not_after: 'x',
      token_hash: 'h',
      token_expires_at: 'x',
      registered_at: 'x',
      last_heartbeat_at: null,
      health: null,
      alert_code: null,
      alert_since: null,
      revoked_at: revoked,
    });
    await db.insertInto('components').values(row('a', '2030-01-01T00:00:00.000Z')).execute();
    await db.insertInto('components').values(row('b', null)).execute();
    await assert.rejects(db.insertInto('components').values(row('c', null)).execute(), /UNIQUE/);
  } finally {
    await db.destroy();
    await rm(dir, { recursive: true, force: true });
  }
});
