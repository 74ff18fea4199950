import { csError } from '../errors.js';
import { transitionItem } from '../inventory/items.js';
import { defineJobKind, type CompensationContext } from '../jobs/types.js';
import { required } from './roles.js';
import { current, drainTask, finish, ItemParams, leave, lendTargetDisks, powerTask, protectSource, resync, startTargetMachine } from './replicas.js';
import { command, diskStatus, perDisk, power, tryCommand, type LifecycleDeps } from './steps.js';

/**
 * Failback: a planned failover in the failback direction. The running machine is shut down (its
 * agent's clean stop takes a final bookmark and drains it to the PS), the PS drains to the MT,
 * the replica is checked to be exactly at that final bookmark, handed to the original machine as
 * its disk, and that machine is started. A failure leaves the item FailbackFailed for the operator
 * to retry or cancel; a cancel while running rolls back at once.
 */


export function failbackKind(deps: LifecycleDeps) {
  return defineJobKind({
    name: 'failback',
    params: ItemParams,
    tasks: [
      powerTask(deps, 'stop-source', 'source', 'stop'),
      drainTask(deps),
      {
        name: 'final-point',
        resumable: true,
        async run(ctx) {
          const { item, disks, roles } = await current(ctx, ctx.params.itemId);
          const mt = required(roles.mtId, item, 'master target');
          const final = perDisk<{ pointId: string; time: number }>(ctx, 'final');
          for (const d of disks) {
            const { position, points } = await diskStatus(deps, ctx, mt, d.disk_id);
            // The newest point must be the shutdown bookmark, with nothing applied after it.
            const last = points.filter((p) => p.lineage === position?.lineage).sort((a, b) => a.seq - b.seq).at(-1);
            if (!last || !last.bookmarkId?.startsWith('shutdown-') || position === undefined || last.seq < position.lastSeq) throw csError('NO_FINAL_BOOKMARK', { disk: d.disk_id });
            final[d.disk_id] = { pointId: last.id, time: last.time };
          }
          await ctx.saveDetails({ final });
        },
      },
      {
        name: 'switch',
        resumable: true,
        async run(ctx) {
          const { item, disks, roles } = await current(ctx, ctx.params.itemId);
          const mt = required(roles.mtId, item, 'master target');
          for (const d of disks) await command(deps, ctx, mt, 'releaseDisk', { diskId: d.disk_id, handTo: roles.targetPath(d) }, d.disk_id);
          await ctx.db.deleteFrom('recovery_points').where('item_id', '=', item.id).where('mt_id', '=', mt).execute();
        },
      },
      startTargetMachine(deps, 'start-target'),
      finish('failbackDone'),
    ],
    async compensate(ctx) {
      if (ctx.outcome.state === 'cancelled') {
        await rollBack(deps, ctx);
        await leave(ctx, 'failbackAborted', 'FailingBack');
      } else {
        await ctx.db.transaction().execute(async (trx) => {
          const row = await trx.selectFrom('items').select('state').where('id', '=', ctx.params.itemId).executeTakeFirst();
          if (row?.state === 'FailingBack') await transitionItem(trx, ctx.clock, ctx.params.itemId, 'failbackFailed');
        });
      }
    },
  });
}

/** Puts things back as before the failback: the original machine off, the replica re-attached, the running machine on. */
async function rollBack(deps: LifecycleDeps, ctx: CompensationContext<{ itemId: string }>): Promise<void> {
  const { disks, roles } = await current(ctx, ctx.params.itemId);
  if (roles.targetMachineId) await power(deps, ctx, roles.targetMachineId, 'stop');
  await lendTargetDisks(deps, ctx, roles, disks, 'lend');
  for (const d of disks) {
    await tryCommand(deps, ctx, roles.mtId, 'attachDisk', { diskId: d.disk_id, target: roles.replicaPath(d), sizeBytes: Number(d.size_bytes), adopt: roles.targetPath(d) }, d.disk_id, 60_000);
  }
  if (roles.sourceMachineId) await power(deps, ctx, roles.sourceMachineId, 'start');
}

/**
 * Cancel a failback that failed: the original machine is stopped, the replica taken back, the
 * machine that ran before started again, and its agent resyncs on a new lineage — the original
 * machine may have written to the disk after the switch, and only a resync can prove the replica.
 */
export function cancelFailbackKind(deps: LifecycleDeps) {
  return defineJobKind({
    name: 'cancel-failback',
    params: ItemParams,
    tasks: [
      powerTask(deps, 'stop-target', 'target', 'stop'),
      {
        name: 'reattach',
        resumable: true,
        async run(ctx) {
          const { item, disks, roles } = await current(ctx, ctx.params.itemId);
          const mt = required(roles.mtId, item, 'master target');
          await lendTargetDisks(deps, ctx, roles, disks, 'lend');
          for (const d of disks) await command(deps, ctx, mt, 'attachDisk', { diskId: d.disk_id, target: roles.replicaPath(d), sizeBytes: Number(d.size_bytes), adopt: roles.targetPath(d) }, d.disk_id);
        },
      },
      powerTask(deps, 'start-source', 'source', 'start'),
      protectSource(deps),
      resync(deps, 'resync'),
      finish('cancelFailbackDone'),
    ],
    async compensate(ctx) {
      // Back to FailbackFailed: the operator may cancel again (or retry the failback) once the cause is fixed.
      await leave(ctx, 'cancelFailbackFailed', 'CancellingFailback');
    },
  });
}
