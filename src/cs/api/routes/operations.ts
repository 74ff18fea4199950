import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { CsContext } from '../../context.js';
import type { ItemOperation } from '../../domain/item-state.js';
import { isoAt } from '../../clock.js';
import { csError } from '../../errors.js';
import { ItemView, startItemOperation } from '../../inventory/items.js';
import type { JobEngine } from '../../jobs/engine.js';
import { PointChoice } from '../../lifecycle/failover.js';
import { gatherFacts } from '../../preflight/gather.js';
import { parseAcceptLanguage, runPreflight, type Operation } from '../../preflight/index.js';
import { errors, IdParams, JobViewSchema, OPERATOR } from '../schemas.js';

/**
 * The lifecycle operations on an item. Each runs its pre-flight checks first and refuses with
 * every failed check at once (422 PREFLIGHT_FAILED); then the item's transition and its job are
 * created together (202). Checks that the job itself waits for are not blocking here: reprotect
 * waits for the agent on the machine now running to register (95226) instead of failing at once.
 */

interface OperationRoute {
  path: string;
  operation: ItemOperation;
  jobKind: string;
  preflight?: Operation;
  /** Checks the job waits for rather than fails on. */
  waits?: readonly string[];
  body: TSchema;
  /** Filled in where the body leaves them out. */
  defaults?: Record<string, unknown>;
  summary: string;
}

const Empty = Type.Object({}, { additionalProperties: false });

const ROUTES: readonly OperationRoute[] = [
  {
    path: 'failover',
    operation: 'failover',
    jobKind: 'failover',
    preflight: 'failover',
    body: Type.Object(
      {
        point: Type.Optional(PointChoice),
        shutdownSource: Type.Optional(Type.Boolean({ description: 'power the source machine off first (planned failover)' })),
      },
      { additionalProperties: false },
    ),
    defaults: { point: 'latest', shutdownSource: false },
    summary: 'Fail over to a recovery point (default latest: pending data is drained first)',
  },
  { path: 'change-point', operation: 'changePoint', jobKind: 'change-point', body: Type.Object({ point: PointChoice }, { additionalProperties: false }), summary: 'Choose another recovery point before commit' },
  { path: 'commit', operation: 'commit', jobKind: 'commit', preflight: 'commit', body: Empty, summary: 'Commit a failover or failback: its recovery points are released' },
  {
    path: 'reprotect',
    operation: 'reprotect',
    jobKind: 'reprotect',
    preflight: 'reprotect',
    waits: ['agent-not-registered', 'agent-no-heartbeat', 'source-not-running'],
    body: Type.Object(
      {
        location: Type.Optional(Type.Union([Type.Literal('original'), Type.Literal('alternate')], { description: 'original: delta resync into the old disks; alternate: new, empty disks' })),
        machineName: Type.Optional(Type.String({ minLength: 1, maxLength: 80, description: 'alternate location on vSphere: the new VM’s name (default: <machine>-recovered)' })),
        datastore: Type.Optional(Type.String({ minLength: 1, maxLength: 80, description: 'alternate location on vSphere: the datastore of its disks (default: the MT VM’s)' })),
      },
      { additionalProperties: false },
    ),
    defaults: { location: 'original' },
    summary: 'Replicate the other way, from the machine now running to the site failed away from',
  },
  { path: 'failback', operation: 'failback', jobKind: 'failback', preflight: 'failback', body: Empty, summary: 'Planned failover back: stop, drain, final bookmark, switch, start' },
  { path: 'cancel-failback', operation: 'cancelFailback', jobKind: 'cancel-failback', preflight: 'cancel', body: Empty, summary: 'Roll a failed failback back to replicating as before it' },
  { path: 'disable', operation: 'disable', jobKind: 'disable', preflight: 'disable', body: Empty, summary: 'Disable protection (no machine disk is deleted)' },
];

/** An operator confirms the power operations a job waits for (machines powered by hand). */
async function confirmPower(ctx: CsContext, jobId: string): Promise<{ confirmed: { machineId: string; action: string }[] }> {
  const job = await ctx.db.selectFrom('jobs').select('id').where('id', '=', jobId).executeTakeFirst();
  if (job === undefined) throw csError('NOT_FOUND', { what: 'job', id: jobId });
  const waiting = await ctx.db.selectFrom('power_confirmations').select(['machine_id', 'action']).where('job_id', '=', jobId).where('confirmed_at', 'is', null).execute();
  if (waiting.length === 0) throw csError('NOTHING_TO_CONFIRM', { job: jobId });
  await ctx.db.updateTable('power_confirmations').set({ confirmed_at: isoAt(ctx.clock) }).where('job_id', '=', jobId).where('confirmed_at', 'is', null).execute();
  ctx.log.info({ job: jobId, confirmed: waiting }, 'power operations confirmed by an operator');
  return { confirmed: waiting.map((w) => ({ machineId: w.machine_id, action: w.action })) };
}

export const operationRoutes: FastifyPluginAsync<{ ctx: CsContext; jobs: JobEngine }> = async (app, { ctx, jobs }) => {
  app.post<{ Params: { id: string } }>(
    '/v1/jobs/:id/confirm',
    {
      schema: {
        summary: 'Confirm that the machines a job waits for were powered on or off by hand',
        tags: ['jobs'],
        operationId: 'confirmPower',
        security: OPERATOR,
        params: IdParams,
        response: { 200: Type.Object({ confirmed: Type.Array(Type.Object({ machineId: Type.String(), action: Type.String() })) }), ...errors(400, 401, 404, 409) },
      },
    },
    async (req) => confirmPower(ctx, req.params.id),
  );

  for (const r of ROUTES) {
    app.post<{ Params: { id: string }; Body: Record<string, unknown> | undefined; Querystring: { lang?: 'en' | 'ja' } }>(
      `/v1/items/:id/${r.path}`,
      {
        schema: {
          summary: r.summary,
          tags: ['lifecycle'],
          operationId: r.path.replace(/-(\w)/g, (_, c: string) => c.toUpperCase()),
          security: OPERATOR,
          params: IdParams,
          querystring: Type.Object({ lang: Type.Optional(Type.Union([Type.Literal('en'), Type.Literal('ja')])) }, { additionalProperties: false }),
          body: r.body,
          response: { 202: Type.Object({ item: ItemView, job: JobViewSchema }), ...errors(400, 401, 404, 409, 422, 501) },
        },
      },
      async (req, reply) => {
        if (r.preflight !== undefined) {
          const lang = req.query.lang ?? parseAcceptLanguage(req.headers['accept-language']);
          const report = await runPreflight(r.preflight, await gatherFacts(ctx, req.params.id, r.preflight, req.body ?? {}), { lang });
          const failed = report.results.filter((c) => !c.passed && c.severity === 'error' && !(r.waits ?? []).includes(c.id));
          if (failed.length > 0) {
            throw csError('PREFLIGHT_FAILED', { operation: r.path, item: req.params.id, failed: failed.map((c) => (c.code === undefined ? c.id : `${c.id} ${c.code}`)).join(', ') }).with(
              failed.map((c) => ({ id: c.id, ...(c.code === undefined ? {} : { code: c.code }), severity: c.severity, message: c.message, remedy: c.remedy })),
            );
          }
        }
        const params = { ...r.defaults, ...req.body };
        return reply.code(202).send(await startItemOperation(ctx, jobs, req.params.id, r.operation, r.jobKind, params));
      },
    );
  }
};
