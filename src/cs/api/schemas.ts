import { Type, type TSchema } from '@sinclair/typebox';
import { Timestamp, Uuid } from '../domain/names.js';

/** Schemas shared by the route plugins: errors, ids, and the job views. */

export const ErrorBody = Type.Object(
  {
    code: Type.String(),
    message: Type.String(),
    remedy: Type.Optional(Type.String()),
    /** The request field at fault, as a dotted path (`disks.0.sizeBytes`). */
    field: Type.Optional(Type.String()),
    /** Every problem found: the fields of a malformed request, or the failed pre-flight checks (id, code, remedy). */
    problems: Type.Optional(
      Type.Array(
        Type.Object({
          message: Type.String(),
          field: Type.Optional(Type.String()),
          id: Type.Optional(Type.String()),
          code: Type.Optional(Type.Number()),
          severity: Type.Optional(Type.String()),
          remedy: Type.Optional(Type.String()),
        }),
      ),
    ),
  },
  { description: 'an error: stable code, plain message, what to do' },
);

const DESCRIPTIONS: Record<number, string> = {
  400: 'malformed request: `field` names what is wrong',
  401: 'missing, wrong or expired credentials (AUTH_REQUIRED, BAD_TOKEN, BAD_PASSPHRASE, TOKEN_EXPIRED)',
  403: 'revoked credentials (REVOKED) or a component of the wrong kind',
  404: 'no such object',
  409: 'not allowed in the current state, or a name already taken',
  422: 'pre-flight checks failed (PREFLIGHT_FAILED): `problems` lists every failed check with its code and remedy',
  501: 'a job kind this server was not started with',
};

/** Response schemas for the error statuses a route can answer. */
export function errors(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries(statuses.map((s) => [s, { ...ErrorBody, description: DESCRIPTIONS[s] ?? 'error' }]));
}

export const IdParams = Type.Object({ id: Uuid }, { additionalProperties: false });

export const Limit = Type.Integer({ minimum: 1, maximum: 1000, default: 100 });

export const OPERATOR = [{ operator: [] as string[] }];
export const COMPONENT = [{ component: [] as string[] }];

export const JobState = Type.Union(['queued', 'running', 'compensating', 'succeeded', 'failed', 'cancelled'].map((s) => Type.Literal(s)));

const CodedErrorSchema = Type.Object({ code: Type.String(), message: Type.String(), remedy: Type.Optional(Type.String()) });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const TaskViewSchema = Type.Object({
  index: Type.Integer(),
  name: Type.String(),
  state: Type.Union(['pending', 'running', 'succeeded', 'failed', 'cancelled', 'skipped'].map((s) => Type.Literal(s))),
  resumable: Type.Boolean(),
  runs: Type.Integer(),
  startedAt: Nullable(Timestamp),
  finishedAt: Nullable(Timestamp),
  progress: Type.Object({ done: Type.Number(), total: Type.Number(), detail: Nullable(Type.String()) }),
  error: Nullable(CodedErrorSchema),
});

export const JobViewSchema = Type.Object({
  id: Uuid,
  kind: Type.String(),
  state: JobState,
  resource: Nullable(Type.String()),
  params: Type.Record(Type.String(), Type.Unknown()),
  version: Type.Integer({ description: 'grows with every change; pass it to /watch' }),
  resumes: Type.Integer({ description: 'how many times the job was picked up again after a CS restart' }),
  cancelRequested: Type.Boolean(),
  createdAt: Timestamp,
  startedAt: Nullable(Timestamp),
  finishedAt: Nullable(Timestamp),
  updatedAt: Timestamp,
  progress: Type.Number({ minimum: 0, maximum: 1 }),
  error: Nullable(CodedErrorSchema),
  tasks: Type.Array(TaskViewSchema),
});
