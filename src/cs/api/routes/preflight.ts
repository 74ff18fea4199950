import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { CsContext } from '../../context.js';
import { gatherFacts } from '../../preflight/gather.js';
import { OPERATIONS, parseAcceptLanguage, runPreflight, type Operation } from '../../preflight/index.js';
import { Uuid } from '../../domain/names.js';
import { errors, OPERATOR } from '../schemas.js';

const CheckResultView = Type.Object({
  id: Type.String(),
  code: Type.Optional(Type.Number()),
  severity: Type.Union([Type.Literal('error'), Type.Literal('warning')]),
  passed: Type.Boolean(),
  message: Type.String(),
  remedy: Type.String(),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});

const ReportView = Type.Object({
  operation: Type.String(),
  itemId: Type.String(),
  ok: Type.Boolean(),
  lang: Type.Union([Type.Literal('en'), Type.Literal('ja')]),
  results: Type.Array(CheckResultView),
});

/** `boomerang check <operation> <item>`: an operation's pre-flight checks, run alone. */
export const preflightRoutes: FastifyPluginAsync<{ ctx: CsContext }> = async (app, { ctx }) => {
  app.get<{ Params: { id: string; operation: Operation }; Querystring: { lang?: 'en' | 'ja'; location?: 'original' | 'alternate'; machineName?: string; datastore?: string } }>(
    '/v1/items/:id/preflight/:operation',
    {
      schema: {
        summary: "Run an operation's pre-flight checks for an item and report every result (Accept-Language or ?lang= picks English or Japanese)",
        tags: ['items'],
        operationId: 'preflight',
        security: OPERATOR,
        params: Type.Object({ id: Uuid, operation: Type.Union(OPERATIONS.map((o) => Type.Literal(o))) }, { additionalProperties: false }),
        querystring: Type.Object(
          {
            lang: Type.Optional(Type.Union([Type.Literal('en'), Type.Literal('ja')])),
            location: Type.Optional(Type.Union([Type.Literal('original'), Type.Literal('alternate')], { description: 'reprotect: judge the location the operation would be asked for' })),
            machineName: Type.Optional(Type.String({ minLength: 1, maxLength: 80, description: 'reprotect to an alternate location: the new machine’s name' })),
            datastore: Type.Optional(Type.String({ minLength: 1, maxLength: 80, description: 'reprotect to an alternate location: the datastore of its disks' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: ReportView, ...errors(400, 401, 404) },
      },
    },
    async (req) => {
      const lang = req.query.lang ?? parseAcceptLanguage(req.headers['accept-language']);
      const { lang: _lang, ...request } = req.query;
      return runPreflight(req.params.operation, await gatherFacts(ctx, req.params.id, req.params.operation, request), { lang });
    },
  );
};
