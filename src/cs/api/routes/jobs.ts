import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { JobEngine } from '../../jobs/engine.js';
import type { JobStatus } from '../../jobs/machine.js';
import { errors, IdParams, JobState, JobViewSchema, Limit, OPERATOR } from '../schemas.js';

/**
 * Jobs: list, show, cancel, and a long-poll watch. Watchers are released when the server begins
 * to close, so a pending long-poll never holds a shutdown up.
 */
export const jobRoutes: FastifyPluginAsync<{ jobs: JobEngine }> = async (app, { jobs }) => {
  const closing = new AbortController();
  app.addHook('preClose', async () => closing.abort());

  app.get<{ Querystring: { state?: JobStatus['state']; resource?: string; limit: number } }>(
    '/v1/jobs',
    {
      schema: {
        summary: 'Jobs, newest first',
        tags: ['jobs'],
        operationId: 'listJobs',
        security: OPERATOR,
        querystring: Type.Object(
          { state: Type.Optional(JobState), resource: Type.Optional(Type.String({ maxLength: 256, description: 'e.g. item/<id>' })), limit: Limit },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(JobViewSchema), ...errors(400, 401) },
      },
    },
    async (req) => jobs.list(req.query),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/jobs/:id',
    { schema: { summary: 'One job with its tasks', tags: ['jobs'], operationId: 'getJob', security: OPERATOR, params: IdParams, response: { 200: JobViewSchema, ...errors(400, 401, 404) } } },
    async (req) => jobs.view(req.params.id),
  );

  app.get<{ Params: { id: string }; Querystring: { version?: number; timeoutSeconds: number } }>(
    '/v1/jobs/:id/watch',
    {
      schema: {
        summary: 'Long-poll: answers when the job is newer than `version` (or has finished), or when the timeout passes',
        tags: ['jobs'],
        operationId: 'watchJob',
        security: OPERATOR,
        params: IdParams,
        querystring: Type.Object(
          {
            version: Type.Optional(Type.Integer({ minimum: 0, description: 'the version the caller has; default: the current one' })),
            timeoutSeconds: Type.Number({ exclusiveMinimum: 0, maximum: 60, default: 25 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: JobViewSchema, ...errors(400, 401, 404) },
      },
    },
    async (req, reply) => {
      const gone = new AbortController();
      reply.raw.once('close', () => gone.abort());
      const version = req.query.version ?? (await jobs.view(req.params.id)).version;
      return jobs.waitForChange(req.params.id, version, req.query.timeoutSeconds * 1000, AbortSignal.any([gone.signal, closing.signal]));
    },
  );

  app.post<{ Params: { id: string } }>(
    '/v1/jobs/:id/cancel',
    {
      schema: {
        summary: 'Cancel a job: a queued one at once, a running one after its rollback',
        tags: ['jobs'],
        operationId: 'cancelJob',
        security: OPERATOR,
        params: IdParams,
        response: { 202: JobViewSchema, ...errors(400, 401, 404, 409) },
      },
    },
    async (req, reply) => reply.code(202).send(await jobs.cancel(req.params.id)),
  );
};
