import { ProtocolError } from '../../replication/errors.js';
import type { VmPowerState } from './inventory.js';
import { retrieveObjects } from './property-collector.js';
import type { VsphereSession } from './session.js';
import { taskOf, waitForTask, type WaitOptions } from './tasks.js';
import { boolOf, child, childrenNamed, moRefOf, numberOf, textOf, type MoRef, type XNode } from './xml.js';

/**
 * A VM's snapshots: reading the tree, taking one, and merging them all back into the base disks
 * (reprotect merges the target VM's snapshots, since replication writes the base disks).
 */

export interface SnapshotNode {
  ref: MoRef;
  name: string;
  description: string;
  id: number;
  createTime: string;
  /** The VM's power state when the snapshot was taken. */
  state: VmPowerState;
  quiesced: boolean;
  children: SnapshotNode[];
}

export interface SnapshotTree {
  current: MoRef | undefined;
  roots: SnapshotNode[];
}

function decodeNode(n: XNode): SnapshotNode {
  const ref = moRefOf(child(n, 'snapshot'));
  if (!ref) throw new ProtocolError('VSPHERE_BAD_XML', 'snapshot tree entry without a snapshot reference');
  return {
    ref,
    name: textOf(child(n, 'name')) ?? '',
    description: textOf(child(n, 'description')) ?? '',
    id: numberOf(child(n, 'id')) ?? 0,
    createTime: textOf(child(n, 'createTime')) ?? '',
    state: (textOf(child(n, 'state')) ?? 'poweredOff') as VmPowerState,
    quiesced: boolOf(child(n, 'quiesced')) ?? false,
    children: childrenNamed(n, 'childSnapshotList').map(decodeNode),
  };
}

/** The VM's snapshot tree (empty when it has none). */
export async function listSnapshots(session: VsphereSession, vm: MoRef, signal?: AbortSignal): Promise<SnapshotTree> {
  const [o] = await retrieveObjects(session, [vm], { type: 'VirtualMachine', paths: ['snapshot'] }, signal === undefined ? {} : { signal });
  const info = o?.props.get('snapshot');
  return { current: moRefOf(child(info, 'currentSnapshot')), roots: childrenNamed(info, 'rootSnapshotList').map(decodeNode) };
}

/** Every snapshot of the tree, depth first. */
export function flattenSnapshots(tree: SnapshotTree): SnapshotNode[] {
  const out: SnapshotNode[] = [];
  const walk = (nodes: readonly SnapshotNode[]): void => {
    for (const n of nodes) {
      out.push(n);
      walk(n.children);
    }
  };
  walk(tree.roots);
  return out;
}

export interface CreateSnapshotOptions extends WaitOptions {
  description?: string;
  /** Include the VM's memory (powered-on VMs only). */
  memory?: boolean;
  /** Quiesce the guest file systems through VMware Tools. */
  quiesce?: boolean;
}

/** CreateSnapshot_Task; the new snapshot's reference. */
export async function createSnapshot(session: VsphereSession, vm: MoRef, name: string, options: CreateSnapshotOptions = {}): Promise<MoRef> {
  const response = await session.transport.call(
    'CreateSnapshot_Task',
    vm,
    { name, description: options.description ?? '', memory: options.memory ?? false, quiesce: options.quiesce ?? false },
    options.signal,
  );
  const snapshot = moRefOf((await waitForTask(session, taskOf(response), options)).result);
  if (!snapshot) throw new ProtocolError('VSPHERE_BAD_XML', `CreateSnapshot_Task on ${vm.value} returned no snapshot`);
  return snapshot;
}

/** Whether vSphere flags the VM's disks as needing consolidation (`runtime.consolidationNeeded`). */
export async function consolidationNeeded(session: VsphereSession, vm: MoRef, signal?: AbortSignal): Promise<boolean> {
  const [o] = await retrieveObjects(session, [vm], { type: 'VirtualMachine', paths: ['runtime.consolidationNeeded'] }, signal === undefined ? {} : { signal });
  return boolOf(o?.props.get('runtime.consolidationNeeded')) ?? false;
}

export interface MergeResult {
  /** Snapshots that were in the tree and have been removed. */
  removed: number;
  /** Whether ConsolidateVMDisks_Task ran (only when vSphere asked for it). */
  consolidated: boolean;
}

/**
 * Merges every snapshot into the base disks: RemoveAllSnapshots_Task (with consolidation) when the
 * tree is not empty, then ConsolidateVMDisks_Task only if vSphere still flags the VM as needing
 * it (left-over delta disks after a failed removal). Nothing to do → no task is started.
 */
export async function mergeSnapshots(session: VsphereSession, vm: MoRef, options: WaitOptions = {}): Promise<MergeResult> {
  const removed = flattenSnapshots(await listSnapshots(session, vm, options.signal)).length;
  if (removed > 0) {
    await waitForTask(session, taskOf(await session.transport.call('RemoveAllSnapshots_Task', vm, { consolidate: true }, options.signal)), options);
  }
  let consolidated = false;
  if (await consolidationNeeded(session, vm, options.signal)) {
    await waitForTask(session, taskOf(await session.transport.call('ConsolidateVMDisks_Task', vm, {}, options.signal)), options);
    consolidated = true;
  }
  return { removed, consolidated };
}
