import { Type } from '@sinclair/typebox';
import type { Transaction } from 'kysely';
import type { LentDisks, PowerAction } from '../../fabrics/fabric.js';
import { csError } from '../errors.js';
import { transitionItem } from '../inventory/items.js';
import type { ItemOperation } from '../domain/item-state.js';
import type { CompensationContext, JsonObject, TaskContext, TaskDefinition } from '../jobs/types.js';
import { loadItem, opposite, required, rolesFor, type DirectionRoles, type LoadedItem } from './roles.js';
import { command, componentHealth, machineOf, perDisk, power, tryCommand, waitForFirstPoints, type AnyContext, type LifecycleDeps } from './steps.js';
import { errorMessage } from '../../replication/errors.js';
import type { Database, ItemDiskRow } from '../db/schema.js';

/**
 * The steps that start replication in one direction and the ones that end it, shared by enable,
 * reprotect, cancel-failback and the rollbacks. The master target keeps the replica at
 * `<target disk>.replica`: original location adopts the target machine's disk (renames it), so
 * the resync sends only what differs; alternate location starts from an empty replica.
 */

export const ItemParams = Type.Object({ itemId: Type.String(), from: Type.Optional(Type.Object({ state: Type.Optional(Type.String()), direction: Type.Optional(Type.String()) })) });

export interface ItemTaskParams {
  itemId: string;
  from?: { state?: string; direction?: string } | undefined;
}

export async function current(ctx: { db: TaskContext<unknown>['db'] }, itemId: string): Promise<LoadedItem & { roles: DirectionRoles }> {
  const loaded = await loadItem(ctx.db, itemId);
  return { ...loaded, roles: rolesFor(loaded.item, loaded.item.direction) };
}

/** A task that ends the job's `-ing` state with `operation`. */
export function finish<P extends { itemId: string }>(operation: ItemOperation): TaskDefinition<P> {
  return {
    name: 'done',
    resumable: true,
    run: (ctx) => ctx.db.transaction().execute(async (trx) => void (await transitionItem(trx, ctx.clock, ctx.params.itemId, operation))),
  };
}

/** Leaves the `-ing` state in a rollback; a state already left (a rollback run twice) is fine. */
export async function leave(ctx: CompensationContext<{ itemId: string }>, operation: ItemOperation, from: string): Promise<void> {
  await ctx.db.transaction().execute(async (trx: Transaction<Database>) => {
    const row = await trx.selectFrom('items').select('state').where('id', '=', ctx.params.itemId).executeTakeFirst();
    if (row?.state === from) await transitionItem(trx, ctx.clock, ctx.params.itemId, operation);
  });
}

/** Powers the direction's source or target machine; `when` can make it conditional on the job's parameters. */
export function powerTask<P extends { itemId: string }>(deps: LifecycleDeps, name: string, machine: 'source' | 'target', action: PowerAction, when?: (p: P) => boolean): TaskDefinition<P> {
  return {
    name,
    resumable: true,
    async run(ctx) {
      if (when && !when(ctx.params)) return;
      const { item, roles } = await current(ctx, ctx.params.itemId);
      await power(deps, ctx, required(machine === 'source' ? roles.sourceMachineId : roles.targetMachineId, item, `${machine} machine`), action);
    },
  };
}

/**
 * Starts the direction's target machine (the switch is done: it runs on its own disks now). Its
 * agent may remember protecting them from an earlier cycle: until reprotect it only serves them.
 */
export function startTargetMachine<P extends { itemId: string }>(deps: LifecycleDeps, name: string): TaskDefinition<P> {
  return {
    name,
    resumable: true,
    async run(ctx) {
      const { item, disks, roles } = await current(ctx, ctx.params.itemId);
      await lendTargetDisks(deps, ctx, roles, disks, 'return');
      await power(deps, ctx, required(roles.targetMachineId, item, 'target machine'), 'start');
      const agentThere = rolesFor(item, opposite(item.direction)).agentId;
      for (const d of disks) await tryCommand(deps, ctx, agentThere, 'unprotectDisk', { diskId: d.disk_id, timeoutMs: 1000 }, d.disk_id, 60_000);
    },
  };
}

