import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { CsContext } from '../../context.js';
import { CreateFabric, createFabric, FabricView, getFabric, listFabrics } from '../../inventory/fabrics.js';
import { InventoryView } from '../../inventory/vsphere-inventory-view.js';
import { getInventory, inventoryRefresher } from '../../inventory/vsphere-inventory.js';
import { errors, IdParams, OPERATOR } from '../schemas.js';

const VCENTER_ERRORS = {
  ...errors(400, 401, 404, 409),
  502: { ...errors(502)[502], description: 'vCenter could not be reached or answered with an error (FABRIC_UNREACHABLE, FABRIC_DISCOVERY_FAILED)' },
  504: { ...errors(504)[504], description: 'vCenter did not answer in time (FABRIC_TIMEOUT)' },
};

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
        summary: 'Add a fabric',
        description:
          'A physical fabric needs nothing more. A vsphere fabric takes config {url, username, thumbprint | caPem | insecure} and the account’s password: the CS logs in to vCenter first and stores nothing if that fails (FABRIC_LOGIN_FAILED, FABRIC_TLS_UNTRUSTED, FABRIC_UNREACHABLE); then it reads the inventory in the background (GET /v1/fabrics/{id}/inventory). The password is kept by the CS and never returned.',
        tags: ['fabrics'],
        operationId: 'createFabric',
        security: OPERATOR,
        body: CreateFabric,
        response: { 201: FabricView, ...errors(400, 401, 409), 502: VCENTER_ERRORS[502], 504: VCENTER_ERRORS[504] },
      },
    },
    async (req, reply) => reply.code(201).send(await createFabric(ctx, req.body)),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/fabrics/:id/inventory',
    {
      schema: {
        summary: 'The vCenter inventory of a vsphere fabric',
        description: 'As last read: hosts, datastores and VMs with the facts the vSphere checks use, the status of the last read and, when the account lacks privileges, which ones.',
        tags: ['fabrics'],
        operationId: 'getFabricInventory',
        security: OPERATOR,
        params: IdParams,
        response: { 200: InventoryView, ...errors(400, 401, 404, 409) },
      },
    },
    async (req) => getInventory(ctx, req.params.id),
  );

  app.post<{ Params: { id: string } }>(
    '/v1/fabrics/:id/refresh',
    {
      schema: {
        summary: 'Read the vCenter inventory of a vsphere fabric now',
        description: 'Synchronous, within the CS’s fabricRefreshTimeoutSeconds; joins a read already running. A failed read is recorded with the inventory and answered as an error; the last good inventory stays readable.',
        tags: ['fabrics'],
        operationId: 'refreshFabric',
        security: OPERATOR,
        params: IdParams,
        response: { 200: InventoryView, ...VCENTER_ERRORS },
      },
    },
    async (req) => inventoryRefresher(ctx).refresh(req.params.id),
  );
};
