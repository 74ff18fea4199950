import { randomUUID } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { isoAt } from '../clock.js';
import type { CsContext } from '../context.js';
import type { MachineRow } from '../db/schema.js';
import { RELEASED_STATES } from '../domain/item-state.js';
import { Name, Timestamp, Uuid } from '../domain/names.js';
import { csError } from '../errors.js';

/**
 * Machines of a fabric. On the physical fabric, power operations run hook commands (an argv, no
 * shell): IPMI, a script that starts a workload, or `manual` to pause the job for a person. A
 * vSphere machine names its VM (and, in the lab, hooks for the guest vcsim does not have); an
 * Azure machine names its VM in Resource Manager (and, in the lab, hooks for the guest the fake
 * ARM does not have).
 */

const Argv = Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), { minItems: 1, maxItems: 64, description: 'program and arguments, run without a shell' });

export const PowerHooks = Type.Object(
  {
    start: Type.Optional(Argv),
    stop: Type.Optional(Argv),
    status: Type.Optional(Argv),
    manual: Type.Optional(Type.Boolean({ description: 'power operations wait for an operator to confirm them' })),
  },
  { additionalProperties: false },
);
export type PowerHooks = Static<typeof PowerHooks>;

const GuestHooks = Type.Object({ start: Type.Optional(Argv), stop: Type.Optional(Argv) }, { additionalProperties: false, description: 'run after power-on and before power-off (labs: a guest process)' });

export const VspherePower = Type.Object(
  {
    vm: Type.String({ minLength: 1, maxLength: 80, description: 'the VM’s name in vCenter' }),
    guest: Type.Optional(GuestHooks),
  },
  { additionalProperties: false },
);

const AzureName = Type.String({ minLength: 1, maxLength: 90, pattern: '^[A-Za-z0-9._()-]+$' });
export const AzurePower = Type.Object(
  {
    subscriptionId: Uuid,
    resourceGroup: AzureName,
    vmName: AzureName,
    vmId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'recorded so that another VM of the same name is not taken for this one' })),
    guest: Type.Optional(GuestHooks),
  },
  { additionalProperties: false },
);

/** How the machine is powered; its shape must be its fabric's. */
export const MachinePower = Type.Union([PowerHooks, VspherePower, AzurePower]);
export type MachinePower = Static<typeof MachinePower>;

const POWER_OF_KIND = { physical: PowerHooks, vsphere: VspherePower, azure: AzurePower } as const;

export const CreateMachine = Type.Object({ fabricId: Uuid, name: Name, power: Type.Optional(MachinePower) }, { additionalProperties: false });
export type CreateMachine = Static<typeof CreateMachine>;

export const MachineView = Type.Object({
  id: Uuid,
  fabricId: Uuid,
  name: Type.String(),
  power: MachinePower,
  state: Type.Union([Type.Literal('unknown'), Type.Literal('running'), Type.Literal('stopped')]),
  /** The item protecting it, if any. */
  itemId: Type.Union([Uuid, Type.Null()]),
  createdAt: Timestamp,
});
export type MachineView = Static<typeof MachineView>;

function view(r: MachineRow, itemId: string | null): MachineView {
  return { id: r.id, fabricId: r.fabric_id, name: r.name, power: JSON.parse(r.power) as MachinePower, state: r.state, itemId, createdAt: r.created_at };
}

export async function createMachine(ctx: CsContext, input: CreateMachine): Promise<MachineView> {
  const id = randomUUID();
  await ctx.db.transaction().execute(async (trx) => {
    const fabric = await trx.selectFrom('fabrics').select(['id', 'kind']).where('id', '=', input.fabricId).executeTakeFirst();
    if (fabric === undefined) throw csError('NOT_FOUND', { what: 'fabric', id: input.fabricId }).at('fabricId');
    const power = input.power ?? {};
    if (!Value.Check(POWER_OF_KIND[fabric.kind], power)) {
      throw csError('BAD_REQUEST', { message: `power does not describe a machine of a ${fabric.kind} fabric (${fabric.kind === 'vsphere' ? 'give vm' : fabric.kind === 'azure' ? 'give subscriptionId, resourceGroup and vmName' : 'give start, stop and status hooks'})` }).at('power');
    }
    const taken = await trx.selectFrom('machines').select('id').where('fabric_id', '=', input.fabricId).where('name', '=', input.name).executeTakeFirst();
    if (taken !== undefined) throw csError('NAME_TAKEN', { what: 'machine of this fabric', name: input.name }).at('name');
    await trx
      .insertInto('machines')
      .values({ id, fabric_id: input.fabricId, name: input.name, power: JSON.stringify(input.power ?? {}), state: 'unknown', created_at: isoAt(ctx.clock) })
      .execute();
  });
  return getMachine(ctx, id);
}

async function liveItems(ctx: CsContext, machineIds: string[]): Promise<Map<string, string>> {
  if (machineIds.length === 0) return new Map();
  const rows = await ctx.db.selectFrom('items').select(['id', 'machine_id']).where('machine_id', 'in', machineIds).where('state', 'not in', RELEASED_STATES).execute();
  return new Map(rows.map((r) => [r.machine_id, r.id]));
}

export async function listMachines(ctx: CsContext, filter: { fabricId?: string }): Promise<MachineView[]> {
  let q = ctx.db.selectFrom('machines').selectAll();
  if (filter.fabricId !== undefined) q = q.where('fabric_id', '=', filter.fabricId);
  const rows = await q.orderBy('name').execute();
  const items = await liveItems(ctx, rows.map((r) => r.id));
  return rows.map((r) => view(r, items.get(r.id) ?? null));
}

export async function getMachine(ctx: CsContext, id: string): Promise<MachineView> {
  const row = await ctx.db.selectFrom('machines').selectAll().where('id', '=', id).executeTakeFirst();
  if (row === undefined) throw csError('NOT_FOUND', { what: 'machine', id });
  const items = await liveItems(ctx, [id]);
  return view(row, items.get(id) ?? null);
}
