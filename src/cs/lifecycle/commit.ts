import { defineJobKind } from '../jobs/types.js';
import { rolesFor } from './roles.js';
import { current, ItemParams } from './replicas.js';
import { command, isAlive, tryCommand, type LifecycleDeps } from './steps.js';

/**
 * Commit after a failover or a failback: the recovery points of the direction that was failed
 * over can no longer be chosen, so the master target drops that replica and its journal, the PS
 * the batches it still holds, and the old source's agent (if it still runs) stops capturing.
 * The machine now running keeps its own disks.
 */
export function commitKind(deps: LifecycleDeps) {
  return defineJobKind({
    name: 'commit',
    params: ItemParams,
    tasks: [
      {
        name: 'release-replicas',
        resumable: true,
        async run(ctx) {
          const { item, disks } = await current(ctx, ctx.params.itemId);
          const roles = rolesFor(item, item.direction);
          if (roles.mtId === null) return;
          // After a failback the switch has handed the replica over already; this is then a no-op.
          for (const d of disks) await command(deps, ctx, roles.mtId, 'releaseDisk', { diskId: d.disk_id }, d.disk_id);
          await ctx.db.deleteFrom('recovery_points').where('item_id', '=', item.id).where('mt_id', '=', roles.mtId).execute();
        },
      },
      {
        name: 'discard-spool',
        resumable: true,
        async run(ctx) {
          const { item, disks } = await current(ctx, ctx.params.itemId);
          const roles = rolesFor(item, item.direction);
          if (roles.psId === null) return;
          for (const d of disks) await command(deps, ctx, roles.psId, 'discardDisk', { diskId: d.disk_id }, d.disk_id);
        },
      },
      {
        name: 'stop-old-capture',
        resumable: true,
        async run(ctx) {
          // The old source is usually off after a failover; when it still runs, it must stop sending.
          const { item, disks } = await current(ctx, ctx.params.itemId);
          const roles = rolesFor(item, item.direction);
          const machine = roles.sourceMachineId === null ? undefined : await ctx.db.selectFrom('machines').select('state').where('id', '=', roles.sourceMachineId).executeTakeFirst();
          if (machine?.state === 'stopped' || !(await isAlive(deps, ctx, roles.agentId))) return;
          for (const d of disks) await tryCommand(deps, ctx, roles.agentId, 'unprotectDisk', { diskId: d.disk_id, timeoutMs: 1000 }, d.disk_id, 15_000);
        },
      },
    ],
  });
}
