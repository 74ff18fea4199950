import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Fabric, FabricMachine, PowerAction } from '../../fabrics/fabric.js';
import type { DiskStatusAnswer } from '../../mt/commands.js';
import { errorMessage } from '../../replication/errors.js';
import type { CommandBus } from '../components/commands.js';
import type { CsContext } from '../context.js';
import type { FabricRow, ItemDiskRow } from '../db/schema.js';
import type { AgentHealth, HealthReport } from '../domain/health.js';
import { isoAt } from '../clock.js';
import { csError } from '../errors.js';
import type { CompensationContext, JsonObject, TaskContext } from '../jobs/types.js';

/**
 * The operations lifecycle tasks are made of: commands to components, power through the
 * machine's fabric, and waiting for what components report. Every one is idempotent, so a task
 * resumed after a CS restart can simply run again.
 */

export interface LifecycleDeps {
  readonly context: CsContext;
  readonly commands: CommandBus;
  /** The client of a fabric the CS knows (its row: kind and settings). */
  readonly fabric: (row: FabricRow) => Fabric | Promise<Fabric>;
}


export type AnyContext = TaskContext<unknown> | CompensationContext<unknown>;

/**
 * Sends a command and waits for its answer. The id is made of the job, the step and `label`, so
 * the same step sends it once however often it runs — except compensation, which may need a
 * fresh attempt, so it includes the job's resume count.
 */
export function command(deps: LifecycleDeps, ctx: AnyContext, componentId: string, kind: string, params: JsonObject, label: string, timeoutMs?: number): Promise<JsonObject> {
  const step = 'task' in ctx ? ctx.task.name : `compensate-${randomUUID().slice(0, 8)}`;
  return deps.commands.call(
    {
      id: `${ctx.job.id}/${step}/${kind}/${label}`,
      componentId,
      kind,
      params,
      jobId: ctx.job.id,
      timeoutMs: timeoutMs ?? deps.context.options.lifecycle.commandTimeoutMs,
    },
    ctx.signal,
  );
}

/** The master target's view of a disk's replica: its position and the recovery points its journal holds. */
export async function diskStatus(deps: LifecycleDeps, ctx: TaskContext<unknown>, mtId: string, diskId: string): Promise<DiskStatusAnswer> {
  const answer = (await command(deps, ctx, mtId, 'diskStatus', { diskId }, diskId)) as Partial<DiskStatusAnswer>;
  return { position: answer.position, frozen: answer.frozen === true, points: answer.points ?? [] };
}

/** Best effort, for rollbacks: a component that is down must not keep the rollback from finishing. */
export async function tryCommand(deps: LifecycleDeps, ctx: AnyContext, componentId: string | null, kind: string, params: JsonObject, label: string, timeoutMs: number): Promise<boolean> {
  if (componentId === null) return false;
  try {
    await command(deps, ctx, componentId, kind, params, label, timeoutMs);
    return true;
  } catch (err) {
    ctx.log.warn({ kind, component: componentId, error: errorMessage(err) }, 'rollback step skipped');
    return false;
  }
}

/**
 * Powers a machine through its fabric and records the state it was put in. A machine whose hooks
 * say `manual` is powered by a person: the job asks (its progress says what and how to confirm)
 * and waits for `POST /v1/jobs/:id/confirm`.
 */
export async function power(deps: LifecycleDeps, ctx: AnyContext, machineId: string, action: PowerAction): Promise<void> {
  const { machine, fabric } = await machineOf(deps, ctx, machineId);
  if (machine.power.manual === true) await confirmedByOperator(deps, ctx, machine, action);
  else {
    try {
      await (await fabric()).power(machine, action, ctx.signal);
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      throw csError('POWER_HOOK_FAILED', { machine: machine.name, action, message: errorMessage(err) });
    }
  }
  await ctx.db.updateTable('machines').set({ state: action === 'start' ? 'running' : 'stopped' }).where('id', '=', machineId).execute();
  ctx.log.info({ machine: machine.name, action }, 'machine powered');
}

/** A machine as its fabric describes it, and (when needed) that fabric's client. */
export async function machineOf(deps: LifecycleDeps, ctx: AnyContext, machineId: string): Promise<{ machine: FabricMachine; fabric: () => Promise<Fabric> }> {
  const row = await ctx.db.selectFrom('machines').select(['id', 'name', 'power', 'fabric_id']).where('id', '=', machineId).executeTakeFirst();
  if (row === undefined) throw csError('NOT_FOUND', { what: 'machine', id: machineId });
  const machine: FabricMachine = { id: row.id, name: row.name, power: JSON.parse(row.power) as Record<string, unknown> };
  const fabric = async () => {
    const f = await ctx.db.selectFrom('fabrics').selectAll().where('id', '=', row.fabric_id).executeTakeFirst();
    if (f === undefined) throw csError('NOT_FOUND', { what: 'fabric', id: row.fabric_id });
    return deps.fabric(f);
  };
  return { machine, fabric };
}

