import type { CsContext } from '../context.js';
import type { ComponentsTable } from '../db/schema.js';
import type { HealthReport } from '../domain/health.js';
import type { ItemState } from '../domain/item-state.js';
import { csError } from '../errors.js';
import { DEFAULT_THRESHOLDS, type ComponentFacts, type PreflightFacts } from './facts.js';

/**
 * Fills PreflightFacts for one item from what the configuration server knows: its database
 * rows and the components' last heartbeats. Checks stay pure; this is the only place that reads.
 */
export async function gatherFacts(ctx: CsContext, itemId: string): Promise<PreflightFacts> {
  const db = ctx.db;
  const item = await db.selectFrom('items').selectAll().where('id', '=', itemId).executeTakeFirst();
  if (!item) throw csError('NOT_FOUND', { what: 'item', id: itemId });
  const machine = await db.selectFrom('machines').selectAll().where('id', '=', item.machine_id).executeTakeFirst();
  const ids = [item.agent_id, item.ps_id, item.mt_id];
  const rows = await db.selectFrom('components').selectAll().where('id', 'in', ids).execute();
  const byId = new Map(rows.map((r) => [r.id, r]));
  const policy = await db
    .selectFrom('policies')
    .select('rpo_threshold_s')
    .where('id', '=', item.direction === 'forward' ? item.forward_policy_id : item.failback_policy_id)
    .executeTakeFirst();
  const newest = await db.selectFrom('recovery_points').select('time').where('item_id', '=', itemId).orderBy('time', 'desc').limit(1).executeTakeFirst();
  const now = ctx.clock.now();

  const component = (id: string, fallbackName: string): ComponentFacts => {
    const row: ComponentsTable | undefined = byId.get(id);
    return {
      id,
      name: row?.name ?? fallbackName,
      registered: row !== undefined && row.revoked_at === null,
      lastHeartbeatAgeMs: row?.last_heartbeat_at ? now - Date.parse(row.last_heartbeat_at) : null,
    };
  };
  const health = (id: string): HealthReport | undefined => {
    const text = byId.get(id)?.health;
    return text ? (JSON.parse(text) as HealthReport) : undefined;
  };
  const agent = component(item.agent_id, 'agent');
  const ps = component(item.ps_id, 'process server');
  const mt = component(item.mt_id, 'master target');
  const spool = health(item.ps_id)?.ps;
  const mtHealth = health(item.mt_id);
  const state = item.state as ItemState;
  return {
    item: {
      id: item.id,
      name: machine?.name ?? item.id,
      state,
      direction: item.direction,
      flags: { sourceDeleted: machine === undefined, migrated: state === 'Migrated', protectionDisabled: state === 'ProtectionDisabled' },
    },
    source: { name: machine?.name ?? item.machine_id, exists: machine !== undefined, powerState: machine?.state ?? 'unknown', responding: machine?.state === 'running' },
    agent,
    processServer: {
      ...ps,
      spool: spool ? { ratio: spool.spoolCapacityBytes > 0 ? spool.spoolUsedBytes / spool.spoolCapacityBytes : 0, state: spool.spoolState } : { ratio: 0, state: 'ok' },
    },
    masterTarget: { ...mt, platform: mtHealth?.mt?.platform ?? 'linux', volumes: mtHealth?.mt?.volumes ?? [] },
    policy: { rpoThresholdS: policy?.rpo_threshold_s ?? 0 },
    currentRpoS: newest ? Math.max(0, (now - Date.parse(newest.time)) / 1000) : null,
    thresholds: { ...DEFAULT_THRESHOLDS, heartbeatTimeoutMs: ctx.options.heartbeatTimeoutSeconds * 1000 },
  };
}
