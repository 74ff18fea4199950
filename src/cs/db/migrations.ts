import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

/**
 * Schema migrations, in code so they ship with the build. Names are zero-padded so name order is
 * apply order. A released migration is never edited: change the schema with a new one.
 * Only portable DDL (types text/integer/bigint/real, standard CHECK and partial indexes), so the
 * same list runs on PostgreSQL.
 */

const initial: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('vault')
      .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('passphrase', 'text', (c) => c.notNull())
      .addColumn('passphrase_hash', 'text', (c) => c.notNull())
      .addColumn('passphrase_salt', 'text', (c) => c.notNull())
      .addColumn('admin_token_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('ca')
      .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
      .addColumn('cert_pem', 'text', (c) => c.notNull())
      .addColumn('key_pem', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('server_tls')
      .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
      .addColumn('cert_pem', 'text', (c) => c.notNull())
      .addColumn('key_pem', 'text', (c) => c.notNull())
      .addColumn('names', 'text', (c) => c.notNull())
      .addColumn('not_after', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('components')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('agent', 'ps', 'mt')`))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('cert_serial', 'text', (c) => c.notNull())
      .addColumn('cert_not_after', 'text', (c) => c.notNull())
      .addColumn('token_hash', 'text', (c) => c.notNull())
      .addColumn('token_expires_at', 'text', (c) => c.notNull())
      .addColumn('registered_at', 'text', (c) => c.notNull())
      .addColumn('last_heartbeat_at', 'text')
      .addColumn('health', 'text')
      .addColumn('alert_code', 'text')
      .addColumn('alert_since', 'text')
      .addColumn('revoked_at', 'text')
      .execute();
    // One live identity per (kind, name); revoked rows stay as history.
    await db.schema.createIndex('components_live_name').on('components').columns(['kind', 'name']).unique().where(sql.ref('revoked_at'), 'is', null).execute();

    await db.schema
      .createTable('fabrics')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('physical', 'vsphere', 'azure')`))
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('config', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('machines')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('fabric_id', 'text', (c) => c.notNull().references('fabrics.id').onDelete('restrict'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('power', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('unknown', 'running', 'stopped')`))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('machines_fabric_name', ['fabric_id', 'name'])
      .execute();

    await db.schema
      .createTable('policies')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('pair_id', 'text', (c) => c.notNull())
      .addColumn('direction', 'text', (c) => c.notNull().check(sql`direction in ('forward', 'failback')`))
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('rpo_threshold_s', 'integer', (c) => c.notNull())
      .addColumn('retention_h', 'integer', (c) => c.notNull())
      .addColumn('app_consistent_min', 'integer', (c) => c.notNull())
      .addColumn('crash_consistent_min', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('policies_pair_direction', ['pair_id', 'direction'])
      .execute();

    await db.schema
      .createTable('items')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('machine_id', 'text', (c) => c.notNull().references('machines.id').onDelete('restrict'))
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('direction', 'text', (c) => c.notNull().check(sql`direction in ('forward', 'failback')`))
      .addColumn('forward_policy_id', 'text', (c) => c.notNull().references('policies.id').onDelete('restrict'))
      .addColumn('failback_policy_id', 'text', (c) => c.notNull().references('policies.id').onDelete('restrict'))
      .addColumn('agent_id', 'text', (c) => c.notNull().references('components.id').onDelete('restrict'))
      .addColumn('ps_id', 'text', (c) => c.notNull().references('components.id').onDelete('restrict'))
      .addColumn('mt_id', 'text', (c) => c.notNull().references('components.id').onDelete('restrict'))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('items_machine').on('items').column('machine_id').execute();

    await db.schema
      .createTable('item_disks')
      .addColumn('item_id', 'text', (c) => c.notNull().references('items.id').onDelete('cascade'))
      .addColumn('disk_id', 'text', (c) => c.notNull())
      .addColumn('size_bytes', 'bigint', (c) => c.notNull())
      .addColumn('source_path', 'text', (c) => c.notNull())
      .addColumn('target_path', 'text', (c) => c.notNull())
      .addColumn('lineage', 'text')
      .addColumn('last_seq', 'bigint')
      .addPrimaryKeyConstraint('item_disks_pk', ['item_id', 'disk_id'])
      .execute();
    await db.schema.createIndex('item_disks_disk').on('item_disks').column('disk_id').execute();

    await db.schema
      .createTable('recovery_points')
      .addColumn('item_id', 'text', (c) => c.notNull())
      .addColumn('disk_id', 'text', (c) => c.notNull())
      .addColumn('point_id', 'text', (c) => c.notNull())
      .addColumn('bookmark_id', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('crash', 'app', 'group')`))
      .addColumn('time', 'text', (c) => c.notNull())
      .addColumn('lineage', 'text', (c) => c.notNull())
      .addColumn('seq', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('recovery_points_pk', ['item_id', 'disk_id', 'point_id'])
      .addForeignKeyConstraint('recovery_points_disk', ['item_id', 'disk_id'], 'item_disks', ['item_id', 'disk_id'], (c) => c.onDelete('cascade'))
      .execute();
    await db.schema.createIndex('recovery_points_time').on('recovery_points').columns(['item_id', 'time']).execute();

    await db.schema
      .createTable('jobs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('queued', 'running', 'compensating', 'succeeded', 'failed', 'cancelled')`))
      .addColumn('params', 'text', (c) => c.notNull())
      .addColumn('resource', 'text')
      .addColumn('outcome', 'text')
      .addColumn('error', 'text')
      .addColumn('cancel_requested_at', 'text')
      .addColumn('resumes', 'integer', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('seq', 'bigint', (c) => c.notNull().unique())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('finished_at', 'text')
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('jobs_state').on('jobs').columns(['state', 'seq']).execute();
    await db.schema.createIndex('jobs_resource').on('jobs').columns(['resource', 'seq']).execute();

    await db.schema
      .createTable('tasks')
      .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
      .addColumn('idx', 'integer', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('pending', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')`))
      .addColumn('resumable', 'integer', (c) => c.notNull())
      .addColumn('runs', 'integer', (c) => c.notNull())
      .addColumn('progress_done', 'real', (c) => c.notNull())
      .addColumn('progress_total', 'real', (c) => c.notNull())
      .addColumn('progress_detail', 'text')
      .addColumn('details', 'text', (c) => c.notNull())
      .addColumn('error', 'text')
      .addColumn('started_at', 'text')
      .addColumn('finished_at', 'text')
      .addPrimaryKeyConstraint('tasks_pk', ['job_id', 'idx'])
      .execute();
  },
};

/**
 * The lifecycle: the components and machine of the failback direction, the recovery point a
 * failover chose, which master target reported a recovery point, the commands jobs send to
 * components (delivered when the component polls, so components need no inbound connection),
 * and the power operations a person carries out and confirms.
 */
const lifecycle: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('items').addColumn('recovery_machine_id', 'text', (c) => c.references('machines.id').onDelete('restrict')).execute();
    await db.schema.alterTable('items').addColumn('failback_agent_name', 'text').execute();
    await db.schema.alterTable('items').addColumn('failback_agent_id', 'text', (c) => c.references('components.id').onDelete('restrict')).execute();
    await db.schema.alterTable('items').addColumn('failback_ps_id', 'text', (c) => c.references('components.id').onDelete('restrict')).execute();
    await db.schema.alterTable('items').addColumn('failback_mt_id', 'text', (c) => c.references('components.id').onDelete('restrict')).execute();
    await db.schema.alterTable('items').addColumn('failover_point', 'text').execute();
    await db.schema.alterTable('recovery_points').addColumn('mt_id', 'text').execute();

    await db.schema
      .createTable('commands')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('component_id', 'text', (c) => c.notNull().references('components.id').onDelete('cascade'))
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('params', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('pending', 'done', 'failed', 'expired')`))
      .addColumn('result', 'text')
      .addColumn('error', 'text')
      .addColumn('job_id', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('finished_at', 'text')
      .execute();
    await db.schema.createIndex('commands_pending').on('commands').columns(['component_id', 'state', 'created_at']).execute();

    // Machines whose power is switched by a person: the job waits for the confirmation.
    await db.schema
      .createTable('power_confirmations')
      .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
      .addColumn('machine_id', 'text', (c) => c.notNull().references('machines.id').onDelete('cascade'))
      .addColumn('action', 'text', (c) => c.notNull().check(sql`action in ('start', 'stop')`))
      .addColumn('requested_at', 'text', (c) => c.notNull())
      .addColumn('confirmed_at', 'text')
      .addPrimaryKeyConstraint('power_confirmations_pk', ['job_id', 'machine_id', 'action'])
      .execute();
  },
};

/**
 * vCenter fabrics: the account's password (a secret: its own table, so no fabric query returns
 * it by accident) and the last inventory read from vCenter, with how that read went.
 */
const fabricInventory: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('fabric_secrets')
      .addColumn('fabric_id', 'text', (c) => c.primaryKey().references('fabrics.id').onDelete('cascade'))
      .addColumn('password', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('fabric_inventory')
      .addColumn('fabric_id', 'text', (c) => c.primaryKey().references('fabrics.id').onDelete('cascade'))
      .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('pending', 'ok', 'lacking-privileges', 'failed')`))
      .addColumn('refreshed_at', 'text')
      .addColumn('attempted_at', 'text')
      .addColumn('error', 'text')
      .addColumn('snapshot', 'text')
      .execute();
  },
};

/** Policies may ask page-blob replicas to keep recovery points as blob snapshots too. */
const policyBlobSnapshots: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('policies').addColumn('blob_snapshots', 'integer', (c) => c.notNull().defaultTo(0).check(sql`blob_snapshots in (0, 1)`)).execute();
  },
};

export const MIGRATIONS: Readonly<Record<string, Migration>> = Object.freeze({
  '0001_initial': initial,
  '0002_lifecycle': lifecycle,
  '0003_fabric_inventory': fabricInventory,
  '0004_policy_blob_snapshots': policyBlobSnapshots,
});

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => ({ ...MIGRATIONS }),
};
