import { isoAt } from '../clock.js';
import type { CsContext } from '../context.js';
import type { ComponentRow } from '../db/schema.js';
import type { HealthReport } from '../domain/health.js';
import { RELEASED_STATES } from '../domain/item-state.js';
import { csError } from '../errors.js';
import { servedBy } from '../inventory/recovery-points.js';

/** Heartbeats: record the health a component reports and clear its missing-heartbeat alert. */

export interface HeartbeatAck {
  receivedAt: string;
  nextHeartbeatSeconds: number;
  tokenExpiresAt: string;
}

const SECTIONS = ['ps', 'mt', 'agent'] as const;

export async function recordHeartbeat(ctx: CsContext, component: ComponentRow, report: HealthReport): Promise<HeartbeatAck> {
  const present = SECTIONS.filter((s) => report[s] !== undefined);
  const stray = present.find((s) => s !== component.kind);
  if (stray !== undefined || !present.includes(component.kind)) throw csError('HEARTBEAT_KIND_MISMATCH', { kind: component.kind }).at(stray ?? component.kind);
  const now = isoAt(ctx.clock);
  await ctx.db.transaction().execute(async (trx) => {
    await trx.updateTable('components').set({ last_heartbeat_at: now, health: JSON.stringify(report), alert_code: null, alert_since: null }).where('id', '=', component.id).execute();
    // Where the master target has applied up to, for each disk it serves.
    for (const j of report.mt?.journals ?? []) {
      await trx
        .updateTable('item_disks')
        .set({ lineage: j.lineage, last_seq: j.lastSeq })
        .where('disk_id', '=', j.diskId)
        .where('item_id', 'in', (eb) => eb.selectFrom('items').select('id').where(servedBy(component.id)).where('state', 'not in', RELEASED_STATES))
        .execute();
    }
  });
  if (component.alert_code !== null) ctx.log.info({ component: component.id, kind: component.kind, name: component.name, code: component.alert_code }, 'heartbeats resumed');
  return { receivedAt: now, nextHeartbeatSeconds: ctx.options.heartbeatIntervalSeconds, tokenExpiresAt: component.token_expires_at };
}
