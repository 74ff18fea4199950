import type { CsContext } from '../context.js';
import type { ComponentsTable } from '../db/schema.js';
import type { HealthReport } from '../domain/health.js';
import type { ItemState } from '../domain/item-state.js';
import { csError } from '../errors.js';
import { opposite, rolesFor } from '../lifecycle/roles.js';
import type { Operation } from './types.js';
import { receivingVsphereFacts, sendingMachineFacts, type OperationRequest } from './gather-fabrics.js';
import { DEFAULT_THRESHOLDS, type ComponentFacts, type PreflightFacts } from './facts.js';

/**
 * Fills PreflightFacts for one item from what the configuration server knows: its database
 * rows and the components' last heartbeats. Checks stay pure; this is the only place that reads.
 */
export async function gatherFacts(ctx: CsContext, itemId: string, operation?: Operation, request: OperationRequest = {}): Promise<PreflightFacts> {
  const db = ctx.db;
  const item = await db.selectFrom('items').selectAll().where('id', '=', itemId).executeTakeFirst();
  if (!item) throw csError('NOT_FOUND', { what: 'item', id: itemId });
  // The components and machine that the operation will replicate with: reprotect the other way.
  const direction = operation === 'reprotect' ? opposite(item.direction) : item.direction;
  const roles = rolesFor(item, direction);
  const machineId = roles.sourceMachineId ?? item.machine_id;
  const machine = await db.selectFrom('machines').selectAll().where('id', '=', machineId).executeTakeFirst();
  const agentRow =
    roles.agentId !== null
      ? undefined
      : roles.agentName === null
        ? undefined
        : await db.selectFrom('components').select('id').where('kind', '=', 'agent').where('name', '=', roles.agentName).where('revoked_at', 'is', null).executeTakeFirst();
  const agentId = roles.agentId ?? agentRow?.id ?? (roles.agentName === null ? 'unconfigured' : 'unregistered');
  const psId = roles.psId ?? 'unconfigured';
  const mtId = roles.mtId ?? 'unconfigured';
  const ids = [agentId, psId, mtId];
  const rows = await db.selectFrom('components').selectAll().where('id', 'in', ids).execute();
  const byId = new Map(rows.map((r) => [r.id, r]));
  const policy = await db
    .selectFrom('policies')
    .select('rpo_threshold_s')
    .where('id', '=', direction === 'forward' ? item.forward_policy_id : item.failback_policy_id)
    .executeTakeFirst();
  const newest = await db.selectFrom('recovery_points').select('time').where('item_id', '=', itemId).orderBy('time', 'desc').limit(1).executeTakeFirst();
  const now = ctx.clock.now();

  const component = (id: string, fallbackName: string): ComponentFacts => {
    const row: ComponentsTable | undefined = byId.get(id);
    return {
      id,
      configured: id !== 'unconfigured',
      name: row?.name ?? fallbackName,
      registered: row !== undefined && row.revoked_at === null,
      lastHeartbeatAgeMs: row?.last_heartbeat_at ? now - Date.parse(row.last_heartbeat_at) : null,
    };
  };
  const health = (id: string): HealthReport | undefined => {
    const text = byId.get(id)?.health;
    return text ? (JSON.parse(text) as HealthReport) : undefined;
  };
  const agent = component(agentId, roles.agentName ?? 'agent');
  const ps = component(psId, 'process server');
  const mt = component(mtId, 'master target');
  const spool = health(psId)?.ps;
  const mtHealth = health(mtId);
  // A machine whose agent reports is running, whatever the last power operation recorded.
  const agentAlive = agent.registered && agent.lastHeartbeatAgeMs !== null && agent.lastHeartbeatAgeMs <= ctx.options.heartbeatTimeoutSeconds * 1000;
  const fabricSays = await sendingMachineFacts(ctx, machine);
  const exists = machine !== undefined && fabricSays?.exists !== false;
  const powerState = agentAlive ? 'running' : (fabricSays?.powerState ?? machine?.state ?? 'unknown');
  const responding = agentAlive || (fabricSays?.responding ?? powerState === 'running');
  const vsphere = await receivingVsphereFacts(ctx, item, roles, operation, request);
  const state = item.state as ItemState;
  return {
    item: {
      id: item.id,
      name: machine?.name ?? item.id,
      state,
      direction,
      flags: {
        failbackConfigured: item.recovery_machine_id !== null && item.failback_agent_name !== null && item.failback_ps_id !== null && item.failback_mt_id !== null,
        sourceDeleted: !exists, migrated: state === 'Migrated', protectionDisabled: state === 'ProtectionDisabled' },
    },
    source: { name: machine?.name ?? machineId, exists, powerState, responding },
    agent,
    processServer: {
      ...ps,
      spool: spool ? { ratio: spool.spoolCapacityBytes > 0 ? spool.spoolUsedBytes / spool.spoolCapacityBytes : 0, state: spool.spoolState } : { ratio: 0, state: 'ok' },
    },
    masterTarget: { ...mt, platform: mtHealth?.mt?.platform ?? 'linux', volumes: mtHealth?.mt?.volumes ?? [], ...(mtHealth?.mt?.retentionPath ? { retentionPath: mtHealth.mt.retentionPath } : {}) },
    policy: { rpoThresholdS: policy?.rpo_threshold_s ?? 0 },
    currentRpoS: newest ? Math.max(0, (now - Date.parse(newest.time)) / 1000) : null,
    thresholds: { ...DEFAULT_THRESHOLDS, heartbeatTimeoutMs: ctx.options.heartbeatTimeoutSeconds * 1000 },
    ...(vsphere ? { vsphere } : {}),
  };
}
