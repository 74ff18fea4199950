import { randomUUID } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import type { Kysely, Transaction } from 'kysely';
import { isoAt, type Clock } from '../clock.js';
import type { CsContext } from '../context.js';
import type { ComponentKind, Database, ItemDiskRow, ItemRow } from '../db/schema.js';
import { allowedOperations, isItemState, ITEM_OPERATIONS, ITEM_STATES, RELEASED_STATES, transition, type ItemOperation, type ItemPosition } from '../domain/item-state.js';
import { DiskId, Timestamp, Uuid } from '../domain/names.js';
import { csError } from '../errors.js';
import type { JobEngine } from '../jobs/engine.js';
import type { JobView } from '../jobs/store.js';
import type { JsonObject } from '../jobs/types.js';

/**
 * Protected items: a machine, its disks, the components that replicate them and the policy pair.
 * Every change of state goes through the transition table and starts a job in the same
 * transaction, so an item is never in an `-ing` state without the job that will end it.
 */

/** The job the lifecycle registers to carry out enable replication (initial replication). */
export const ENABLE_JOB_KIND = 'enable-replication';
export const ItemJobParams = Type.Object({ itemId: Uuid }, { additionalProperties: true });

/** Jobs of one item run one at a time. */
export function itemResource(itemId: string): string {
  return `item/${itemId}`;
}

const DiskInput = Type.Object(
  {
    diskId: DiskId,
    sizeBytes: Type.Integer({ minimum: 512, multipleOf: 512 }),
    sourcePath: Type.String({ minLength: 1, maxLength: 4096 }),
    targetPath: Type.String({ minLength: 1, maxLength: 4096 }),
  },
  { additionalProperties: false },
);

export const CreateItem = Type.Object(
  {
    machineId: Uuid,
    policyId: Type.String({ ...Uuid, description: 'the forward policy of a pair' }),
    agentId: Uuid,
    psId: Uuid,
    mtId: Uuid,
    disks: Type.Array(DiskInput, { minItems: 1, maxItems: 64 }),
    recoveryMachineId: Type.Optional(Type.String({ ...Uuid, description: 'the machine that runs the workload after a failover' })),
    failbackAgentName: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'the name the agent on the recovery machine registers with' })),
    failbackPsId: Type.Optional(Type.String({ ...Uuid, description: 'the process server at the recovery site (failback direction)' })),
    failbackMtId: Type.Optional(Type.String({ ...Uuid, description: 'the master target at the primary site (failback direction)' })),
  },
  { additionalProperties: false },
);
export type CreateItem = Static<typeof CreateItem>;

const DiskView = Type.Object({
  diskId: Type.String(),
  sizeBytes: Type.Integer(),
  sourcePath: Type.String(),
  targetPath: Type.String(),
  lineage: Type.Union([Type.String(), Type.Null()]),
  lastSeq: Type.Union([Type.Integer(), Type.Null()]),
});

