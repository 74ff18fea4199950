import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { recordHeartbeat } from '../../components/heartbeat.js';
import { renewToken } from '../../components/registration.js';
import type { CsContext } from '../../context.js';
import { HealthReport } from '../../domain/health.js';
import { Timestamp } from '../../domain/names.js';
import { recordRecoveryPoints, RecoveryPointReport } from '../../inventory/recovery-points.js';
import type { ComponentAuth } from '../auth.js';
import { COMPONENT, errors } from '../schemas.js';

/** What components send, each with its own token. */
export const componentReportRoutes: FastifyPluginAsync<{ ctx: CsContext; auth: ComponentAuth }> = async (app, { ctx, auth }) => {
  app.post<{ Body: HealthReport }>(
    '/v1/heartbeat',
    {
      schema: {
        summary: 'Report health; the section matching the component kind (ps, mt or agent) is required',
        tags: ['components'],
        operationId: 'heartbeat',
        security: COMPONENT,
        body: HealthReport,
        response: {
          200: Type.Object({ receivedAt: Timestamp, nextHeartbeatSeconds: Type.Number(), tokenExpiresAt: Timestamp }),
          ...errors(400, 401, 403),
        },
      },
    },
    async (req) => recordHeartbeat(ctx, auth.caller(req), req.body),
  );

  app.post(
    '/v1/token',
    {
      schema: {
        summary: 'Exchange a valid component token for a new one (the old one stops working)',
        tags: ['components'],
        operationId: 'renewToken',
        security: COMPONENT,
        response: { 200: Type.Object({ token: Type.String(), tokenExpiresAt: Timestamp }), ...errors(401, 403) },
      },
    },
    async (req) => renewToken(ctx, auth.caller(req).id),
  );

  app.post<{ Body: RecoveryPointReport }>(
    '/v1/recovery-points',
    {
      schema: {
        summary: 'A master target reports the recovery points of the disks it serves',
        tags: ['recovery points'],
        operationId: 'reportRecoveryPoints',
        security: COMPONENT,
        body: RecoveryPointReport,
        response: {
          200: Type.Object({ accepted: Type.Integer(), pruned: Type.Integer(), unknownDisks: Type.Array(Type.String()) }),
          ...errors(400, 401, 403),
        },
      },
    },
    async (req) => recordRecoveryPoints(ctx, auth.caller(req), req.body),
  );
};
