import type { FabricMachineFacts, LentDisks } from '../../fabrics/fabric.js';
import { VsphereFabric } from '../../fabrics/vsphere/fabric.js';
import type { VsphereInventory } from '../../fabrics/vsphere/inventory.js';
import { errorMessage } from '../../replication/errors.js';
import type { CsContext } from '../context.js';
import type { ItemRow, MachineRow } from '../db/schema.js';
import { alternateMachineName, type DirectionRoles } from '../lifecycle/roles.js';
import { inventoryRefresher } from '../inventory/vsphere-inventory.js';
import type { VsphereFacts } from './facts.js';
import type { Operation } from './types.js';
import { vsphereFacts } from './vsphere-facts.js';

/** What the operator asked for beyond the operation (reprotect: where to). */
export interface OperationRequest {
  location?: 'original' | 'alternate';
  machineName?: string;
  datastore?: string;
}

/** A pre-flight must not hang on a fabric that does not answer: it then reports what the CS recorded. */
const FABRIC_TIMEOUT_MS = 30_000;

/**
 * What the sending machine's fabric says about it (Azure: the VM's instance view), or undefined
 * when its fabric has nothing to say or could not be asked (logged; the CS's own record is used).
 */
export async function sendingMachineFacts(ctx: CsContext, machine: MachineRow | undefined): Promise<FabricMachineFacts | undefined> {
  if (machine === undefined) return undefined;
  const row = await ctx.db.selectFrom('fabrics').selectAll().where('id', '=', machine.fabric_id).executeTakeFirst();
  if (row === undefined || row.kind === 'physical') return undefined;
  try {
    const fabric = await ctx.fabrics.get(row);
    return await fabric.machineFacts?.({ id: machine.id, name: machine.name, power: JSON.parse(machine.power) as Record<string, unknown> }, AbortSignal.timeout(FABRIC_TIMEOUT_MS));
  } catch (err) {
    ctx.log.warn({ machine: machine.name, fabric: row.name, error: errorMessage(err) }, 'pre-flight: the fabric could not be asked about the machine');
    return undefined;
  }
}

/** Checks judge what vCenter says now: an inventory older than this is read again first. */
const INVENTORY_MAX_AGE_MS = 15_000;

async function freshInventory(ctx: CsContext, fabricId: string, name: string): Promise<void> {
  const row = await ctx.db.selectFrom('fabric_inventory').select('refreshed_at').where('fabric_id', '=', fabricId).executeTakeFirst();
  if (row?.refreshed_at && ctx.clock.now() - Date.parse(row.refreshed_at) <= INVENTORY_MAX_AGE_MS) return;
  // A failed read is recorded with the inventory; the checks then judge the last good one.
  await inventoryRefresher(ctx).refresh(fabricId).catch((err: unknown) => ctx.log.warn({ fabric: name, error: errorMessage(err) }, 'pre-flight: the inventory could not be refreshed'));
}

/**
 * The vCenter facts of the site that receives (the target machine's fabric), from its stored
 * inventory; Storage vMotion since the last reprotect is asked of vCenter itself (its events).
 * Undefined when that site is not a vSphere fabric.
 */
export async function receivingVsphereFacts(ctx: CsContext, item: ItemRow, roles: DirectionRoles, operation: Operation | undefined, request: OperationRequest): Promise<VsphereFacts | undefined> {
  if (roles.targetMachineId === null) return undefined;
  const target = await ctx.db.selectFrom('machines').selectAll().where('id', '=', roles.targetMachineId).executeTakeFirst();
  if (target === undefined) return undefined;
  const fabricRow = await ctx.db.selectFrom('fabrics').selectAll().where('id', '=', target.fabric_id).executeTakeFirst();
  if (fabricRow?.kind !== 'vsphere') return undefined;
  await freshInventory(ctx, fabricRow.id, fabricRow.name);
  const stored = await ctx.db.selectFrom('fabric_inventory').select('snapshot').where('fabric_id', '=', fabricRow.id).executeTakeFirst();
  if (!stored?.snapshot) return undefined;
  const inv = JSON.parse(stored.snapshot) as VsphereInventory;
  const fabric = await ctx.fabrics.get(fabricRow);
  const mtName = roles.mtId === null ? undefined : (await ctx.db.selectFrom('components').select('name').where('id', '=', roles.mtId).executeTakeFirst())?.name;
  const mtVm = fabric instanceof VsphereFabric && mtName !== undefined ? fabric.masterTargetVm(mtName) : undefined;
  const targetVm = (JSON.parse(target.power) as { vm?: string }).vm;
  const moved: VsphereFacts['moved'] = [];
  let lentDatastores: Record<string, string[]> | undefined;
  if (operation === 'failback' && fabric instanceof VsphereFabric) {
    const since = await ctx.db.selectFrom('jobs').select(['id', 'started_at']).where('resource', '=', `item/${item.id}`).where('kind', '=', 'reprotect').where('state', '=', 'succeeded').orderBy('seq', 'desc').limit(1).executeTakeFirst();
    if (since !== undefined) {
      const task = await ctx.db.selectFrom('tasks').select('details').where('job_id', '=', since.id).where('name', '=', 'attach-replicas').executeTakeFirst();
      lentDatastores = task ? (JSON.parse(task.details) as { lent?: LentDisks }).lent?.datastores : undefined;
    }
    for (const vm of [mtVm, targetVm]) {
      if (vm === undefined || !since?.started_at) continue;
      try {
        for (const e of await fabric.relocationsSince(vm, since.started_at, AbortSignal.timeout(FABRIC_TIMEOUT_MS))) moved.push({ what: vm, from: 'its datastore at reprotect', to: e.message || e.type });
      } catch (err) {
        ctx.log.warn({ vm, error: errorMessage(err) }, 'pre-flight: vCenter events could not be read');
      }
    }
  }
  // Alternate location fails back to a new VM: the old one's disks and snapshots do not matter.
  if (request.location === 'alternate') {
    const newVm = request.machineName ?? alternateMachineName(target.name);
    return vsphereFacts(inv, { fabric: fabricRow.name, mtVm, targetVm: undefined, newVm, ...(request.datastore ? { datastore: request.datastore } : {}), moved });
  }
  return vsphereFacts(inv, { fabric: fabricRow.name, mtVm, targetVm, moved, ...(lentDatastores ? { lentDatastores } : {}) });
}
