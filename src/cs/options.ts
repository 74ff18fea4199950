import { hostname } from 'node:os';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { validateConfig } from '../runtime/config.js';
import { createLogger, type Logger } from '../runtime/log.js';
import { systemClock, type Clock } from './clock.js';
import type { CommandBus } from './components/commands.js';
import type { CsContext } from './context.js';
import type { JobKind } from './jobs/types.js';

/** What job kinds are built with. */
export interface CsServices {
  readonly context: CsContext;
  readonly commands: CommandBus;
}

/** Options of ConfigurationServer.start; every field but dataDir has a default. */
export interface ConfigurationServerOptions {
  /** Holds cs.db, ca.pem and admin.token; created with mode 0700. */
  dataDir: string;
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @default 9443 */
  port?: number;
  /** DNS names and IP addresses the API certificate is issued for. @default localhost, 127.0.0.1, ::1 and the host name */
  hostnames?: string[];
  /** @default 'boomerang' */
  vaultName?: string;
  /** The passphrase to create the vault with; ignored once the vault exists. @default generated */
  initialPassphrase?: string;
  /** Told to components at registration. @default 30 */
  heartbeatIntervalSeconds?: number;
  /** A component silent for longer raises 806 / 78022 / 78174. @default 3 × heartbeatIntervalSeconds */
  heartbeatTimeoutSeconds?: number;
  /** @default 30 days */
  componentTokenTtlSeconds?: number;
  /** @default 4 */
  maxRunningJobs?: number;
  /** Least time between two persisted progress updates of a task; 0 persists every one. @default 250 */
  progressIntervalMs?: number;
  /** How long stop() waits for aborted tasks to return. @default 10000 */
  stopTimeoutMs?: number;
  /**
   * The job kinds this server can run, or a function that builds them from the server's services
   * (the lifecycle's kinds send commands to components). @default none
   */
  jobKinds?: readonly JobKind[] | ((services: CsServices) => readonly JobKind[]);
  /** How long a command to a component may wait for its answer. @default 600 */
  commandTimeoutSeconds?: number;
  /** How long reprotect waits for the recovery machine's agent to register (95226). @default 900 */
  agentRegistrationTimeoutSeconds?: number;
  /** How long enable and reprotect wait for a resync to finish. @default 86400 */
  resyncTimeoutSeconds?: number;
  /** How often jobs re-read what components report while they wait. @default 1000 */
  lifecyclePollMs?: number;
  /** How often the inventory of every vsphere fabric is read again (on the CS clock); 0 turns it off. @default 900 */
  fabricRefreshIntervalSeconds?: number;
  /** Longest a vCenter login or inventory read may take. @default 300 */
  fabricRefreshTimeoutSeconds?: number;
  /** @default the system clock */
  clock?: Clock;
  /** @default a pino logger named "cs" */
  logger?: Logger;
}

const Plain = Type.Object({
  dataDir: Type.String({ minLength: 1 }),
  host: Type.String({ minLength: 1, default: '127.0.0.1' }),
  port: Type.Integer({ minimum: 0, maximum: 65_535, default: 9443 }),
  hostnames: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  vaultName: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$', default: 'boomerang' }),
  initialPassphrase: Type.Optional(Type.String({ minLength: 12, maxLength: 256 })),
  heartbeatIntervalSeconds: Type.Number({ exclusiveMinimum: 0, default: 30 }),
  heartbeatTimeoutSeconds: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  componentTokenTtlSeconds: Type.Integer({ minimum: 60, default: 30 * 86_400 }),
  maxRunningJobs: Type.Integer({ minimum: 1, maximum: 256, default: 4 }),
  progressIntervalMs: Type.Integer({ minimum: 0, default: 250 }),
  stopTimeoutMs: Type.Integer({ minimum: 0, default: 10_000 }),
  commandTimeoutSeconds: Type.Number({ exclusiveMinimum: 0, default: 600 }),
  agentRegistrationTimeoutSeconds: Type.Number({ minimum: 0, default: 900 }),
  resyncTimeoutSeconds: Type.Number({ exclusiveMinimum: 0, default: 86_400 }),
  lifecyclePollMs: Type.Integer({ minimum: 10, maximum: 60_000, default: 1000 }),
  fabricRefreshIntervalSeconds: Type.Number({ minimum: 0, default: 900 }),
  fabricRefreshTimeoutSeconds: Type.Number({ exclusiveMinimum: 0, default: 300 }),
});

