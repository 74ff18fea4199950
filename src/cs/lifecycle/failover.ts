import { Type, type Static } from '@sinclair/typebox';
import type { DiskStatusAnswer } from '../../mt/commands.js';
import { csError } from '../errors.js';
import { defineJobKind, type TaskContext, type TaskDefinition } from '../jobs/types.js';
import { required } from './roles.js';
import { current, drainTask, finish, leave, powerTask, startTargetMachine } from './replicas.js';
import { command, diskStatus, perDisk, power, tryCommand, type LifecycleDeps } from './steps.js';

/**
 * Failover to a chosen recovery point, and changing that point before commit. The replica and
 * its journal stay untouched at the master target until commit: the recovery machine's disks are
 * written from them (restore to the point), so another point can be chosen as often as needed.
 */

export const POINT_KEYWORDS = ['latest', 'latest-processed', 'latest-app'] as const;
export const PointChoice = Type.String({
  minLength: 1,
  maxLength: 256,
  description: 'latest (drain pending data first) | latest-processed | latest-app | an ISO time (the newest point at or before it) | a point or bookmark id',
});

const FailoverParams = Type.Object({
  itemId: Type.String(),
  point: PointChoice,
  shutdownSource: Type.Boolean({ default: false }),
  from: Type.Optional(Type.Unknown()),
});
const ChangePointParams = Type.Object({ itemId: Type.String(), point: PointChoice, from: Type.Optional(Type.Unknown()) });

type MtPoint = DiskStatusAnswer['points'][number];

/** Picks the MT point for a choice; 'latest' is left to the MT (the newest applied state). */
function choose(diskId: string, choice: string, points: readonly MtPoint[]): string {
  if (choice === 'latest') return 'latest';
  const newest = (list: readonly MtPoint[]) => list.reduce<MtPoint | undefined>((a, p) => (a === undefined || p.time > a.time || (p.time === a.time && p.seq > a.seq) ? p : a), undefined);
  let found: MtPoint | undefined;
  if (choice === 'latest-processed') found = newest(points);
  else if (choice === 'latest-app') found = newest(points.filter((p) => p.kind === 'app'));
  else if (/^\d{4}-\d{2}-\d{2}T/.test(choice) && !Number.isNaN(Date.parse(choice))) found = newest(points.filter((p) => p.time <= Date.parse(choice)));
  else found = points.find((p) => p.id === choice || p.bookmarkId === choice);
  if (found === undefined) throw csError('NO_RECOVERY_POINT', { disk: diskId, point: choice });
  return found.id;
}

function restoreTask<P extends { itemId: string; point: string }>(deps: LifecycleDeps): TaskDefinition<P> {
  return {
    name: 'restore',
    resumable: true,
    async run(ctx: TaskContext<P>) {
      const { item, disks, roles } = await current(ctx, ctx.params.itemId);
      const mt = required(roles.mtId, item, 'master target');
      const chosen = perDisk<{ pointId: string; time: number }>(ctx, 'chosen');
      for (const [i, d] of disks.entries()) {
        if (chosen[d.disk_id]) continue;
        const point = choose(d.disk_id, ctx.params.point, (await diskStatus(deps, ctx, mt, d.disk_id)).points);
        const r = await command(deps, ctx, mt, 'restoreDisk', { diskId: d.disk_id, point, outPath: roles.targetPath(d) }, d.disk_id);
        chosen[d.disk_id] = { pointId: String(r.pointId), time: Number(r.time) };
        await ctx.saveDetails({ chosen });
        await ctx.progress(i + 1, disks.length, `${d.disk_id} at ${new Date(Number(r.time)).toISOString()}`);
      }
      await ctx.db.updateTable('items').set({ failover_point: JSON.stringify({ requested: ctx.params.point, disks: chosen }) }).where('id', '=', item.id).execute();
    },
  };
}

export function failoverKind(deps: LifecycleDeps) {
  return defineJobKind({
    name: 'failover',
    params: FailoverParams,
    tasks: [
      powerTask<Static<typeof FailoverParams>>(deps, 'shutdown-source', 'source', 'stop', (p) => p.shutdownSource),
      // Only 'latest' promises everything that reached the process server.
      drainTask<Static<typeof FailoverParams>>(deps, (p) => p.point === 'latest'),
      restoreTask(deps),
      startTargetMachine(deps, 'start-recovery-machine'),
      finish('failoverDone'),
    ],
    async compensate(ctx) {
      const { item, disks, roles } = await current(ctx, ctx.params.itemId);
      const started = ctx.tasks.find((t) => t.name === 'start-recovery-machine');
      if (started && started.state !== 'pending' && started.state !== 'skipped' && roles.targetMachineId) {
        await power(deps, ctx, roles.targetMachineId, 'stop').catch((err: unknown) => ctx.log.warn({ error: String(err) }, 'could not stop the recovery machine'));
      }
      // Attaching again resumes applying on the replica the restore had frozen.
      for (const d of disks) {
        await tryCommand(deps, ctx, roles.mtId, 'attachDisk', { diskId: d.disk_id, target: roles.replicaPath(d), sizeBytes: Number(d.size_bytes) }, d.disk_id, 30_000);
      }
      if (ctx.params.shutdownSource && roles.sourceMachineId) {
        await power(deps, ctx, roles.sourceMachineId, 'start').catch((err: unknown) => ctx.log.warn({ error: String(err) }, 'could not start the source machine again'));
      }
      await ctx.db.updateTable('items').set({ failover_point: null }).where('id', '=', item.id).execute();
      await leave(ctx, 'failoverAborted', 'FailingOver');
    },
  });
}

export function changePointKind(deps: LifecycleDeps) {
  return defineJobKind({
    name: 'change-point',
    params: ChangePointParams,
    tasks: [
      powerTask(deps, 'stop-recovery-machine', 'target', 'stop'),
      restoreTask(deps),
      startTargetMachine(deps, 'start-recovery-machine'),
    ],
  });
}
