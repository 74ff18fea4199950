import { randomUUID } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { isoAt } from '../clock.js';
import type { CsContext } from '../context.js';
import type { FabricKind, FabricRow } from '../db/schema.js';
import { Name, Timestamp, Uuid } from '../domain/names.js';
import { csError } from '../errors.js';

/** Fabrics: where machines and their disks live. Only the physical fabric is available so far. */

const Kind = Type.Union([Type.Literal('physical'), Type.Literal('vsphere'), Type.Literal('azure')]);
const Config = Type.Record(Type.String(), Type.Unknown(), { description: 'settings of the fabric; their shape depends on the kind' });

export const CreateFabric = Type.Object({ kind: Kind, name: Name, config: Type.Optional(Config) }, { additionalProperties: false });
export type CreateFabric = Static<typeof CreateFabric>;

export const FabricView = Type.Object({ id: Uuid, kind: Kind, name: Type.String(), config: Config, createdAt: Timestamp });
export type FabricView = Static<typeof FabricView>;

const AVAILABLE: readonly FabricKind[] = ['physical'];

function view(r: FabricRow): FabricView {
  return { id: r.id, kind: r.kind, name: r.name, config: JSON.parse(r.config) as Record<string, unknown>, createdAt: r.created_at };
}

export async function createFabric(ctx: CsContext, input: CreateFabric): Promise<FabricView> {
  if (!AVAILABLE.includes(input.kind)) throw csError('FABRIC_KIND_NOT_AVAILABLE', { kind: input.kind }).at('kind');
  const id = randomUUID();
  await ctx.db.transaction().execute(async (trx) => {
    const taken = await trx.selectFrom('fabrics').select('id').where('name', '=', input.name).executeTakeFirst();
    if (taken !== undefined) throw csError('NAME_TAKEN', { what: 'fabric', name: input.name }).at('name');
    await trx
      .insertInto('fabrics')
      .values({ id, kind: input.kind, name: input.name, config: JSON.stringify(input.config ?? {}), created_at: isoAt(ctx.clock) })
      .execute();
  });
  return getFabric(ctx, id);
}

export async function listFabrics(ctx: CsContext): Promise<FabricView[]> {
  const rows = await ctx.db.selectFrom('fabrics').selectAll().orderBy('name').execute();
  return rows.map(view);
}

export async function getFabric(ctx: CsContext, id: string): Promise<FabricView> {
  const row = await ctx.db.selectFrom('fabrics').selectAll().where('id', '=', id).executeTakeFirst();
  if (row === undefined) throw csError('NOT_FOUND', { what: 'fabric', id });
  return view(row);
}
