import { ENABLE_JOB_KIND } from '../inventory/items.js';
import { defineJobKind } from '../jobs/types.js';
import { adoptedIn, attachReplicas, current, finish, ItemParams, leave, protectSource, resync, stopReplicating } from './replicas.js';
import type { LifecycleDeps } from './steps.js';

/**
 * Enable replication: the MT at the recovery site takes a replica for each disk (adopting the
 * recovery machine's disk when one exists already, as a seed), the agent starts a lineage and
 * resyncs, and the item is Protected once every disk has its first recovery point.
 */
export function enableKind(deps: LifecycleDeps) {
  return defineJobKind({
    name: ENABLE_JOB_KIND,
    params: ItemParams,
    tasks: [attachReplicas(deps, () => true), protectSource(deps), resync(deps, 'initial-replication'), finish('initialReplicationDone')],
    async compensate(ctx) {
      const { roles } = await current(ctx, ctx.params.itemId);
      await stopReplicating(deps, ctx, roles, adoptedIn(ctx));
      await leave(ctx, 'initialReplicationAborted', 'InitialReplication');
    },
  });
}
