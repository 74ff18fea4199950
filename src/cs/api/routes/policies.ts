import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { CsContext } from '../../context.js';
import { CreatePolicy, createPolicyPair, getPolicy, listPolicies, PatchPolicy, PolicyPairView, PolicyView, updatePolicy } from '../../inventory/policies.js';
import { errors, IdParams, OPERATOR } from '../schemas.js';

export const policyRoutes: FastifyPluginAsync<{ ctx: CsContext }> = async (app, { ctx }) => {
  app.get('/v1/policies', { schema: { summary: 'Policies, forward and failback', tags: ['policies'], operationId: 'listPolicies', security: OPERATOR, response: { 200: Type.Array(PolicyView), ...errors(401) } } }, async () =>
    listPolicies(ctx),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/policies/:id',
    { schema: { summary: 'One policy', tags: ['policies'], operationId: 'getPolicy', security: OPERATOR, params: IdParams, response: { 200: PolicyView, ...errors(400, 401, 404) } } },
    async (req) => getPolicy(ctx, req.params.id),
  );

  app.post<{ Body: CreatePolicy }>(
    '/v1/policies',
    {
      schema: {
        summary: 'Create a policy pair: the forward policy and its failback policy',
        tags: ['policies'],
        operationId: 'createPolicyPair',
        security: OPERATOR,
        body: CreatePolicy,
        response: { 201: PolicyPairView, ...errors(400, 401, 409) },
      },
    },
    async (req, reply) => reply.code(201).send(await createPolicyPair(ctx, req.body)),
  );

  app.patch<{ Params: { id: string }; Body: PatchPolicy }>(
    '/v1/policies/:id',
    {
      schema: {
        summary: 'Edit one policy (forward or failback); the other policy of the pair is unchanged',
        tags: ['policies'],
        operationId: 'updatePolicy',
        security: OPERATOR,
        params: IdParams,
        body: PatchPolicy,
        response: { 200: PolicyView, ...errors(400, 401, 404, 409) },
      },
    },
    async (req) => updatePolicy(ctx, req.params.id, req.body),
  );
};
