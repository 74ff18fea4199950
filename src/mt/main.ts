import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdir } from 'node:fs/promises';
import { EventEmitter } from 'node:events';
import { BoomerangError, errorMessage } from '../replication/errors.js';
import { createDataServer, type DataServer, type Endpoint, type TlsMaterial } from '../replication/transport.js';
import { createControlApi, listenControl } from '../runtime/control.js';
import { volumeFacts } from '../runtime/volume.js';
import type { Logger } from '../runtime/log.js';
import { tokenMatches } from '../security/token.js';
import { ReplicaDisk } from './replica.js';
import { RpoWindow, servePs, type ApplyStats } from './server.js';

export interface MtDiskConfig {
  id: string;
  /** The target disk file the replica is written to. */
  target: string;
  sizeBytes: number;
}

export interface MasterTargetOptions {
  name: string;
  listen: Endpoint;
  /** The retention volume: one journal directory per disk below it. */
  retentionDir: string;
  disks: MtDiskConfig[];
  /** @default 24 h */
  retentionMs?: number;
  /** Journal size cap per disk. @default 16 GiB */
  maxJournalBytes?: number;
  material: TlsMaterial;
  token: string;
  control?: Endpoint;
  log: Logger;
}

export const MT_DEFAULTS = Object.freeze({ retentionMs: 24 * 3600 * 1000, maxJournalBytes: 16 * 1024 ** 3 });

/** The master target: applies batches to target disks behind a write-ahead undo journal. */
export class MasterTarget {
  readonly disks = new Map<string, ReplicaDisk>();
  private readonly rpo = new Map<string, RpoWindow>();
  readonly applyStats: ApplyStats = { batches: 0, bytes: 0, refused: 0, lastRefusal: undefined };
  private readonly applied = new EventEmitter();
  private server: DataServer | undefined;
  private control: ReturnType<typeof createControlApi> | undefined;
  endpoint: Endpoint | undefined;
  controlEndpoint: Endpoint | undefined;

  private constructor(private readonly o: MasterTargetOptions) {
    this.applied.setMaxListeners(0);
  }

  static async start(o: MasterTargetOptions): Promise<MasterTarget> {
    const mt = new MasterTarget(o);
    try {
      await mt.open();
    } catch (err) {
      await mt.stop().catch(() => undefined);
      throw err;
    }
    return mt;
  }

  private async open(): Promise<void> {
    const o = this.o;
    await mkdir(o.retentionDir, { recursive: true, mode: 0o700 });
    for (const d of o.disks) {
      const replica = await ReplicaDisk.open({
        diskId: d.id,
        targetPath: d.target,
        retentionDir: join(o.retentionDir, d.id),
        size: d.sizeBytes,
        retentionMs: o.retentionMs ?? MT_DEFAULTS.retentionMs,
        maxJournalBytes: o.maxJournalBytes ?? MT_DEFAULTS.maxJournalBytes,
      });
      this.disks.set(d.id, replica);
      this.rpo.set(d.id, new RpoWindow());
      o.log.info({ disk: d.id, position: replica.position(), points: replica.recoveryPoints().length }, 'replica opened');
    }
    this.server = createDataServer({
      material: o.material,
      roles: ['ps'],
      authorize: (hello) => tokenMatches(hello.token, o.token),
      onConnection: async (conn) => {
        o.log.info({ ps: conn.hello.name }, 'process server connected');
        await servePs(conn, this.disks, this.rpo, this.applyStats, (msg, f) => o.log.warn(f ?? {}, msg), (id) => this.applied.emit(id));
      },
      onError: (err, peer) => o.log.warn({ peer, error: errorMessage(err) }, 'process server connection error'),
    });
    this.endpoint = await this.server.listen(o.listen);
    if (o.control) await this.startControl(o.control);
    o.log.info({ listen: this.endpoint, control: this.controlEndpoint }, 'master target started');
  }

  disk(id: string): ReplicaDisk {
    const d = this.disks.get(id);
    if (!d) throw new BoomerangError('UNKNOWN_DISK', `master target ${this.o.name} has no disk ${id}`);
    return d;
  }

  /** Resolves once the disk has applied `seq` of `lineage` (or a later lineage), false on timeout. */
  waitFor(id: string, lineage: string, seq: number, timeoutMs: number): Promise<boolean> {
    const d = this.disk(id);
    const reached = () => {
      const p = d.position();
      return p !== undefined && p.lineage === lineage && p.lastSeq >= seq;
    };
    if (reached()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onApplied = () => {
        if (!reached()) return;
        cleanup();
        resolve(true);
      };
      const timer = setTimeout(() => {
        cleanup();
        resolve(false);
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.applied.off(id, onApplied);
      };
      this.applied.on(id, onApplied);
    });
  }

