import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { isoAt } from '../../clock.js';
import type { CsContext } from '../../context.js';
import { Timestamp } from '../../domain/names.js';

/** Liveness for load balancers and the CLI: no credentials, no secrets. */
export const healthRoutes: FastifyPluginAsync<{ ctx: CsContext; vaultName: string }> = async (app, { ctx, vaultName }) => {
  app.get(
    '/v1/health',
    {
      schema: {
        summary: 'Is the configuration server up',
        tags: ['health'],
        operationId: 'getHealth',
        response: { 200: Type.Object({ status: Type.Literal('ok'), vault: Type.String(), time: Timestamp }) },
      },
    },
    async () => ({ status: 'ok' as const, vault: vaultName, time: isoAt(ctx.clock) }),
  );
};