export const CS_FILES = Object.freeze({ db: 'cs.db', ca: 'ca.pem', adminToken: 'admin.token' });

export interface CsPaths {
  dataDir: string;
  db: string;
  ca: string;
  adminToken: string;
}

export interface CompiledOptions {
  readonly paths: CsPaths;
  readonly host: string;
  readonly port: number;
  readonly hostnames: readonly string[];
  readonly vaultName: string;
  readonly initialPassphrase: string | undefined;
  readonly heartbeatIntervalSeconds: number;
  readonly heartbeatTimeoutSeconds: number;
  readonly componentTokenTtlSeconds: number;
  readonly maxRunningJobs: number;
  readonly progressIntervalMs: number;
  readonly stopTimeoutMs: number;
  readonly jobKinds: readonly JobKind[] | ((services: CsServices) => readonly JobKind[]);
  readonly lifecycle: { readonly commandTimeoutMs: number; readonly agentRegistrationTimeoutMs: number; readonly resyncTimeoutMs: number; readonly pollMs: number };
  readonly fabricRefresh: { readonly intervalMs: number; readonly timeoutMs: number };
  readonly clock: Clock;
  readonly log: Logger;
}

/** The host name is left out when it is not a valid DNS name (the certificate would be refused). */
function defaultHostnames(): string[] {
  const names = ['localhost', '127.0.0.1', '::1'];
  const own = hostname();
  if (own !== 'localhost' && /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(own)) names.push(own);
  return names;
}

/** Validates once, fills defaults, freezes; a bad option fails start with every problem listed. */
export function compileOptions(options: ConfigurationServerOptions): CompiledOptions {
  const { jobKinds, clock, logger, ...plain } = options;
  const o = validateConfig(plain, Plain, 'of the configuration server');
  return Object.freeze({
    paths: Object.freeze({
      dataDir: o.dataDir,
      db: join(o.dataDir, CS_FILES.db),
      ca: join(o.dataDir, CS_FILES.ca),
      adminToken: join(o.dataDir, CS_FILES.adminToken),
    }),
    host: o.host,
    port: o.port,
    hostnames: o.hostnames ?? defaultHostnames(),
    vaultName: o.vaultName,
    initialPassphrase: o.initialPassphrase,
    heartbeatIntervalSeconds: o.heartbeatIntervalSeconds,
    heartbeatTimeoutSeconds: o.heartbeatTimeoutSeconds ?? 3 * o.heartbeatIntervalSeconds,
    componentTokenTtlSeconds: o.componentTokenTtlSeconds,
    maxRunningJobs: o.maxRunningJobs,
    progressIntervalMs: o.progressIntervalMs,
    stopTimeoutMs: o.stopTimeoutMs,
    jobKinds: typeof jobKinds === 'function' ? jobKinds : Object.freeze([...(jobKinds ?? [])]),
    lifecycle: Object.freeze({
      commandTimeoutMs: o.commandTimeoutSeconds * 1000,
      agentRegistrationTimeoutMs: o.agentRegistrationTimeoutSeconds * 1000,
      resyncTimeoutMs: o.resyncTimeoutSeconds * 1000,
      pollMs: o.lifecyclePollMs,
    }),
    fabricRefresh: Object.freeze({ intervalMs: o.fabricRefreshIntervalSeconds * 1000, timeoutMs: o.fabricRefreshTimeoutSeconds * 1000 }),
    clock: clock ?? systemClock,
    log: logger ?? createLogger('cs'),
  });
}
