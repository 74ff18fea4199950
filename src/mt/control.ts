import type { FastifyInstance } from 'fastify';
import { BoomerangError } from '../replication/errors.js';
import type { TlsMaterial } from '../replication/transport.js';
import { createControlApi } from '../runtime/control.js';
import type { AttachDiskRequest, MasterTarget } from './main.js';

/** The master target's HTTPS control API: status, disks, recovery points, restore, attach / release, wait. */
export function masterTargetControlApi(mt: MasterTarget, o: { material: TlsMaterial; token: string; component: string }): FastifyInstance {
  const app = createControlApi(o);
  app.get('/status', async () => mt.status());
  app.get('/disks', async () => ({ disks: mt.diskIds().map((id) => mt.diskStatus(id)) }));
  app.post<{ Body: AttachDiskRequest }>(
    '/disks',
    {
      schema: {
        body: {
          type: 'object',
          required: ['id', 'target', 'sizeBytes'],
          additionalProperties: false,
          properties: {
            id: { type: 'string', minLength: 1, maxLength: 128 },
            target: { type: 'string', minLength: 1, maxLength: 4096 },
            sizeBytes: { type: 'integer', minimum: 512 },
            adopt: { type: 'string', minLength: 1, maxLength: 4096 },
            blobSnapshots: { type: 'boolean' },
          },
        },
      },
    },
    async (req) => mt.attachDisk(req.body),
  );
  app.get<{ Params: { disk: string } }>('/disks/:disk', async (req) => mt.diskStatus(req.params.disk));
  app.post<{ Params: { disk: string } }>('/disks/:disk/freeze', async (req) => (await mt.freezeDisk(req.params.disk), { disk: req.params.disk, frozen: true }));
  app.post<{ Params: { disk: string }; Body: { point: string; outPath: string } }>(
    '/disks/:disk/restore-to',
    {
      schema: {
        body: {
          type: 'object',
          required: ['point', 'outPath'],
          additionalProperties: false,
          properties: { point: { type: 'string', minLength: 1, maxLength: 128 }, outPath: { type: 'string', minLength: 1, maxLength: 4096 } },
        },
      },
    },
    async (req) => mt.restoreDiskTo(req.params.disk, req.body.point, req.body.outPath),
  );
  app.post<{ Params: { disk: string }; Body: { handTo?: string } | undefined }>(
    '/disks/:disk/release',
    { schema: { body: { type: ['object', 'null'], additionalProperties: false, properties: { handTo: { type: 'string', minLength: 1, maxLength: 4096 } } } } },
    async (req) => (await mt.releaseDisk(req.params.disk, req.body?.handTo === undefined ? {} : { handTo: req.body.handTo }), { disk: req.params.disk, released: true }),
  );
  app.get<{ Params: { disk: string } }>('/disks/:disk/recovery-points', async (req) => ({ disk: req.params.disk, points: mt.listPoints(req.params.disk) }));
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
      const d = mt.disk(req.params.disk);
      const { outPath, inPlace } = req.body;
      const point = mt.resolvePoint(d, req.body.point);
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
    async (req) => ({ reached: await mt.waitFor(req.params.disk, req.query.lineage, req.query.seq, req.query.timeoutMs ?? 30_000), position: mt.disk(req.params.disk).position() }),
  );
  return app;
}