/** Waits until the direction's PS holds nothing of the item's disks: all of it is applied at the MT. */
export function drainTask<P extends { itemId: string }>(deps: LifecycleDeps, when?: (p: P) => boolean): TaskDefinition<P> {
  return {
    name: 'drain',
    resumable: true,
    async run(ctx) {
      if (when && !when(ctx.params)) return;
      const { item, disks, roles } = await current(ctx, ctx.params.itemId);
      const ps = required(roles.psId, item, 'process server');
      const timeoutMs = Math.max(1000, deps.context.options.lifecycle.commandTimeoutMs - 5000);
      for (const [i, d] of disks.entries()) {
        const r = await command(deps, ctx, ps, 'drainDisk', { diskId: d.disk_id, timeoutMs }, d.disk_id);
        if (r.drained !== true) throw csError('COMMAND_TIMEOUT', { kind: `drain of ${d.disk_id}`, component: 'the process server', seconds: Math.round(timeoutMs / 1000) });
        await ctx.progress(i + 1, disks.length, d.disk_id);
      }
    },
  };
}

/**
 * The target machine's disks become the MT's replicas (`lend`) or the machine's own again
 * (`return`), for fabrics where that takes a step of their own: on vSphere the MT's VM gets the
 * disks hot-added, and loses them before the VM powers on.
 */
export async function lendTargetDisks(deps: LifecycleDeps, ctx: AnyContext, roles: DirectionRoles, disks: readonly ItemDiskRow[], how: 'lend' | 'return'): Promise<LentDisks | undefined> {
  if (roles.targetMachineId === null || roles.mtId === null) return undefined;
  const { machine, fabric: fabricOf } = await machineOf(deps, ctx, roles.targetMachineId);
  const fabric = await fabricOf();
  if ((how === 'lend' ? fabric.lendDisksToMt : fabric.returnDisksFromMt) === undefined) return undefined;
  const mt = await ctx.db.selectFrom('components').select('name').where('id', '=', roles.mtId).executeTakeFirst();
  if (mt === undefined) throw csError('NOT_FOUND', { what: 'component', id: roles.mtId });
  const fabricDisks = disks.map((d) => ({ diskId: d.disk_id, path: roles.targetPath(d), sizeBytes: Number(d.size_bytes) }));
  if (how === 'lend') return fabric.lendDisksToMt?.(machine, mt.name, fabricDisks, ctx.signal);
  await fabric.returnDisksFromMt?.(machine, mt.name, fabricDisks, ctx.signal);
  return undefined;
}

export function attachReplicas<P extends { itemId: string }>(deps: LifecycleDeps, adopt: (p: P) => boolean): TaskDefinition<P> {
  return {
    name: 'attach-replicas',
    resumable: true,
    async run(ctx) {
      const { item, disks, roles } = await current(ctx, ctx.params.itemId);
      const mt = required(roles.mtId, item, 'master target');
      // Where the disks were when lent: a failback pre-flight tells a later Storage vMotion from it.
      const lent = await lendTargetDisks(deps, ctx, roles, disks, 'lend');
      if (lent) await ctx.saveDetails({ lent: { ...lent } });
      const adopted = perDisk<boolean>(ctx, 'adopted');
      // The direction's policy may ask page-blob replicas to keep points as blob snapshots too.
      const policyId = roles.direction === 'forward' ? item.forward_policy_id : item.failback_policy_id;
      const policy = await ctx.db.selectFrom('policies').select('blob_snapshots').where('id', '=', policyId).executeTakeFirst();
      for (const [i, d] of disks.entries()) {
        const params: JsonObject = { diskId: d.disk_id, target: roles.replicaPath(d), sizeBytes: Number(d.size_bytes), ...(policy?.blob_snapshots === 1 ? { blobSnapshots: true } : {}) };
        if (adopt(ctx.params)) params.adopt = roles.targetPath(d);
        const r = await command(deps, ctx, mt, 'attachDisk', params, d.disk_id);
        adopted[d.disk_id] = adopted[d.disk_id] === true || r.adopted === true;
        await ctx.saveDetails({ adopted });
        await ctx.progress(i + 1, disks.length, d.disk_id);
      }
    },
  };
}

