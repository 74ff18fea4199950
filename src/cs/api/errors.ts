import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { errorMessage } from '../../replication/errors.js';
import { PATTERN_MEANING } from '../domain/names.js';
import { CATALOGUE, CsError, csError } from '../errors.js';

/**
 * Every error leaves as `{ code, message, remedy?, field?, problems? }`: our coded errors with
 * their status, Fastify's schema failures as 400 naming each field, anything else as 500 (logged,
 * not shown).
 */

interface Problem {
  field: string;
  message: string;
}

/** `/disks/0/sizeBytes` plus the property a required or additionalProperties error is about. */
function fieldOf(e: FastifySchemaValidationError): string {
  let path = e.instancePath;
  if (e.keyword === 'required' && typeof e.params.missingProperty === 'string') path += `/${e.params.missingProperty}`;
  if (e.keyword === 'additionalProperties' && typeof e.params.additionalProperty === 'string') path += `/${e.params.additionalProperty}`;
  return path.split('/').filter((p) => p.length > 0).join('.');
}

function problemOf(e: FastifySchemaValidationError, context: string): Problem {
  const field = fieldOf(e);
  const pattern = e.keyword === 'pattern' && typeof e.params.pattern === 'string' ? PATTERN_MEANING[e.params.pattern] : undefined;
  const what = e.keyword === 'additionalProperties' ? 'is not a known field' : e.keyword === 'required' ? 'is required' : (pattern ?? e.message ?? 'is invalid');
  return { field, message: `${context}${field === '' ? '' : `.${field}`} ${what}` };
}

function validationBody(err: FastifyError): { status: number; body: object } {
  const context = err.validationContext ?? 'body';
  const problems = (err.validation ?? []).map((e) => problemOf(e, context));
  // ajv reports a failed anyOf once per branch; one line per field and message is enough.
  const unique = problems.filter((p, i) => problems.findIndex((q) => q.message === p.message) === i);
  const first = unique[0];
  return {
    status: 400,
    body: { code: 'BAD_REQUEST', message: unique.map((p) => p.message).join('; ') || 'invalid request', remedy: CATALOGUE.BAD_REQUEST.remedy, ...(first === undefined ? {} : { field: first.field }), problems: unique },
  };
}

function fastifyBody(err: FastifyError): { status: number; body: object } | undefined {
  const status = err.statusCode ?? 500;
  if (status >= 500) return undefined;
  const e = status === 413 ? csError('PAYLOAD_TOO_LARGE') : status === 415 ? csError('UNSUPPORTED_MEDIA_TYPE') : csError('BAD_REQUEST', { message: err.message });
  return { status: e.status, body: { code: e.code, message: e.message, remedy: e.remedy } };
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler(async (err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    let out: { status: number; body: object } | undefined;
    if (err instanceof CsError) {
      out = {
        status: err.status,
        body: { code: err.code, message: err.message, remedy: err.remedy, ...(err.field === undefined ? {} : { field: err.field }), ...(err.problems === undefined ? {} : { problems: err.problems }) },
      };
    } else if (err instanceof Error && 'validation' in err && Array.isArray((err as FastifyError).validation)) {
      out = validationBody(err as FastifyError);
    } else if (err instanceof Error && 'statusCode' in err) {
      out = fastifyBody(err as FastifyError);
    }
    if (out === undefined) {
      req.log.error({ error: errorMessage(err), route: req.routeOptions.url }, 'request failed');
      const e = csError('INTERNAL');
      out = { status: e.status, body: { code: e.code, message: e.message, remedy: e.remedy } };
    }
    if (out.status === 401) void reply.header('www-authenticate', 'Bearer');
    return reply.code(out.status).send(out.body);
  });
  app.setNotFoundHandler(async (req, reply) => {
    const e = csError('ROUTE_NOT_FOUND', { method: req.method, url: req.url.split('?')[0] ?? req.url });
    return reply.code(404).send({ code: e.code, message: e.message, remedy: e.remedy });
  });
}
