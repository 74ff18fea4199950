import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { CommandAnswer, CommandView, type CommandBus } from '../../components/commands.js';
import type { ComponentAuth } from '../auth.js';
import { COMPONENT, errors } from '../schemas.js';

/** Components fetch the commands jobs send them (long poll) and answer each one. */
export const commandRoutes: FastifyPluginAsync<{ commands: CommandBus; auth: ComponentAuth }> = async (app, { commands, auth }) => {
  const closing = new AbortController();
  app.addHook('preClose', async () => closing.abort());

  app.get<{ Querystring: { waitSeconds: number } }>(
    '/v1/commands',
    {
      schema: {
        summary: "Long-poll for the caller's pending commands, oldest first (answers at once when there are some)",
        tags: ['components'],
        operationId: 'pendingCommands',
        security: COMPONENT,
        querystring: Type.Object({ waitSeconds: Type.Number({ minimum: 0, maximum: 60, default: 25 }) }, { additionalProperties: false }),
        response: { 200: Type.Array(CommandView), ...errors(400, 401, 403) },
      },
    },
    async (req, reply) => {
      const gone = new AbortController();
      reply.raw.once('close', () => gone.abort());
      return commands.pending(auth.caller(req), req.query.waitSeconds * 1000, AbortSignal.any([gone.signal, closing.signal]));
    },
  );

  app.post<{ Params: { id: string }; Body: CommandAnswer }>(
    '/v1/commands/:id/answer',
    {
      schema: {
        summary: 'Answer a command: its result, or the error that stopped it',
        tags: ['components'],
        operationId: 'answerCommand',
        security: COMPONENT,
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) }, { additionalProperties: false }),
        body: CommandAnswer,
        response: { 200: Type.Object({ accepted: Type.Boolean() }), ...errors(400, 401, 403, 404) },
      },
    },
    async (req) => commands.complete(auth.caller(req), req.params.id, req.body),
  );
};
