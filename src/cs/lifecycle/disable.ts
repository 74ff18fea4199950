import { defineJobKind } from '../jobs/types.js';
import { rolesFor } from './roles.js';
import { current, ItemParams } from './replicas.js';
import { isAlive, tryCommand, type LifecycleDeps } from './steps.js';

const TIMEOUT_MS = 30_000;

/**
 * Disable protection. Nothing that holds a machine's data is deleted: while replication ran, the
 * replica becomes the target machine's disk again (as far as it had got); after a failover, the
 * machine runs on its own disks and the replica is dropped. Components that are down are skipped
 * (logged): disabling must not depend on them.
 */
export function disableKind(deps: LifecycleDeps) {
  return defineJobKind({
    name: 'disable',
    params: ItemParams,
    tasks: [
      {
        name: 'stop-replication',
        resumable: true,
        async run(ctx) {
          const { item, disks } = await current(ctx, ctx.params.itemId);
          const was = ctx.params.from?.state;
          const direction = ctx.params.from?.direction === 'failback' ? 'failback' : 'forward';
          const roles = rolesFor(item, direction);
          const replicating = was === 'InitialReplication' || was === 'Protected';
          for (const [i, d] of disks.entries()) {
            if (await isAlive(deps, ctx, roles.agentId)) await tryCommand(deps, ctx, roles.agentId, 'unprotectDisk', { diskId: d.disk_id, timeoutMs: 5000 }, d.disk_id, TIMEOUT_MS);
            if (replicating || was === 'FailedOver') {
              await tryCommand(deps, ctx, roles.mtId, 'releaseDisk', { diskId: d.disk_id, ...(replicating ? { handTo: roles.targetPath(d) } : {}) }, d.disk_id, TIMEOUT_MS);
            }
            await tryCommand(deps, ctx, roles.psId, 'discardDisk', { diskId: d.disk_id }, d.disk_id, TIMEOUT_MS);
            await ctx.progress(i + 1, disks.length, d.disk_id);
          }
          await ctx.db.deleteFrom('recovery_points').where('item_id', '=', item.id).execute();
        },
      },
    ],
  });
}
