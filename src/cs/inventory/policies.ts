import { randomUUID } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import type { Transaction } from 'kysely';
import { isoAt } from '../clock.js';
import type { CsContext } from '../context.js';
import type { Database, PolicyRow } from '../db/schema.js';
import { Name, Timestamp, Uuid } from '../domain/names.js';
import { patchPolicy, POLICY_LIMITS, POLICY_NAME_MAX, policyPair, type NumericPolicySetting, type PolicyDraft, type PolicySettings } from '../domain/policy.js';
import { csError } from '../errors.js';

/** Policy pairs: one request creates the forward policy and its failback policy. */

function setting(field: NumericPolicySetting, description: string) {
  const l = POLICY_LIMITS[field];
  return Type.Integer({ minimum: l.min, maximum: l.max, description: `${description} (default ${l.default})` });
}

const Settings = {
  rpoThresholdSeconds: setting('rpoThresholdSeconds', 'replication lag above which the item is unhealthy, in seconds'),
  retentionHours: setting('retentionHours', 'how far back recovery points are kept, in hours'),
  appConsistentMinutes: setting('appConsistentMinutes', 'period of application-consistent points in minutes, 0 for none'),
  crashConsistentMinutes: setting('crashConsistentMinutes', 'period of crash-consistent points, in minutes'),
  blobSnapshots: Type.Boolean({ description: 'page-blob replicas (Azure) also keep each recovery point as a blob snapshot (default false)' }),
};

function optionalSettings() {
  return {
    rpoThresholdSeconds: Type.Optional(Settings.rpoThresholdSeconds),
    retentionHours: Type.Optional(Settings.retentionHours),
    appConsistentMinutes: Type.Optional(Settings.appConsistentMinutes),
    crashConsistentMinutes: Type.Optional(Settings.crashConsistentMinutes),
    blobSnapshots: Type.Optional(Settings.blobSnapshots),
  };
}

const PairName = Type.String({ ...Name, maxLength: POLICY_NAME_MAX, description: `the forward policy's name; the failback policy gets "<name>-failback" (at most ${POLICY_NAME_MAX})` });

export const CreatePolicy = Type.Object(
  {
    name: PairName,
    ...optionalSettings(),
    failback: Type.Optional(Type.Object(optionalSettings(), { additionalProperties: false, description: 'settings of the failback policy that differ from the forward one' })),
  },
  { additionalProperties: false },
);
export type CreatePolicy = Static<typeof CreatePolicy>;

export const PatchPolicy = Type.Object({ name: Type.Optional(Name), ...optionalSettings() }, { additionalProperties: false, minProperties: 1 });
export type PatchPolicy = Static<typeof PatchPolicy>;

export const PolicyView = Type.Object({
  id: Uuid,
  pairId: Uuid,
  direction: Type.Union([Type.Literal('forward'), Type.Literal('failback')]),
  name: Type.String(),
  ...Settings,
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type PolicyView = Static<typeof PolicyView>;

export const PolicyPairView = Type.Object({ forward: PolicyView, failback: PolicyView });

export function settingsOf(r: PolicyRow): PolicySettings {
  return { rpoThresholdSeconds: r.rpo_threshold_s, retentionHours: r.retention_h, appConsistentMinutes: r.app_consistent_min, crashConsistentMinutes: r.crash_consistent_min, blobSnapshots: r.blob_snapshots === 1 };
}

function columns(s: PolicySettings) {
  return { rpo_threshold_s: s.rpoThresholdSeconds, retention_h: s.retentionHours, app_consistent_min: s.appConsistentMinutes, crash_consistent_min: s.crashConsistentMinutes, blob_snapshots: s.blobSnapshots ? 1 : 0 };
}

function view(r: PolicyRow): PolicyView {
  return { id: r.id, pairId: r.pair_id, direction: r.direction, name: r.name, ...settingsOf(r), createdAt: r.created_at, updatedAt: r.updated_at };
}

async function ensureNameFree(trx: Transaction<Database>, name: string, field: string, except?: string): Promise<void> {
  let q = trx.selectFrom('policies').select('id').where('name', '=', name);
  if (except !== undefined) q = q.where('id', '!=', except);
  if ((await q.executeTakeFirst()) !== undefined) throw csError('NAME_TAKEN', { what: 'policy', name }).at(field);
}

export async function createPolicyPair(ctx: CsContext, input: CreatePolicy): Promise<{ forward: PolicyView; failback: PolicyView }> {
  const { name, failback, ...forward } = input;
  const pair = policyPair(name, forward, failback);
  const pairId = randomUUID();
  const ids = { forward: randomUUID(), failback: randomUUID() };
  const now = isoAt(ctx.clock);
  await ctx.db.transaction().execute(async (trx) => {
    await ensureNameFree(trx, pair.forward.name, 'name');
    await ensureNameFree(trx, pair.failback.name, 'name');
    const row = (id: string, direction: 'forward' | 'failback', d: PolicyDraft) => ({ id, pair_id: pairId, direction, name: d.name, ...columns(d.settings), created_at: now, updated_at: now });
    await trx
      .insertInto('policies')
      .values([row(ids.forward, 'forward', pair.forward), row(ids.failback, 'failback', pair.failback)])
      .execute();
  });
  return { forward: await getPolicy(ctx, ids.forward), failback: await getPolicy(ctx, ids.failback) };
}

/** Edits one policy of a pair; the other keeps its settings. */
export async function updatePolicy(ctx: CsContext, id: string, input: PatchPolicy): Promise<PolicyView> {
  const { name, ...patch } = input;
  await ctx.db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom('policies').selectAll().where('id', '=', id).executeTakeFirst();
    if (row === undefined) throw csError('NOT_FOUND', { what: 'policy', id });
    const settings = patchPolicy(settingsOf(row), patch);
    if (name !== undefined) await ensureNameFree(trx, name, 'name', id);
    await trx
      .updateTable('policies')
      .set({ ...columns(settings), ...(name === undefined ? {} : { name }), updated_at: isoAt(ctx.clock) })
      .where('id', '=', id)
      .execute();
  });
  const updated = await getPolicy(ctx, id);
  ctx.log.info({ policy: id, name: updated.name, direction: updated.direction }, 'policy updated');
  return updated;
}

export async function listPolicies(ctx: CsContext): Promise<PolicyView[]> {
  const rows = await ctx.db.selectFrom('policies').selectAll().orderBy('name').execute();
  return rows.map(view);
}

export async function getPolicy(ctx: CsContext, id: string): Promise<PolicyView> {
  const row = await ctx.db.selectFrom('policies').selectAll().where('id', '=', id).executeTakeFirst();
  if (row === undefined) throw csError('NOT_FOUND', { what: 'policy', id });
  return view(row);
}
