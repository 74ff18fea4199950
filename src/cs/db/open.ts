import { chmod, open as openFile } from 'node:fs/promises';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import { BoomerangError, errorMessage } from '../../replication/errors.js';
import { migrationProvider } from './migrations.js';
import type { Database } from './schema.js';

export type Db = Kysely<Database>;

/**
 * Opens the embedded SQLite database. Everything SQLite-specific lives here (pragmas, file mode);
 * the rest of the CS talks to Kysely only.
 */
export async function openDatabase(path: string, options: { readonly?: boolean } = {}): Promise<Db> {
  if (!options.readonly) {
    // Created 0600 before SQLite opens it: the file holds the CA key and the vault passphrase,
    // and SQLite gives its -wal and -shm files the same mode.
    const fh = await openFile(path, 'a', 0o600);
    await fh.close();
    await chmod(path, 0o600);
  }
  let sqlite: BetterSqlite3.Database;
  try {
    sqlite = new BetterSqlite3(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  } catch (err) {
    throw new BoomerangError('DB_OPEN', `cannot open the configuration database ${path}: ${errorMessage(err)}`, { cause: err });
  }
  if (!options.readonly) {
    sqlite.pragma('journal_mode = WAL');
    // Job and task transitions are the crash-recovery record: each commit reaches the disk.
    sqlite.pragma('synchronous = FULL');
  }
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
}

/** Applies every migration not applied yet; returns the names it applied. */
export async function migrate(db: Db): Promise<string[]> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new BoomerangError('DB_MIGRATION', `schema migration ${failed} failed: ${errorMessage(error)}`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
