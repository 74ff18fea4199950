import type { Kysely } from 'kysely';
import type { Database, ItemDiskRow, ItemRow } from '../db/schema.js';
import type { Direction } from '../domain/item-state.js';
import { csError } from '../errors.js';

/**
 * Who does what for an item in one direction of replication. Forward (A→B): the primary machine
 * runs with the item's agent, its PS forwards to the MT at the recovery site, and the recovery
 * machine's disks are the replicas. Failback (B→A): the same with the sides swapped and the
 * failback components. A disk keeps its id on both sides; only its paths differ.
 */
export interface DirectionRoles {
  direction: Direction;
  /** Runs the workload and its agent while replicating this way. */
  sourceMachineId: string | null;
  /** Its disks receive the data; kept powered off. */
  targetMachineId: string | null;
  agentId: string | null;
  agentName: string | null;
  psId: string | null;
  mtId: string | null;
  /** The source machine's disk. */
  sourcePath(d: ItemDiskRow): string;
  /** The target machine's disk: adopted as the replica (original location) and handed back at the switch. */
  targetPath(d: ItemDiskRow): string;
  /** Where the master target keeps the replica while it replicates. */
  replicaPath(d: ItemDiskRow): string;
}

export function opposite(d: Direction): Direction {
  return d === 'forward' ? 'failback' : 'forward';
}

export function rolesFor(item: ItemRow, direction: Direction): DirectionRoles {
  const forward = direction === 'forward';
  const target = (d: ItemDiskRow) => (forward ? d.target_path : d.source_path);
  return {
    direction,
    sourceMachineId: forward ? item.machine_id : item.recovery_machine_id,
    targetMachineId: forward ? item.recovery_machine_id : item.machine_id,
    agentId: forward ? item.agent_id : item.failback_agent_id,
    agentName: forward ? null : item.failback_agent_name,
    psId: forward ? item.ps_id : item.failback_ps_id,
    mtId: forward ? item.mt_id : item.failback_mt_id,
    sourcePath: (d) => (forward ? d.source_path : d.target_path),
    targetPath: target,
    replicaPath: (d) => `${target(d)}.replica`,
  };
}

export interface LoadedItem {
  item: ItemRow;
  disks: ItemDiskRow[];
}

export async function loadItem(db: Kysely<Database>, itemId: string): Promise<LoadedItem> {
  const item = await db.selectFrom('items').selectAll().where('id', '=', itemId).executeTakeFirst();
  if (item === undefined) throw csError('NOT_FOUND', { what: 'item', id: itemId });
  const disks = await db.selectFrom('item_disks').selectAll().where('item_id', '=', itemId).orderBy('disk_id').execute();
  return { item, disks };
}

/** The roles' components and machines, or FAILBACK_NOT_CONFIGURED naming what is missing. */
export function required<T>(value: T | null, item: ItemRow, missing: string): T {
  if (value === null) throw csError('FAILBACK_NOT_CONFIGURED', { item: item.id, missing });
  return value;
}

/** The name of the machine alternate-location recovery creates when the operator gives none. */
export function alternateMachineName(machineName: string): string {
  return `${machineName}-recovered`;
}
