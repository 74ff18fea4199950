import { Type, type Static } from '@sinclair/typebox';
import type { CsContext } from '../context.js';
import type { ExpressionBuilder } from 'kysely';
import type { ComponentRow, Database, RecoveryPointRow } from '../db/schema.js';
import { RELEASED_STATES } from '../domain/item-state.js';
import { DiskId, Timestamp, Uuid } from '../domain/names.js';
import { csError } from '../errors.js';

/**
 * Recovery points as master targets report them. A report is idempotent: points already known
 * are kept, points older than the journal's retained start are dropped.
 */

export const RecoveryPoint = Type.Object(
  {
    pointId: Type.String({ minLength: 1, maxLength: 256 }),
    bookmarkId: Type.String({ maxLength: 64 }),
    kind: Type.Union([Type.Literal('crash'), Type.Literal('app'), Type.Literal('group')]),
    time: Timestamp,
    lineage: Uuid,
    seq: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);

export const RecoveryPointReport = Type.Object(
  {
    disks: Type.Array(
      Type.Object(
        {
          diskId: DiskId,
          points: Type.Array(RecoveryPoint, { maxItems: 10_000 }),
          /** Points before this time have been pruned from the journal. */
          retainedFrom: Type.Optional(Timestamp),
        },
        { additionalProperties: false },
      ),
      { maxItems: 256 },
    ),
  },
  { additionalProperties: false },
);
export type RecoveryPointReport = Static<typeof RecoveryPointReport>;

export const RecoveryPointView = Type.Composite([Type.Object({ diskId: Type.String() }), RecoveryPoint]);
export type RecoveryPointView = Static<typeof RecoveryPointView>;

/** Items whose replication currently runs into this master target's journals. */
export function servedBy(mtId: string) {
  return (eb: ExpressionBuilder<Database, 'items'>) =>
    eb.or([eb.and([eb('items.direction', '=', 'forward'), eb('items.mt_id', '=', mtId)]), eb.and([eb('items.direction', '=', 'failback'), eb('items.failback_mt_id', '=', mtId)])]);
}

/** Rows per insert statement: well under SQLite's limit on bound parameters. */
const CHUNK = 500;

export async function recordRecoveryPoints(ctx: CsContext, component: ComponentRow, report: RecoveryPointReport): Promise<{ accepted: number; pruned: number; unknownDisks: string[] }> {
  if (component.kind !== 'mt') throw csError('COMPONENT_NOT_ALLOWED', { kind: component.kind, action: 'report recovery points' });
  let accepted = 0;
  let pruned = 0;
  const unknownDisks: string[] = [];
  await ctx.db.transaction().execute(async (trx) => {
    for (const disk of report.disks) {
      // Only disks of live items that this master target serves.
      const owner = await trx
        .selectFrom('item_disks')
        .innerJoin('items', 'items.id', 'item_disks.item_id')
        .select('items.id')
        .where('item_disks.disk_id', '=', disk.diskId)
        .where(servedBy(component.id))
        .where('items.state', 'not in', RELEASED_STATES)
        .executeTakeFirst();
      if (owner === undefined) {
        unknownDisks.push(disk.diskId);
        continue;
      }
      for (let i = 0; i < disk.points.length; i += CHUNK) {
        const rows = disk.points.slice(i, i + CHUNK).map((p) => ({
          item_id: owner.id,
          disk_id: disk.diskId,
          point_id: p.pointId,
          bookmark_id: p.bookmarkId,
          kind: p.kind,
          time: new Date(p.time).toISOString(),
          lineage: p.lineage,
          seq: p.seq,
          mt_id: component.id,
        }));
        const r = await trx
          .insertInto('recovery_points')
          .values(rows)
          .onConflict((oc) => oc.columns(['item_id', 'disk_id', 'point_id']).doNothing())
          .executeTakeFirst();
        accepted += Number(r.numInsertedOrUpdatedRows ?? 0);
      }
      if (disk.retainedFrom !== undefined) {
        const r = await trx
          .deleteFrom('recovery_points')
          .where('item_id', '=', owner.id)
          .where('disk_id', '=', disk.diskId)
          .where('mt_id', '=', component.id)
          .where('time', '<', new Date(disk.retainedFrom).toISOString())
          .executeTakeFirst();
        pruned += Number(r.numDeletedRows);
      }
    }
  });
  if (unknownDisks.length > 0) ctx.log.warn({ component: component.id, disks: unknownDisks }, 'recovery points reported for disks this master target does not serve');
  return { accepted, pruned, unknownDisks };
}

function view(r: RecoveryPointRow): RecoveryPointView {
  return { diskId: r.disk_id, pointId: r.point_id, bookmarkId: r.bookmark_id, kind: r.kind, time: r.time, lineage: r.lineage, seq: Number(r.seq) };
}

/** Newest first. */
export async function listRecoveryPoints(ctx: CsContext, itemId: string, filter: { diskId?: string; limit: number }): Promise<RecoveryPointView[]> {
  const item = await ctx.db.selectFrom('items').select('id').where('id', '=', itemId).executeTakeFirst();
  if (item === undefined) throw csError('NOT_FOUND', { what: 'item', id: itemId });
  let q = ctx.db.selectFrom('recovery_points').selectAll().where('item_id', '=', itemId);
  if (filter.diskId !== undefined) q = q.where('disk_id', '=', filter.diskId);
  const rows = await q.orderBy('time', 'desc').orderBy('seq', 'desc').limit(filter.limit).execute();
  return rows.map(view);
}
