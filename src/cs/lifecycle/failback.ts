import { csError } from '../errors.js';
import { transitionItem } from '../inventory/items.js';
import { defineJobKind, type CompensationContext } from '../jobs/types.js';
import { required } from './roles.js';
import { current, finish, ItemParams, leave, protectSource, resync } from './replicas.js';
import { command, perDisk, power, tryCommand, type LifecycleDeps } from './steps.js';

/**
 * Failback: a planned failover in the failback direction. The running machine is shut down (its
 * agent's clean stop takes a final bookmark and drains it to the PS), the PS drains to the MT,
 * the replica is checked to be exactly at that final bookmark, handed to the original machine as
 * its disk, and that machine is started. A failure leaves the item FailbackFailed for the operator
 * to retry or cancel; a cancel while running rolls back at once.
 */

interface MtPoint {
  id: string;
  bookmarkId?: string;
  lineage: string;
  seq: number;
  time: number;
}

export function failbackKind(deps: LifecycleDeps) {
  return defineJobKind({
    name: 'failback',
    params: ItemParams,
    tasks: [
      {
        name: 'stop-source',
        resumable: true,
        async run(ctx) {
          const { item, roles } = await current(ctx, ctx.params.itemId);
          await power(deps, ctx, required(roles.sourceMachineId, item, 'source machine'), 'stop');
        },
      },
      {
        name: 'drain',
        resumable: true,
        async run(ctx) {
          const { item, disks, roles } = await current(ctx, ctx.params.itemId);
          const ps = required(roles.psId, item, 'process server');
          const timeoutMs = Math.max(1000, deps.context.options.lifecycle.commandTimeoutMs - 5000);
          for (const [i, d] of disks.entries()) {
            const r = await command(deps, ctx, ps, 'drainDisk', { diskId: d.disk_id, timeoutMs }, d.disk_id);
            if (r.drained !== true) throw csError('COMMAND_TIMEOUT', { kind: `drain of ${d.disk_id}`, component: 'the process server', seconds: Math.round(timeoutMs / 1000) });
            await ctx.progress(i + 1, disks.length, d.disk_id);
          }
        },
      },
      {
        name: 'final-point',
        resumable: true,
        async run(ctx) {
          const { item, disks, roles } = await current(ctx, ctx.params.itemId);
          const mt = required(roles.mtId, item, 'master target');
          const final = perDisk<{ pointId: string; time: number }>(ctx, 'final');
          for (const d of disks) {
            const status = await command(deps, ctx, mt, 'diskStatus', { diskId: d.disk_id }, d.disk_id);
            const position = status.position as { lineage: string; lastSeq: number } | undefined;
            const points = (status.points as MtPoint[] | undefined) ?? [];
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
      {
        name: 'start-target',
        resumable: true,
        async run(ctx) {
          const { item, disks, roles } = await current(ctx, ctx.params.itemId);
          await power(deps, ctx, required(roles.targetMachineId, item, 'target machine'), 'start');
          // The original machine's agent may remember protecting its disks before the failover.
          const agentId = item.direction === 'failback' ? item.agent_id : item.failback_agent_id;
          for (const d of disks) await tryCommand(deps, ctx, agentId, 'unprotectDisk', { diskId: d.disk_id, timeoutMs: 1000 }, d.disk_id, 60_000);
        },
      },
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
      {
        name: 'stop-target',
        resumable: true,
        async run(ctx) {
          const { item, roles } = await current(ctx, ctx.params.itemId);
          await power(deps, ctx, required(roles.targetMachineId, item, 'target machine'), 'stop');
        },
      },
      {
        name: 'reattach',
        resumable: true,
        async run(ctx) {
          const { item, disks, roles } = await current(ctx, ctx.params.itemId);
          const mt = required(roles.mtId, item, 'master target');
          for (const d of disks) await command(deps, ctx, mt, 'attachDisk', { diskId: d.disk_id, target: roles.replicaPath(d), sizeBytes: Number(d.size_bytes), adopt: roles.targetPath(d) }, d.disk_id);
        },
      },
      {
        name: 'start-source',
        resumable: true,
        async run(ctx) {
          const { item, roles } = await current(ctx, ctx.params.itemId);
          await power(deps, ctx, required(roles.sourceMachineId, item, 'source machine'), 'start');
        },
      },
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
