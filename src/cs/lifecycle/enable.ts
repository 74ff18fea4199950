import { ENABLE_JOB_KIND } from '../inventory/items.js';
import { defineJobKind } from '../jobs/types.js';
import { adoptedIn, attachReplicas, startedReplicating, current, finish, ItemParams, leave, protectSource, resync, stopReplicating } from './replicas.js';
import { preflightTask } from './preflight-task.js';
import type { LifecycleDeps } from './steps.js';

/**
 * Enable replication: pre-flight on the new item, then the MT at the recovery site takes a replica for each disk (adopting the
 * recovery machine's disk when one exists already, as a seed), the agent starts a lineage and
 * resyncs, and the item is Protected once every disk has its first recovery point.
 */
export function enableKind(deps: LifecycleDeps) {
  return defineJobKind({
    name: ENABLE_JOB_KIND,
    params: ItemParams,
    // The item exists only now, in InitialReplication: its state was checked by the request.
    tasks: [preflightTask(deps, 'enable', ['item-already-protected']), attachReplicas(deps, () => true), protectSource(deps), resync(deps, 'initial-replication'), finish('initialReplicationDone')],
    async compensate(ctx) {
      const { roles } = await current(ctx, ctx.params.itemId);
      if (startedReplicating(ctx)) await stopReplicating(deps, ctx, roles, adoptedIn(ctx));
      await leave(ctx, 'initialReplicationAborted', 'InitialReplication');
    },
  });
}
