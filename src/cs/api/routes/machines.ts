import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { CsContext } from '../../context.js';
import { Uuid } from '../../domain/names.js';
import { CreateMachine, createMachine, getMachine, listMachines, MachineView } from '../../inventory/machines.js';
import { errors, IdParams, OPERATOR } from '../schemas.js';

export const machineRoutes: FastifyPluginAsync<{ ctx: CsContext }> = async (app, { ctx }) => {
  app.get<{ Querystring: { fabricId?: string } }>(
    '/v1/machines',
    {
      schema: {
        summary: 'Machines, optionally of one fabric',
        tags: ['machines'],
        operationId: 'listMachines',
        security: OPERATOR,
        querystring: Type.Object({ fabricId: Type.Optional(Uuid) }, { additionalProperties: false }),
        response: { 200: Type.Array(MachineView), ...errors(400, 401) },
      },
    },
    async (req) => listMachines(ctx, req.query),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/machines/:id',
    { schema: { summary: 'One machine', tags: ['machines'], operationId: 'getMachine', security: OPERATOR, params: IdParams, response: { 200: MachineView, ...errors(400, 401, 404) } } },
    async (req) => getMachine(ctx, req.params.id),
  );

  app.post<{ Body: CreateMachine }>(
    '/v1/machines',
    {
      schema: {
        summary: 'Add a machine to a fabric, with its power hooks',
        tags: ['machines'],
        operationId: 'createMachine',
        security: OPERATOR,
        body: CreateMachine,
        response: { 201: MachineView, ...errors(400, 401, 404, 409) },
      },
    },
    async (req, reply) => reply.code(201).send(await createMachine(ctx, req.body)),
  );
};
