import type { FastifyInstance } from 'fastify';
import type { BookmarkKind } from '../replication/batch.js';
import type { Endpoint, TlsMaterial } from '../replication/transport.js';
import { createControlApi } from '../runtime/control.js';
import type { Agent } from './agent.js';

/** The agent's HTTPS control API: status, bookmarks on request, protect / unprotect, drain. */
export function agentControlApi(agent: Agent, o: { material: TlsMaterial; token: string; component: string }): FastifyInstance {
  const app = createControlApi(o);
  app.get('/status', async () => agent.status());
  app.post<{ Params: { disk: string }; Body: { kind?: BookmarkKind; id?: string } | undefined }>(
    '/disks/:disk/bookmarks',
    {
      schema: {
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: { kind: { type: 'string', enum: ['crash', 'app', 'group'] }, id: { type: 'string', minLength: 1, maxLength: 64 } },
        },
      },
    },
    async (req) => agent.bookmark(req.params.disk, req.body?.kind ?? 'crash', req.body?.id),
  );
  app.post<{ Params: { disk: string }; Querystring: { newLineage?: boolean }; Body: { resyncTarget?: Endpoint } | undefined }>(
    '/disks/:disk/protect',
    {
      schema: {
        querystring: { type: 'object', properties: { newLineage: { type: 'boolean' } } },
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: {
            resyncTarget: {
              type: 'object',
              required: ['host', 'port'],
              additionalProperties: false,
              properties: { host: { type: 'string', minLength: 1, maxLength: 253 }, port: { type: 'integer', minimum: 1, maximum: 65535 } },
            },
          },
        },
      },
    },
    async (req) => agent.protectDisk(req.params.disk, { newLineage: req.query.newLineage === true, ...(req.body?.resyncTarget ? { resyncTarget: req.body.resyncTarget } : {}) }),
  );
  app.post<{ Params: { disk: string }; Querystring: { timeoutMs?: number } }>(
    '/disks/:disk/unprotect',
    { schema: { querystring: { type: 'object', properties: { timeoutMs: { type: 'integer', minimum: 0, maximum: 3_600_000 } } } } },
    async (req) => agent.unprotectDisk(req.params.disk, req.query.timeoutMs ?? 30_000),
  );
  app.post<{ Querystring: { timeoutMs?: number } }>(
    '/drain',
    { schema: { querystring: { type: 'object', properties: { timeoutMs: { type: 'integer', minimum: 0, maximum: 3_600_000 } } } } },
    async (req) => ({ drained: await agent.drain(req.query.timeoutMs ?? 30_000) }),
  );
  return app;
}
