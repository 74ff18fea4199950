import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ComponentView, getComponent, listComponents, revokeComponent } from '../../components/views.js';
import type { CsContext } from '../../context.js';
import type { ComponentKind } from '../../db/schema.js';
import { errors, IdParams, OPERATOR } from '../schemas.js';

export const componentRoutes: FastifyPluginAsync<{ ctx: CsContext }> = async (app, { ctx }) => {
  app.get<{ Querystring: { kind?: ComponentKind } }>(
    '/v1/components',
    {
      schema: {
        summary: 'Registered components with their health and heartbeat alerts (806, 78022, 78174)',
        tags: ['components'],
        operationId: 'listComponents',
        security: OPERATOR,
        querystring: Type.Object({ kind: Type.Optional(Type.Union([Type.Literal('agent'), Type.Literal('ps'), Type.Literal('mt')])) }, { additionalProperties: false }),
        response: { 200: Type.Array(ComponentView), ...errors(400, 401) },
      },
    },
    async (req) => listComponents(ctx, req.query),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/components/:id',
    {
      schema: { summary: 'One component', tags: ['components'], operationId: 'getComponent', security: OPERATOR, params: IdParams, response: { 200: ComponentView, ...errors(400, 401, 404) } },
    },
    async (req) => getComponent(ctx, req.params.id),
  );

  app.post<{ Params: { id: string } }>(
    '/v1/components/:id/revoke',
    {
      schema: {
        summary: 'Revoke a component: its token stops working at once',
        tags: ['components'],
        operationId: 'revokeComponent',
        security: OPERATOR,
        params: IdParams,
        response: { 200: ComponentView, ...errors(400, 401, 404) },
      },
    },
    async (req) => revokeComponent(ctx, req.params.id),
  );
};
