import { randomUUID } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { isoAt } from '../clock.js';
import type { CsContext } from '../context.js';
import type { FabricKind, FabricRow } from '../db/schema.js';
import { Name, Timestamp, Uuid } from '../domain/names.js';
import { csError } from '../errors.js';
import { ClientSecret, parseAzureConfig } from './azure-config.js';
import { checkAzureLogin } from './azure-connect.js';
import { parseVsphereConfig, Password } from './vsphere-config.js';
import { checkLogin } from './vsphere-connect.js';
import { inventoryRefresher } from './vsphere-inventory.js';

/**
 * Fabrics: where machines and their disks live. Physical, vsphere and azure fabrics are available.
 * A vsphere fabric is checked by logging in to its vCenter before anything is stored, and its
 * inventory is read right after (vsphere-inventory.ts). An azure fabric is checked by a token from
 * Entra ID and one Resource Manager read (azure-connect.ts). The secret of either (the vCenter
 * password, the client secret) is kept in `fabric_secrets.password` and never returned.
 */

const Kind = Type.Union([Type.Literal('physical'), Type.Literal('vsphere'), Type.Literal('azure')]);
const Config = Type.Record(Type.String(), Type.Unknown(), {
  description: 'settings of the fabric; their shape depends on the kind (vsphere: url, username, and thumbprint, caPem or insecure; azure: tenantId, clientId, subscriptionId, and optionally authorityHost, armEndpoint, caPem)',
});

export const CreateFabric = Type.Object({ kind: Kind, name: Name, config: Type.Optional(Config), password: Type.Optional(Password), clientSecret: Type.Optional(ClientSecret) }, { additionalProperties: false });
export type CreateFabric = Static<typeof CreateFabric>;

export const FabricView = Type.Object({
  id: Uuid,
  kind: Kind,
  name: Type.String(),
  config: Config,
  passwordSet: Type.Optional(Type.Boolean({ description: 'vsphere: the CS holds the account’s password (never shown)' })),
  secretSet: Type.Optional(Type.Boolean({ description: 'azure: the CS holds the service principal’s client secret (never shown)' })),
  createdAt: Timestamp,
});
export type FabricView = Static<typeof FabricView>;

const AVAILABLE: readonly FabricKind[] = ['physical', 'vsphere', 'azure'];

function view(r: FabricRow, secretSet: boolean): FabricView {
  return {
    id: r.id,
    kind: r.kind,
    name: r.name,
    config: JSON.parse(r.config) as Record<string, unknown>,
    ...(r.kind === 'vsphere' ? { passwordSet: secretSet } : {}),
    ...(r.kind === 'azure' ? { secretSet } : {}),
    createdAt: r.created_at,
  };
}

async function ensureNameFree(ctx: CsContext, name: string): Promise<void> {
  const taken = await ctx.db.selectFrom('fabrics').select('id').where('name', '=', name).executeTakeFirst();
  if (taken !== undefined) throw csError('NAME_TAKEN', { what: 'fabric', name }).at('name');
}

export async function createFabric(ctx: CsContext, input: CreateFabric): Promise<FabricView> {
  if (!AVAILABLE.includes(input.kind)) throw csError('FABRIC_KIND_NOT_AVAILABLE', { kind: input.kind }).at('kind');
  let password: string | undefined;
  if (input.kind !== 'azure' && input.clientSecret !== undefined) {
    throw csError('FABRIC_CONFIG_INVALID', { kind: input.kind, message: `a ${input.kind} fabric takes no clientSecret` }).at('clientSecret');
  }
  if (input.kind === 'vsphere') {
    const config = parseVsphereConfig(input.config, input.password);
    await ensureNameFree(ctx, input.name);
    // Nothing is stored unless vCenter accepts the account.
    await checkLogin(config, input.password as string, ctx.options.fabricRefresh.timeoutMs);
    password = input.password;
  } else if (input.kind === 'azure') {
    if (input.password !== undefined) throw csError('FABRIC_CONFIG_INVALID', { kind: 'azure', message: 'an azure fabric takes a clientSecret, not a password' }).at('password');
    const config = parseAzureConfig(input.config, input.clientSecret);
    await ensureNameFree(ctx, input.name);
    // Nothing is stored unless Entra ID issues a token and Resource Manager accepts it.
    await checkAzureLogin(config, input.clientSecret as string, ctx.options.fabricRefresh.timeoutMs);
    password = input.clientSecret;
  } else if (input.password !== undefined) {
    throw csError('FABRIC_CONFIG_INVALID', { kind: input.kind, message: `a ${input.kind} fabric takes no password` }).at('password');
  }
  const id = randomUUID();
  const now = isoAt(ctx.clock);
  await ctx.db.transaction().execute(async (trx) => {
    const taken = await trx.selectFrom('fabrics').select('id').where('name', '=', input.name).executeTakeFirst();
    if (taken !== undefined) throw csError('NAME_TAKEN', { what: 'fabric', name: input.name }).at('name');
    await trx
      .insertInto('fabrics')
      .values({ id, kind: input.kind, name: input.name, config: JSON.stringify(input.config ?? {}), created_at: now })
      .execute();
    if (password !== undefined) await trx.insertInto('fabric_secrets').values({ fabric_id: id, password, updated_at: now }).execute();
    if (input.kind === 'vsphere') {
      await trx.insertInto('fabric_inventory').values({ fabric_id: id, status: 'pending', refreshed_at: null, attempted_at: null, error: null, snapshot: null }).execute();
    }
  });
  if (input.kind === 'vsphere') {
    // The first read runs in the background; its outcome is recorded with the inventory.
    void inventoryRefresher(ctx)
      .refresh(id)
      .catch(() => undefined);
  }
  return getFabric(ctx, id);
}

export async function listFabrics(ctx: CsContext): Promise<FabricView[]> {
  const rows = await ctx.db.selectFrom('fabrics').selectAll().orderBy('name').execute();
  const secrets = new Set((await ctx.db.selectFrom('fabric_secrets').select('fabric_id').execute()).map((s) => s.fabric_id));
  return rows.map((r) => view(r, secrets.has(r.id)));
}

export async function getFabric(ctx: CsContext, id: string): Promise<FabricView> {
  const row = await ctx.db.selectFrom('fabrics').selectAll().where('id', '=', id).executeTakeFirst();
  if (row === undefined) throw csError('NOT_FOUND', { what: 'fabric', id });
  const secret = await ctx.db.selectFrom('fabric_secrets').select('fabric_id').where('fabric_id', '=', id).executeTakeFirst();
  return view(row, secret !== undefined);
}
