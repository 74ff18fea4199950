import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { CsMetrics } from '../../metrics.js';
import { errors, OPERATOR } from '../schemas.js';

export const metricsRoutes: FastifyPluginAsync<{ metrics: CsMetrics }> = async (app, { metrics }) => {
  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics (text exposition format)',
        tags: ['health'],
        operationId: 'getMetrics',
        security: OPERATOR,
        response: { 200: Type.String({ description: 'Prometheus text format' }), ...errors(401) },
      },
    },
    async (_req, reply) => reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
};