export const ItemView = Type.Object({
  id: Uuid,
  machineId: Uuid,
  machineName: Type.String(),
  state: Type.Union(ITEM_STATES.map((s) => Type.Literal(s))),
  direction: Type.Union([Type.Literal('forward'), Type.Literal('failback')]),
  allowedOperations: Type.Array(Type.Union(ITEM_OPERATIONS.map((o) => Type.Literal(o)))),
  forwardPolicyId: Uuid,
  failbackPolicyId: Uuid,
  agentId: Uuid,
  psId: Uuid,
  mtId: Uuid,
  recoveryMachineId: Type.Union([Uuid, Type.Null()]),
  failbackAgentName: Type.Union([Type.String(), Type.Null()]),
  failbackAgentId: Type.Union([Uuid, Type.Null()]),
  failbackPsId: Type.Union([Uuid, Type.Null()]),
  failbackMtId: Type.Union([Uuid, Type.Null()]),
  /** The recovery point the last failover or change of point used, per disk. */
  failoverPoint: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  disks: Type.Array(DiskView),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type ItemView = Static<typeof ItemView>;

function positionOf(r: ItemRow): ItemPosition {
  if (!isItemState(r.state)) throw new Error(`item ${r.id} has an unknown state ${r.state}`);
  return { state: r.state, direction: r.direction };
}

function view(r: ItemRow & { machine_name: string }, disks: ItemDiskRow[]): ItemView {
  const at = positionOf(r);
  return {
    id: r.id,
    machineId: r.machine_id,
    machineName: r.machine_name,
    state: at.state,
    direction: at.direction,
    allowedOperations: allowedOperations(at),
    forwardPolicyId: r.forward_policy_id,
    failbackPolicyId: r.failback_policy_id,
    agentId: r.agent_id,
    psId: r.ps_id,
    mtId: r.mt_id,
    recoveryMachineId: r.recovery_machine_id,
    failbackAgentName: r.failback_agent_name,
    failbackAgentId: r.failback_agent_id,
    failbackPsId: r.failback_ps_id,
    failbackMtId: r.failback_mt_id,
    failoverPoint: r.failover_point === null ? null : (JSON.parse(r.failover_point) as Record<string, unknown>),
    disks: disks.map((d) => ({
      diskId: d.disk_id,
      sizeBytes: Number(d.size_bytes),
      sourcePath: d.source_path,
      targetPath: d.target_path,
      lineage: d.lineage,
      lastSeq: d.last_seq === null ? null : Number(d.last_seq),
    })),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function itemsQuery(db: Kysely<Database>) {
  return db.selectFrom('items').innerJoin('machines', 'machines.id', 'items.machine_id').selectAll('items').select('machines.name as machine_name');
}

export async function listItems(ctx: CsContext, filter: { state?: string }): Promise<ItemView[]> {
  let q = itemsQuery(ctx.db);
  if (filter.state !== undefined) q = q.where('items.state', '=', filter.state);
  const rows = await q.orderBy('machines.name').orderBy('items.created_at').execute();
  if (rows.length === 0) return [];
  const disks = await ctx.db
    .selectFrom('item_disks')
    .selectAll()
    .where('item_id', 'in', rows.map((r) => r.id))
    .orderBy('disk_id')
    .execute();
  return rows.map((r) => view(r, disks.filter((d) => d.item_id === r.id)));
}

export async function getItem(ctx: CsContext, id: string): Promise<ItemView> {
  const row = await itemsQuery(ctx.db).where('items.id', '=', id).executeTakeFirst();
  if (row === undefined) throw csError('NOT_FOUND', { what: 'item', id });
  const disks = await ctx.db.selectFrom('item_disks').selectAll().where('item_id', '=', id).orderBy('disk_id').execute();
  return view(row, disks);
}

async function component(trx: Transaction<Database>, id: string, kind: ComponentKind, field: string): Promise<void> {
  const row = await trx.selectFrom('components').select(['kind', 'revoked_at']).where('id', '=', id).executeTakeFirst();
  if (row === undefined) throw csError('NOT_FOUND', { what: 'component', id }).at(field);
  if (row.kind !== kind) throw csError('COMPONENT_KIND_MISMATCH', { id, kind: row.kind, expected: kind }).at(field);
  if (row.revoked_at !== null) throw csError('COMPONENT_REVOKED', { id }).at(field);
}

/** Enable replication: the item starts in InitialReplication with the lifecycle's enable job. */
export async function createItem(ctx: CsContext, jobs: JobEngine, input: CreateItem): Promise<{ item: ItemView; job: JobView }> {
  const id = randomUUID();
  const jobId = await ctx.db.transaction().execute(async (trx) => {
    const machine = await trx.selectFrom('machines').select('id').where('id', '=', input.machineId).executeTakeFirst();
    if (machine === undefined) throw csError('NOT_FOUND', { what: 'machine', id: input.machineId }).at('machineId');
    const existing = await trx.selectFrom('items').select('id').where('machine_id', '=', input.machineId).where('state', 'not in', RELEASED_STATES).executeTakeFirst();
    if (existing !== undefined) throw csError('ITEM_EXISTS', { machine: input.machineId, item: existing.id }).at('machineId');
    const policy = await trx.selectFrom('policies').select(['direction', 'pair_id']).where('id', '=', input.policyId).executeTakeFirst();
    if (policy === undefined) throw csError('NOT_FOUND', { what: 'policy', id: input.policyId }).at('policyId');
    if (policy.direction !== 'forward') throw csError('POLICY_NOT_FORWARD', { id: input.policyId }).at('policyId');
    const failback = await trx.selectFrom('policies').select('id').where('pair_id', '=', policy.pair_id).where('direction', '=', 'failback').executeTakeFirstOrThrow();
    await component(trx, input.agentId, 'agent', 'agentId');
    await component(trx, input.psId, 'ps', 'psId');
    await component(trx, input.mtId, 'mt', 'mtId');
    if (input.failbackPsId !== undefined) await component(trx, input.failbackPsId, 'ps', 'failbackPsId');
    if (input.failbackMtId !== undefined) await component(trx, input.failbackMtId, 'mt', 'failbackMtId');
    if (input.recoveryMachineId !== undefined) {
      const recovery = await trx.selectFrom('machines').select('id').where('id', '=', input.recoveryMachineId).executeTakeFirst();
      if (recovery === undefined) throw csError('NOT_FOUND', { what: 'machine', id: input.recoveryMachineId }).at('recoveryMachineId');
      if (input.recoveryMachineId === input.machineId) throw csError('BAD_REQUEST', { message: 'recoveryMachineId must be another machine than machineId' }).at('recoveryMachineId');
    }
    const seen = new Set<string>();
    for (const [i, d] of input.disks.entries()) {
      if (seen.has(d.diskId)) throw csError('BAD_REQUEST', { message: `disks/${i}/diskId ${d.diskId} appears twice` }).at(`disks.${i}.diskId`);
      seen.add(d.diskId);
      // Disk ids name spool and journal directories: unique among live items.
      const user = await trx
        .selectFrom('item_disks')
        .innerJoin('items', 'items.id', 'item_disks.item_id')
        .select('items.id')
        .where('item_disks.disk_id', '=', d.diskId)
        .where('items.state', 'not in', RELEASED_STATES)
        .executeTakeFirst();
      if (user !== undefined) throw csError('DISK_IN_USE', { disk: d.diskId, item: user.id }).at(`disks.${i}.diskId`);
    }
    const at = transition(id, { state: 'Unprotected', direction: 'forward' }, 'enable');
    const now = isoAt(ctx.clock);
    await trx
      .insertInto('items')
      .values({
        id,
        machine_id: input.machineId,
        state: at.state,
        direction: at.direction,
        forward_policy_id: input.policyId,
        failback_policy_id: failback.id,
        agent_id: input.agentId,
        ps_id: input.psId,
        mt_id: input.mtId,
        recovery_machine_id: input.recoveryMachineId ?? null,
        failback_agent_name: input.failbackAgentName ?? null,
        failback_agent_id: null,
        failback_ps_id: input.failbackPsId ?? null,
        failback_mt_id: input.failbackMtId ?? null,
        failover_point: null,
        created_at: now,
        updated_at: now,
      })
      .execute();
    await trx
      .insertInto('item_disks')
      .values(input.disks.map((d) => ({ item_id: id, disk_id: d.diskId, size_bytes: d.sizeBytes, source_path: d.sourcePath, target_path: d.targetPath, lineage: null, last_seq: null })))
      .execute();
    return jobs.enqueueIn(trx, ENABLE_JOB_KIND, { itemId: id }, { resource: itemResource(id) });
  });
  jobs.wake();
  ctx.log.info({ item: id, machine: input.machineId, job: jobId }, 'replication enabled');
  return { item: await getItem(ctx, id), job: await jobs.view(jobId) };
}

/**
 * Applies `operation` to the item (refusing with 409 what the table does not allow from its
 * current state) inside `trx`. Lifecycle tasks end their `-ing` states with it.
 */
export async function transitionItem(trx: Transaction<Database>, clock: Clock, itemId: string, operation: ItemOperation): Promise<ItemPosition> {
  const row = await trx.selectFrom('items').selectAll().where('id', '=', itemId).executeTakeFirst();
  if (row === undefined) throw csError('NOT_FOUND', { what: 'item', id: itemId });
  const next = transition(itemId, positionOf(row), operation);
  // Compare-and-set on the state read: a concurrent change makes this one fail instead of both winning.
  const r = await trx
    .updateTable('items')
    .set({ state: next.state, direction: next.direction, updated_at: isoAt(clock) })
    .where('id', '=', itemId)
    .where('state', '=', row.state)
    .where('direction', '=', row.direction)
    .executeTakeFirst();
  if (Number(r.numUpdatedRows) !== 1) throw csError('TRANSITION_NOT_ALLOWED', { item: itemId, operation, state: 'changing', allowed: 'none until the concurrent change ends' });
  return next;
}

/** Starts an operation on an item: its transition and the job that carries it out, atomically. */
export async function startItemOperation(ctx: CsContext, jobs: JobEngine, itemId: string, operation: ItemOperation, jobKind: string, params: JsonObject = {}): Promise<{ item: ItemView; job: JobView }> {
  const jobId = await ctx.db.transaction().execute(async (trx) => {
    const from = await trx.selectFrom('items').select(['state', 'direction']).where('id', '=', itemId).executeTakeFirst();
    await transitionItem(trx, ctx.clock, itemId, operation);
    // The job learns where the item came from: what there is to undo or clean up depends on it.
    return jobs.enqueueIn(trx, jobKind, { ...params, itemId, from: { state: from?.state, direction: from?.direction } }, { resource: itemResource(itemId) });
  });
  jobs.wake();
  ctx.log.info({ item: itemId, operation, job: jobId }, 'item operation started');
  return { item: await getItem(ctx, itemId), job: await jobs.view(jobId) };
}