  /** Operators name a point by its id or by the id of the bookmark that made it. */
  private resolvePoint(d: ReplicaDisk, point: string): string {
    if (point === 'latest') return point;
    const found = d.recoveryPoints().find((p) => p.id === point || p.bookmarkId === point);
    if (!found) throw new BoomerangError('UNKNOWN_POINT', `disk ${d.diskId} has no recovery point or bookmark ${point} (pruned, discarded or never taken)`);
    return found.id;
  }

  status() {
    return {
      name: this.o.name,
      apply: this.applyStats,
      disks: Object.fromEntries(
        [...this.disks].map(([id, d]) => [id, { position: d.position(), recoveryPoints: d.recoveryPoints().length, health: d.health(), rpoMs: this.rpo.get(id)?.summary() }]),
      ),
    };
  }

  /** The MT section of a heartbeat: retention volume eligibility facts and each journal's span. */
  async healthReport() {
    const volume = await volumeFacts(this.o.retentionDir, {
      targets: this.o.disks.map((d) => dirname(d.target)),
      cacheOrInstall: [fileURLToPath(new URL('.', import.meta.url))],
    });
    return {
      mt: {
        platform: process.platform === 'win32' ? ('windows' as const) : ('linux' as const),
        volumes: [volume],
        journals: [...this.disks].flatMap(([diskId, d]) => {
          const p = d.position();
          if (!p) return [];
          const h = d.health();
          return [
            {
              diskId,
              lineage: p.lineage,
              lastSeq: p.lastSeq,
              bytes: h.journalBytes,
              ...(h.oldestPointTime === undefined ? {} : { oldestPointTime: new Date(h.oldestPointTime).toISOString() }),
              ...(h.newestPointTime === undefined ? {} : { newestPointTime: new Date(h.newestPointTime).toISOString() }),
            },
          ];
        }),
      },
    };
  }

  private async startControl(endpoint: Endpoint): Promise<void> {
    const app = createControlApi({ material: this.o.material, token: this.o.token, component: `master target ${this.o.name}` });
    app.get('/status', async () => this.status());
    app.get<{ Params: { disk: string } }>('/disks/:disk/recovery-points', async (req) => ({ disk: req.params.disk, points: this.disk(req.params.disk).recoveryPoints() }));
    app.post<{ Params: { disk: string }; Body: { point: string; outPath?: string; inPlace?: boolean } }>(
      '/disks/:disk/restore',
      {
        schema: {
          body: {
            type: 'object',
            required: ['point'],
            additionalProperties: false,
            properties: { point: { type: 'string', minLength: 1, maxLength: 64 }, outPath: { type: 'string', minLength: 1, maxLength: 4096 }, inPlace: { type: 'boolean' } },
          },
        },
      },
      async (req) => {
        const d = this.disk(req.params.disk);
        const { outPath, inPlace } = req.body;
        const point = this.resolvePoint(d, req.body.point);
        if (inPlace === true) {
          await d.restoreInPlace(point);
          return { disk: req.params.disk, point, inPlace: true };
        }
        if (!outPath) throw new BoomerangError('BAD_REQUEST', 'outPath is required unless inPlace is true');
        await d.restore(point, outPath);
        return { disk: req.params.disk, point, outPath };
      },
    );
    app.get<{ Params: { disk: string }; Querystring: { lineage: string; seq: number; timeoutMs?: number } }>(
      '/disks/:disk/wait',
      {
        schema: {
          querystring: {
            type: 'object',
            required: ['lineage', 'seq'],
            properties: { lineage: { type: 'string' }, seq: { type: 'integer', minimum: 0 }, timeoutMs: { type: 'integer', minimum: 0, maximum: 600_000 } },
          },
        },
      },
      async (req) => ({ reached: await this.waitFor(req.params.disk, req.query.lineage, req.query.seq, req.query.timeoutMs ?? 30_000), position: this.disk(req.params.disk).position() }),
    );
    this.control = app;
    this.controlEndpoint = await listenControl(app, endpoint);
  }

  async stop(): Promise<void> {
    await this.control?.close();
    await this.server?.close();
    for (const d of this.disks.values()) await d.close();
    this.o.log.info('master target stopped');
  }
}
