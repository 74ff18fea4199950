import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { isoAt } from '../clock.js';
import type { CsContext } from '../context.js';
import type { ComponentKind, ComponentRow } from '../db/schema.js';
import { HealthReport } from '../domain/health.js';
import { Timestamp, Uuid } from '../domain/names.js';
import { csError, describe } from '../errors.js';
import { HEARTBEAT_ALERT_CODES } from './monitor.js';

/** Components as operators and pre-flight see them. */

const Status = Type.Union([Type.Literal('healthy'), Type.Literal('pending'), Type.Literal('alert'), Type.Literal('revoked')], {
  description: 'pending: registered, no heartbeat yet, not overdue; alert: heartbeats missing (see alert)',
});
export type ComponentStatus = Static<typeof Status>;

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const ComponentView = Type.Object({
  id: Uuid,
  kind: Type.Union([Type.Literal('agent'), Type.Literal('ps'), Type.Literal('mt')]),
  name: Type.String(),
  status: Status,
  registeredAt: Timestamp,
  lastHeartbeatAt: Nullable(Timestamp),
  heartbeatAgeSeconds: Nullable(Type.Number()),
  certificateSerial: Type.String(),
  certificateNotAfter: Timestamp,
  tokenExpiresAt: Timestamp,
  revokedAt: Nullable(Timestamp),
  alert: Nullable(Type.Object({ code: Type.String(), message: Type.String(), remedy: Type.String(), since: Timestamp })),
  health: Nullable(HealthReport),
});
export type ComponentView = Static<typeof ComponentView>;

export function componentStatus(row: ComponentRow): ComponentStatus {
  if (row.revoked_at !== null) return 'revoked';
  if (row.alert_code !== null) return 'alert';
  return row.last_heartbeat_at === null ? 'pending' : 'healthy';
}

export function heartbeatAgeSeconds(row: ComponentRow, nowMs: number): number | null {
  return row.last_heartbeat_at === null ? null : Math.max(0, (nowMs - Date.parse(row.last_heartbeat_at)) / 1000);
}

function view(row: ComponentRow, nowMs: number): ComponentView {
  const age = heartbeatAgeSeconds(row, nowMs);
  const alert =
    row.alert_code !== null && row.alert_since !== null
      ? { ...describe(HEARTBEAT_ALERT_CODES[row.kind], 'en', { name: row.name, id: row.id, ageSeconds: age }), since: row.alert_since }
      : null;
  return {
    id: row.id,
    kind: row.kind,
    name: row.name,
    status: componentStatus(row),
    registeredAt: row.registered_at,
    lastHeartbeatAt: row.last_heartbeat_at,
    heartbeatAgeSeconds: age,
    certificateSerial: row.cert_serial,
    certificateNotAfter: row.cert_not_after,
    tokenExpiresAt: row.token_expires_at,
    revokedAt: row.revoked_at,
    alert,
    health: row.health === null ? null : (JSON.parse(row.health) as HealthReport),
  };
}

export async function listComponents(ctx: CsContext, filter: { kind?: ComponentKind }): Promise<ComponentView[]> {
  let q = ctx.db.selectFrom('components').selectAll();
  if (filter.kind !== undefined) q = q.where('kind', '=', filter.kind);
  const rows = await q.orderBy('kind').orderBy('name').orderBy('registered_at').execute();
  const now = ctx.clock.now();
  return rows.map((r) => view(r, now));
}

export async function getComponent(ctx: CsContext, id: string): Promise<ComponentView> {
  const row = await ctx.db.selectFrom('components').selectAll().where('id', '=', id).executeTakeFirst();
  if (row === undefined) throw csError('NOT_FOUND', { what: 'component', id });
  return view(row, ctx.clock.now());
}

/** Its token stops working at once; revoking twice keeps the first time. */
export async function revokeComponent(ctx: CsContext, id: string): Promise<ComponentView> {
  await ctx.db.updateTable('components').set({ revoked_at: isoAt(ctx.clock) }).where('id', '=', id).where('revoked_at', 'is', null).execute();
  const v = await getComponent(ctx, id);
  ctx.log.warn({ component: id, kind: v.kind, name: v.name }, 'component revoked');
  return v;
}
