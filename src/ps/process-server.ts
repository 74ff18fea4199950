import { errorMessage } from '../replication/errors.js';
import { createDataServer, type DataServer, type Endpoint, type TlsMaterial } from '../replication/transport.js';
import { createControlApi, listenControl } from '../runtime/control.js';
import type { Logger } from '../runtime/log.js';
import { tokenMatches } from '../security/token.js';
import { Forwarder } from './forwarder.js';
import { serveAgent, type IntakeStats } from './intake.js';
import { Spool } from './spool.js';
import { RecentBatches } from './recent.js';

export interface ProcessServerOptions {
  name: string;
  listen: Endpoint;
  spoolDir: string;
  /** @default 8 GiB */
  spoolMaxBytes?: number;
  masterTarget: Endpoint;
  material: TlsMaterial;
  token: string;
  /** @default 'none' */
  compression?: 'none' | 'deflate';
  /** @default 4 */
  windowPerDisk?: number;
  /** Spooled batches also kept in memory for forwarding. @default 256 MiB */
  recentBytes?: number;
  control?: Endpoint;
  log: Logger;
}

export const PS_DEFAULTS = Object.freeze({ spoolMaxBytes: 8 * 1024 ** 3, compression: 'none' as const, windowPerDisk: 4, recentBytes: 256 * 1024 ** 2 });

/** The process server: durable spool between agents and a master target. */
export class ProcessServer {
  private server: DataServer | undefined;
  private forwarder: Forwarder | undefined;
  private recent: RecentBatches | undefined;
  private control: ReturnType<typeof createControlApi> | undefined;
  readonly intake: IntakeStats = { batches: 0, bytes: 0, refused: 0 };
  endpoint: Endpoint | undefined;
  controlEndpoint: Endpoint | undefined;

  private constructor(
    private readonly o: ProcessServerOptions,
    readonly spool: Spool,
  ) {}

  static async start(o: ProcessServerOptions): Promise<ProcessServer> {
    const spool = await Spool.open({ dir: o.spoolDir, maxBytes: o.spoolMaxBytes ?? PS_DEFAULTS.spoolMaxBytes });
    const ps = new ProcessServer(o, spool);
    const recent = new RecentBatches(o.recentBytes ?? PS_DEFAULTS.recentBytes);
    ps.recent = recent;
    for (const q of spool.quarantined()) o.log.error({ file: q }, 'spooled batch failed verification and was quarantined');
    ps.forwarder = new Forwarder({
      endpoint: o.masterTarget,
      material: o.material,
      token: o.token,
      name: o.name,
      spool,
      recent,
      compression: o.compression ?? PS_DEFAULTS.compression,
      windowPerDisk: o.windowPerDisk ?? PS_DEFAULTS.windowPerDisk,
      log: (level, msg, fields) => o.log[level](fields ?? {}, msg),
    });
    ps.forwarder.start();
    ps.server = createDataServer({
      material: o.material,
      roles: ['agent'],
      authorize: (hello) => tokenMatches(hello.token, o.token),
      onConnection: async (conn) => {
        o.log.info({ agent: conn.hello.name }, 'agent connected');
        await serveAgent(conn, spool, recent, ps.intake, (msg, f) => o.log.warn(f ?? {}, msg));
      },
      onError: (err, peer) => o.log.warn({ peer, error: errorMessage(err) }, 'agent connection error'),
    });
    ps.endpoint = await ps.server.listen(o.listen);
    if (o.control) await ps.startControl(o.control);
    o.log.info({ listen: ps.endpoint, control: ps.controlEndpoint, spool: spool.usage() }, 'process server started');
    return ps;
  }

  status() {
    const usage = this.spool.usage();
    return {
      name: this.o.name,
      health: usage.state === 'ok' ? 'ok' : usage.state === 'nearly-full' ? 'warning' : 'critical',
      spool: usage,
      quarantined: this.spool.quarantined(),
      intake: this.intake,
      forwarding: { connected: this.forwarder?.connected ?? false, lastError: this.forwarder?.lastError, stats: this.forwarder?.stats, disks: this.forwarder?.status() },
      pending: this.pendingByDisk(),
    };
  }

  /** Batches and bytes the spool holds per disk (disks with none are left out). */
  pendingByDisk(): Record<string, { batches: number; bytes: number }> {
    return Object.fromEntries(this.spool.disks().map((id) => [id, this.spool.diskUsage(id)]));
  }

  /**
   * Resolves true once the PS holds no batch of the disk — every one spooled has been forwarded
   * and acknowledged by the MT (and none is being stored) — false after `timeoutMs`.
   */
  drainDisk(diskId: string, timeoutMs: number): Promise<boolean> {
    return this.spool.whenEmpty(diskId, timeoutMs);
  }

  /**
   * Deletes every spooled batch of the disk (after a failover their data is obsolete) and stops
   * forwarding and retrying them. Batches of the disk that arrive later are taken as usual.
   */
  async discardDisk(diskId: string): Promise<{ batches: number; bytes: number }> {
    this.forwarder?.holdDisk(diskId);
    let dropped: Awaited<ReturnType<Spool['discard']>>;
    try {
      dropped = await this.spool.discard(diskId);
    } finally {
      this.forwarder?.forgetDisk(diskId);
    }
    const { batches, bytes, entries } = dropped;
    for (const e of entries) this.recent?.delete(e);
    this.o.log.info({ disk: diskId, batches, bytes }, 'spooled batches of the disk discarded');
    return { batches, bytes };
  }

  private lastRate = { at: Date.now(), bytes: 0 };

  /** The PS section of a heartbeat: spool usage and intake throughput since the last report. */
  healthReport() {
    const usage = this.spool.usage();
    const now = Date.now();
    const rate = (this.intake.bytes - this.lastRate.bytes) / Math.max(0.001, (now - this.lastRate.at) / 1000);
    this.lastRate = { at: now, bytes: this.intake.bytes };
    return {
      ps: {
        spoolUsedBytes: usage.bytes,
        spoolCapacityBytes: usage.maxBytes,
        spoolState: usage.state,
        throughputBytesPerSecond: Math.round(rate),
        pendingBatches: usage.batches,
        quarantinedFiles: this.spool.quarantined().length,
      },
    };
  }

  private async startControl(endpoint: Endpoint): Promise<void> {
    const app = createControlApi({ material: this.o.material, token: this.o.token, component: `process server ${this.o.name}` });
    app.get('/status', async () => this.status());
    app.post<{ Params: { disk: string }; Querystring: { timeoutMs?: number } }>(
      '/disks/:disk/drain',
      { schema: { querystring: { type: 'object', properties: { timeoutMs: { type: 'integer', minimum: 0, maximum: 3_600_000 } } } } },
      async (req) => ({ drained: await this.drainDisk(req.params.disk, req.query.timeoutMs ?? 30_000) }),
    );
    app.post<{ Params: { disk: string } }>('/disks/:disk/discard', async (req) => this.discardDisk(req.params.disk));
    this.control = app;
    this.controlEndpoint = await listenControl(app, endpoint);
  }

  async stop(): Promise<void> {
    await this.control?.close();
    await this.server?.close();
    await this.forwarder?.stop();
    this.o.log.info('process server stopped');
  }
}
