import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { CsContext } from '../../context.js';
import { CreateFabric, createFabric, FabricView, getFabric, listFabrics } from '../../inventory/fabrics.js';
import { errors, IdParams, OPERATOR } from '../schemas.js';

export const fabricRoutes: FastifyPluginAsync<{ ctx: CsContext }> = async (app, { ctx }) => {
  app.get('/v1/fabrics', { schema: { summary: 'Fabrics', tags: ['fabrics'], operationId: 'listFabrics', security: OPERATOR, response: { 200: Type.Array(FabricView), ...errors(401) } } }, async () => listFabrics(ctx));

  app.get<{ Params: { id: string } }>(
    '/v1/fabrics/:id',
    { schema: { summary: 'One fabric', tags: ['fabrics'], operationId: 'getFabric', security: OPERATOR, params: IdParams, response: { 200: FabricView, ...errors(400, 401, 404) } } },
    async (req) => getFabric(ctx, req.params.id),
  );

  app.post<{ Body: CreateFabric }>(
    '/v1/fabrics',
    {
      schema: {
        summary: 'Add a fabric (physical for now)',
        tags: ['fabrics'],
        operationId: 'createFabric',
        security: OPERATOR,
        body: CreateFabric,
        response: { 201: FabricView, ...errors(400, 401, 409) },
      },
    },
    async (req, reply) => reply.code(201).send(await createFabric(ctx, req.body)),
  );
};