async function confirmedByOperator(deps: LifecycleDeps, ctx: AnyContext, machine: FabricMachine, action: PowerAction): Promise<void> {
  await ctx.db
    .insertInto('power_confirmations')
    .values({ job_id: ctx.job.id, machine_id: machine.id, action, requested_at: isoAt(ctx.clock), confirmed_at: null })
    .onConflict((oc) => oc.columns(['job_id', 'machine_id', 'action']).doNothing())
    .execute();
  ctx.log.warn({ machine: machine.name, action }, 'waiting for an operator to confirm a power operation');
  for (;;) {
    const r = await ctx.db.selectFrom('power_confirmations').select('confirmed_at').where('job_id', '=', ctx.job.id).where('machine_id', '=', machine.id).where('action', '=', action).executeTakeFirst();
    if (r?.confirmed_at) return;
    if ('task' in ctx) await ctx.progress(0, 1, `waiting for an operator to ${action} ${machine.name}, then: boomerang job confirm ${ctx.job.id}`);
    await sleep(deps.context.options.lifecycle.pollMs, undefined, { signal: ctx.signal });
  }
}

export async function componentHealth(ctx: AnyContext, id: string): Promise<HealthReport | undefined> {
  const row = await ctx.db.selectFrom('components').select('health').where('id', '=', id).executeTakeFirst();
  return row?.health ? (JSON.parse(row.health) as HealthReport) : undefined;
}

/** Heard from within the heartbeat timeout: worth sending a command that should be answered soon. */
export async function isAlive(deps: LifecycleDeps, ctx: AnyContext, id: string | null): Promise<boolean> {
  if (id === null) return false;
  const row = await ctx.db.selectFrom('components').select(['last_heartbeat_at', 'revoked_at']).where('id', '=', id).executeTakeFirst();
  if (!row?.last_heartbeat_at || row.revoked_at !== null) return false;
  return ctx.clock.now() - Date.parse(row.last_heartbeat_at) <= deps.context.options.heartbeatTimeoutSeconds * 1000;
}

export type AgentDiskHealth = AgentHealth['disks'][number];

/**
 * Waits until the master target has reported a recovery point of `lineage` on every disk: the
 * resync that starts a lineage ends with its first bookmark, so that point means "replica
 * consistent". Progress comes from the agent's heartbeats (regions resynced).
 */
export async function waitForFirstPoints(
  deps: LifecycleDeps,
  ctx: TaskContext<unknown>,
  o: { itemId: string; mtId: string; agentId: string; lineages: Readonly<Record<string, string>> },
): Promise<void> {
  const { pollMs, resyncTimeoutMs } = deps.context.options.lifecycle;
  const deadline = Date.now() + resyncTimeoutMs;
  const disks = Object.keys(o.lineages);
  for (;;) {
    ctx.signal.throwIfAborted();
    const rows = await ctx.db
      .selectFrom('recovery_points')
      .select(['disk_id', 'lineage'])
      .where('item_id', '=', o.itemId)
      .where('mt_id', '=', o.mtId)
      .where('disk_id', 'in', disks)
      .execute();
    const ready = disks.filter((d) => rows.some((r) => r.disk_id === d && r.lineage === o.lineages[d]));
    const health = await componentHealth(ctx, o.agentId);
    let done = 0;
    let total = 0;
    for (const d of disks) {
      const h = health?.agent?.disks.find((x) => x.diskId === d && x.lineage === o.lineages[d]);
      const t = h?.resyncTotal ?? 0;
      total += Math.max(t, 1);
      done += ready.includes(d) ? Math.max(t, 1) : Math.min(h?.resyncDone ?? 0, Math.max(t, 1) - 1);
    }
    await ctx.progress(done, total, `${ready.length}/${disks.length} disks consistent`);
    if (ready.length === disks.length) return;
    if (Date.now() > deadline) throw csError('RESYNC_TIMEOUT', { disk: disks.find((d) => !ready.includes(d)) ?? '?', seconds: Math.round(resyncTimeoutMs / 1000) });
    await sleep(pollMs, undefined, { signal: ctx.signal });
  }
}

/** Details a task saves per disk, read back when it resumes. */
export function perDisk<T>(ctx: TaskContext<unknown>, key: string): Record<string, T> {
  return { ...((ctx.details[key] as Record<string, T> | undefined) ?? {}) };
}

export function diskIds(disks: readonly ItemDiskRow[]): string[] {
  return disks.map((d) => d.disk_id);
}
