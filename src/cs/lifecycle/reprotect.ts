import { setTimeout as sleep } from 'node:timers/promises';
import { Type, type Static } from '@sinclair/typebox';
import { csError } from '../errors.js';
import { defineJobKind } from '../jobs/types.js';
import { alternateMachineName, required } from './roles.js';
import { adoptedIn, attachReplicas, startedReplicating, current, finish, leave, powerTask, protectSource, resync, stopReplicating } from './replicas.js';
import { command, isAlive, machineOf, type LifecycleDeps } from './steps.js';
import type { TaskContext } from '../jobs/types.js';

const ReprotectParams = Type.Object({
  itemId: Type.String(),
  location: Type.Union([Type.Literal('original'), Type.Literal('alternate')], { default: 'original' }),
  /** Alternate location on a fabric that creates machines (vSphere): the new machine's name and datastore. */
  machineName: Type.Optional(Type.String()),
  datastore: Type.Optional(Type.String()),
  from: Type.Optional(Type.Unknown()),
});

/**
 * Reprotect: replicate the other way. The item's direction flipped when the job started, so the
 * roles below are the new direction's: the agent on the machine now running (waited for up to
 * agentRegistrationTimeout, 95226), its PS, and the MT at the site failed away from, whose machine
 * is kept off while its disks become the replicas. Original location adopts those disks and the
 * resync sends only what differs; alternate location starts from empty replicas.
 */
/**
 * Alternate location on a fabric that creates machines: a new machine on the MT's host takes the
 * place of the old one in the item (its power and its disks' paths); the old one is left as it is.
 * On the physical fabric alternate location means new, empty replicas at the same paths.
 */
async function createTargetMachine(deps: LifecycleDeps, ctx: TaskContext<Static<typeof ReprotectParams>>, p: Static<typeof ReprotectParams>): Promise<void> {
  const { item, disks, roles } = await current(ctx, p.itemId);
  const targetId = required(roles.targetMachineId, item, 'target machine');
  const mtId = required(roles.mtId, item, 'master target');
  const { machine, fabric: fabricOf } = await machineOf(deps, ctx, targetId);
  const fabric = await fabricOf();
  if (fabric.createMachineLike === undefined) return;
  const mt = await ctx.db.selectFrom('components').select('name').where('id', '=', mtId).executeTakeFirstOrThrow();
  const name = p.machineName ?? alternateMachineName(machine.name);
  await ctx.progress(0, 1, `creating ${name} on the master target's host`);
  const created = await fabric.createMachineLike(machine, mt.name, disks.map((d) => ({ diskId: d.disk_id, sizeBytes: Number(d.size_bytes) })), { name, ...(p.datastore ? { datastore: p.datastore } : {}) }, ctx.signal);
  const column = roles.direction === 'forward' ? 'target_path' : 'source_path';
  await ctx.db.transaction().execute(async (trx) => {
    await trx.updateTable('machines').set({ power: JSON.stringify(created.power), state: 'stopped' }).where('id', '=', targetId).execute();
    for (const d of created.disks) await trx.updateTable('item_disks').set({ [column]: d.path }).where('item_id', '=', item.id).where('disk_id', '=', d.diskId).execute();
  });
  ctx.log.info({ machine: name, disks: created.disks.length }, 'machine created for alternate-location recovery');
}

export function reprotectKind(deps: LifecycleDeps) {
  return defineJobKind({
    name: 'reprotect',
    params: ReprotectParams,
    tasks: [
      {
        name: 'wait-for-agent',
        resumable: true,
        async run(ctx) {
          const { item, roles } = await current(ctx, ctx.params.itemId);
          if (roles.agentId !== null && (await isAlive(deps, ctx, roles.agentId))) return;
          const name = roles.agentName ?? (roles.agentId === null ? null : (await ctx.db.selectFrom('components').select('name').where('id', '=', roles.agentId).executeTakeFirst())?.name ?? null);
          const agentName = required(name, item, 'agent name');
          const { agentRegistrationTimeoutMs: timeoutMs, pollMs } = deps.context.options.lifecycle;
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const row = await ctx.db.selectFrom('components').select('id').where('kind', '=', 'agent').where('name', '=', agentName).where('revoked_at', 'is', null).executeTakeFirst();
            if (row !== undefined && (await isAlive(deps, ctx, row.id))) {
              if (item.direction === 'failback') await ctx.db.updateTable('items').set({ failback_agent_id: row.id }).where('id', '=', item.id).execute();
              else await ctx.db.updateTable('items').set({ agent_id: row.id }).where('id', '=', item.id).execute();
              return;
            }
            if (Date.now() >= deadline) throw csError('95226', { name: agentName, seconds: Math.round(timeoutMs / 1000) });
            await ctx.progress(0, 1, `waiting for agent ${agentName} to register and report`);
            await sleep(pollMs, undefined, { signal: ctx.signal });
          }
        },
      },
      powerTask(deps, 'stop-target-machine', 'target', 'stop'),
      {
        name: 'create-target-machine',
        resumable: true,
        async run(ctx) {
          if (ctx.params.location !== 'alternate' || ctx.details.created !== undefined) return;
          await createTargetMachine(deps, ctx, ctx.params);
          await ctx.saveDetails({ created: true });
        },
      },
      {
        name: 'discard-stale',
        resumable: true,
        async run(ctx) {
          // Batches an earlier lineage left at this PS must never reach the replica.
          const { item, disks, roles } = await current(ctx, ctx.params.itemId);
          const ps = required(roles.psId, item, 'process server');
          for (const d of disks) await command(deps, ctx, ps, 'discardDisk', { diskId: d.disk_id }, d.disk_id);
        },
      },
      attachReplicas<Static<typeof ReprotectParams>>(deps, (p) => p.location === 'original'),
      protectSource(deps),
      resync(deps, 'resync'),
      finish('reprotectDone'),
    ],
    async compensate(ctx) {
      const { roles } = await current(ctx, ctx.params.itemId);
      if (startedReplicating(ctx)) await stopReplicating(deps, ctx, roles, adoptedIn(ctx));
      await leave(ctx, 'reprotectAborted', 'Reprotecting');
    },
  });
}
