import { chmod, mkdir, stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { errorMessage } from '../replication/errors.js';
import { buildApi } from './api/app.js';
import { CommandBus } from './components/commands.js';
import { HeartbeatMonitor } from './components/monitor.js';
import type { CsContext } from './context.js';
import { FabricClients } from './fabric-clients.js';
import { migrate, openDatabase, type Db } from './db/open.js';
import { inventoryRefresher } from './inventory/vsphere-inventory.js';
import { JobEngine } from './jobs/engine.js';
import { CsMetrics } from './metrics.js';
import { compileOptions, type ConfigurationServerOptions, type CsPaths } from './options.js';
import { openVault, readPassphrase } from './trust/vault.js';

export type { ConfigurationServerOptions } from './options.js';

/**
 * The configuration server's composition root: builds the database, vault, job engine, heartbeat
 * monitor, metrics and API from options, starts them in that order and stops them in reverse.
 */
export class ConfigurationServer {
  private stopping: Promise<void> | undefined;

  private constructor(
    /** Database, clock, logger and compiled options, for lifecycle code built on this server. */
    readonly context: CsContext,
    readonly jobs: JobEngine,
    readonly monitor: HeartbeatMonitor,
    /** Commands to components, for lifecycle code and tests. */
    readonly commands: CommandBus,
    /** The Fastify instance; `app.inject()` exercises the API without a socket. */
    readonly app: FastifyInstance,
    /** https://host:port of the API. */
    readonly url: string,
  ) {}

  get db(): Db {
    return this.context.db;
  }

  get paths(): CsPaths {
    return this.context.options.paths;
  }

  static async start(options: ConfigurationServerOptions): Promise<ConfigurationServer> {
    const o = compileOptions(options);
    const log = o.log;
    await ensurePrivateDir(o.paths.dataDir, log);
    const db = await openDatabase(o.paths.db);
    const undo: (() => Promise<void>)[] = [() => db.destroy()];
    try {
      const applied = await migrate(db);
      if (applied.length > 0) log.info({ migrations: applied }, 'database schema migrated');
      const vault = await openVault(db, o);
      const context: CsContext = Object.freeze({ db, clock: o.clock, log, options: o, fabrics: new FabricClients(db) });
      undo.unshift(() => context.fabrics.close());
      const commands = new CommandBus(context);
      const jobs = new JobEngine({
        db,
        clock: o.clock,
        log: log.child({ part: 'jobs' }),
        kinds: typeof o.jobKinds === 'function' ? o.jobKinds({ context, commands }) : o.jobKinds,
        maxRunningJobs: o.maxRunningJobs,
        progressIntervalMs: o.progressIntervalMs,
        stopTimeoutMs: o.stopTimeoutMs,
      });
      const monitor = new HeartbeatMonitor(context);
      const metrics = new CsMetrics(context, jobs);
      const app = await buildApi({ ctx: context, vault, jobs, metrics, commands });
      undo.unshift(() => app.close());
      await app.listen({ host: o.host, port: o.port });
      const { address, port } = app.server.address() as AddressInfo;
      const url = `https://${address.includes(':') ? `[${address}]` : address}:${port}`;
      // After listen: a resumed job may wait for components to call in.
      undo.unshift(() => jobs.stop());
      await jobs.start();
      monitor.start();
      undo.unshift(() => inventoryRefresher(context).stop());
      inventoryRefresher(context).start();
      log.info({ url, vault: vault.name, dataDir: o.paths.dataDir, ca: o.paths.ca }, 'configuration server started');
      return new ConfigurationServer(context, jobs, monitor, commands, app, url);
    } catch (err) {
      for (const step of undo) await step().catch(() => undefined);
      log.error({ error: errorMessage(err) }, 'configuration server failed to start');
      throw err;
    }
  }

  /** For `boomerang cs passphrase`; works whether or not a server is running on `dataDir`. */
  static readPassphrase(dataDir: string): Promise<string> {
    return readPassphrase(dataDir);
  }

  passphrase(): Promise<string> {
    return readPassphrase(this.paths.dataDir);
  }

  /** Jobs still running are left to be resumed by the next start, exactly as after a crash. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.monitor.stop();
      await this.app.close();
      await inventoryRefresher(this.context).stop();
      await this.jobs.stop();
      await this.context.fabrics.close();
      await this.context.db.destroy();
      this.context.log.info('configuration server stopped');
    })();
    return this.stopping;
  }
}

/** The data directory holds the CA key and the passphrase: owner only. */
async function ensurePrivateDir(dir: string, log: CsContext['log']): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const mode = (await stat(dir)).mode & 0o777;
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    await chmod(dir, 0o700);
    log.warn({ dir, was: mode.toString(8) }, 'data directory was readable by others; set to 0700');
  }
}