export function protectSource<P extends { itemId: string }>(deps: LifecycleDeps): TaskDefinition<P> {
  return {
    name: 'protect',
    resumable: true,
    async run(ctx) {
      const { item, disks, roles } = await current(ctx, ctx.params.itemId);
      const agent = required(roles.agentId, item, 'agent');
      const lineages = perDisk<string>(ctx, 'lineages');
      // Where the agent compares its disks with the replicas (delta resync: only what differs is
      // sent); without it the agent copies every region.
      const mtHealth = roles.mtId === null ? undefined : await componentHealth(ctx, roles.mtId);
      const endpoint = mtHealth?.mt?.resyncEndpoint;
      const resyncTarget: JsonObject | undefined = endpoint ? { host: endpoint.host, port: endpoint.port } : undefined;
      for (const d of disks) {
        // Always a new lineage: a direction change or a first protection must resync, never continue.
        const r = await command(deps, ctx, agent, 'protectDisk', { diskId: d.disk_id, newLineage: true, ...(resyncTarget ? { resyncTarget } : {}) }, d.disk_id);
        lineages[d.disk_id] = String(r.lineage);
        await ctx.saveDetails({ lineages });
      }
    },
  };
}

/** Waits for the resync the protect task started; its lineages come from that task's details. */
export function resync<P extends { itemId: string }>(deps: LifecycleDeps, name: string): TaskDefinition<P> {
  return {
    name,
    resumable: true,
    async run(ctx) {
      const { item, roles } = await current(ctx, ctx.params.itemId);
      const lineages = await savedLineages(ctx);
      await waitForFirstPoints(deps, ctx, { itemId: item.id, mtId: required(roles.mtId, item, 'master target'), agentId: required(roles.agentId, item, 'agent'), lineages });
    },
  };
}

async function savedLineages(ctx: TaskContext<{ itemId: string }>): Promise<Record<string, string>> {
  const row = await ctx.db.selectFrom('tasks').select('details').where('job_id', '=', ctx.job.id).where('name', '=', 'protect').executeTakeFirstOrThrow();
  return ((JSON.parse(row.details) as { lineages?: Record<string, string> }).lineages ?? {});
}

const ROLLBACK_TIMEOUT_MS = 30_000;

/**
 * Undoes attach and protect: the agent stops capturing, the master target lets the replica go —
 * back to the machine's disk path when it was adopted (never delete a machine's disk), deleted
 * when it was new — and the PS drops what it still holds for the disks.
 */
export async function stopReplicating(deps: LifecycleDeps, ctx: CompensationContext<{ itemId: string }>, roles: DirectionRoles, adopted: Readonly<Record<string, boolean>>): Promise<void> {
  const { disks } = await loadItem(ctx.db, ctx.params.itemId);
  for (const d of disks) {
    await tryCommand(deps, ctx, roles.agentId, 'unprotectDisk', { diskId: d.disk_id, timeoutMs: 10_000 }, d.disk_id, ROLLBACK_TIMEOUT_MS);
    const handTo = adopted[d.disk_id] ? { handTo: roles.targetPath(d) } : {};
    await tryCommand(deps, ctx, roles.mtId, 'releaseDisk', { diskId: d.disk_id, ...handTo }, d.disk_id, ROLLBACK_TIMEOUT_MS);
    await tryCommand(deps, ctx, roles.psId, 'discardDisk', { diskId: d.disk_id }, d.disk_id, ROLLBACK_TIMEOUT_MS);
  }
  if (Object.values(adopted).some(Boolean)) {
    await lendTargetDisks(deps, ctx, roles, disks, 'return').catch((err: unknown) => ctx.log.warn({ error: errorMessage(err) }, 'rollback: disks not detached from the master target'));
  }
}

/** Whether the job got as far as touching components (attach or protect ran): otherwise there is nothing to undo. */
export function startedReplicating(ctx: CompensationContext<unknown>): boolean {
  return ctx.tasks.some((t) => (t.name === 'attach-replicas' || t.name === 'protect') && t.state !== 'pending' && t.state !== 'skipped');
}

export function adoptedIn(ctx: CompensationContext<unknown>): Record<string, boolean> {
  return (ctx.tasks.find((t) => t.name === 'attach-replicas')?.details.adopted as Record<string, boolean> | undefined) ?? {};
}
