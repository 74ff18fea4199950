import { setTimeout as sleep } from 'node:timers/promises';
import { Type, type Static } from '@sinclair/typebox';
import { csError } from '../errors.js';
import { defineJobKind } from '../jobs/types.js';
import { required } from './roles.js';
import { adoptedIn, attachReplicas, startedReplicating, current, finish, leave, powerTask, protectSource, resync, stopReplicating } from './replicas.js';
import { command, isAlive, type LifecycleDeps } from './steps.js';

const ReprotectParams = Type.Object({
  itemId: Type.String(),
  location: Type.Union([Type.Literal('original'), Type.Literal('alternate')], { default: 'original' }),
  from: Type.Optional(Type.Unknown()),
});

/**
 * Reprotect: replicate the other way. The item's direction flipped when the job started, so the
 * roles below are the new direction's: the agent on the machine now running (waited for up to
 * agentRegistrationTimeout, 95226), its PS, and the MT at the site failed away from, whose machine
 * is kept off while its disks become the replicas. Original location adopts those disks and the
 * resync sends only what differs; alternate location starts from empty replicas.
 */
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
