import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { CsContext } from '../../context.js';
import { ITEM_STATES } from '../../domain/item-state.js';
import { DiskId } from '../../domain/names.js';
import { CreateItem, createItem, getItem, ItemView, listItems } from '../../inventory/items.js';
import { listRecoveryPoints, RecoveryPointView } from '../../inventory/recovery-points.js';
import type { JobEngine } from '../../jobs/engine.js';
import { errors, IdParams, JobViewSchema, Limit, OPERATOR } from '../schemas.js';

export const itemRoutes: FastifyPluginAsync<{ ctx: CsContext; jobs: JobEngine }> = async (app, { ctx, jobs }) => {
  app.get<{ Querystring: { state?: string } }>(
    '/v1/items',
    {
      schema: {
        summary: 'Protected items',
        tags: ['items'],
        operationId: 'listItems',
        security: OPERATOR,
        querystring: Type.Object({ state: Type.Optional(Type.Union(ITEM_STATES.map((s) => Type.Literal(s)))) }, { additionalProperties: false }),
        response: { 200: Type.Array(ItemView), ...errors(400, 401) },
      },
    },
    async (req) => listItems(ctx, req.query),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/items/:id',
    { schema: { summary: 'One protected item', tags: ['items'], operationId: 'getItem', security: OPERATOR, params: IdParams, response: { 200: ItemView, ...errors(400, 401, 404) } } },
    async (req) => getItem(ctx, req.params.id),
  );

  app.post<{ Body: CreateItem }>(
    '/v1/items',
    {
      schema: {
        summary: 'Enable replication of a machine: creates the item and starts its initial replication job',
        tags: ['items'],
        operationId: 'enableReplication',
        security: OPERATOR,
        body: CreateItem,
        response: { 202: Type.Object({ item: ItemView, job: JobViewSchema }), ...errors(400, 401, 404, 409, 501) },
      },
    },
    async (req, reply) => reply.code(202).send(await createItem(ctx, jobs, req.body)),
  );

  app.get<{ Params: { id: string }; Querystring: { diskId?: string; limit: number } }>(
    '/v1/items/:id/recovery-points',
    {
      schema: {
        summary: "Recovery points of an item's disks, newest first",
        tags: ['recovery points'],
        operationId: 'listRecoveryPoints',
        security: OPERATOR,
        params: IdParams,
        querystring: Type.Object({ diskId: Type.Optional(DiskId), limit: Limit }, { additionalProperties: false }),
        response: { 200: Type.Array(RecoveryPointView), ...errors(400, 401, 404) },
      },
    },
    async (req) => listRecoveryPoints(ctx, req.params.id, req.query),
  );
};
