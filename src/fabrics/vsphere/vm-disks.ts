import { ProtocolError } from '../../replication/errors.js';
import { formatDatastorePath, parseDatastorePath } from './datastore-path.js';
import type { VsphereSession } from './session.js';
import { taskOf, waitForTask, type WaitOptions } from './tasks.js';
import { addScsiControllerSpec, diskDevice, planScsiSlots, readVmDevices, type ScsiControllerType, type VmDisk } from './vm-devices.js';
import { data, type DataObject, type MoRef } from './xml.js';

/**
 * Hot-adding existing VMDKs to the MT VM for the duration of replication, and removing them before
 * failback. Files are never created nor deleted here: adds carry no fileOperation (the file must
 * exist) and removes carry no `destroy`. Both are idempotent, so a job can repeat them after a crash.
 * Reconfigurations of one VM are expected to be serialised by the caller (two concurrent adds may
 * pick the same free slot; the server then refuses the second).
 */

export interface DiskToAttach {
  /** `[datastore] dir/name.vmdk` */
  fileName: string;
  /** Sent as the device's capacity; when omitted, the server reads the size from the file. */
  capacityBytes?: number;
}

export interface AttachOptions extends WaitOptions {
  /** Type of the SCSI controller added when every existing one is full (default pvscsi). */
  newControllerType?: ScsiControllerType;
}

/** Canonical form of a datastore path (typed error when malformed), for comparing file names. */
function canonical(fileName: string): string {
  return formatDatastorePath(parseDatastorePath(fileName));
}

function sameFile(a: string, b: string): boolean {
  try {
    return canonical(a) === canonical(b);
  } catch {
    return a === b; // a server-side name we cannot parse can only equal itself
  }
}

/** The VM's virtual disks: key, file, capacity, UUID, controller and unit. */
export async function listVmDisks(session: VsphereSession, vm: MoRef, signal?: AbortSignal): Promise<VmDisk[]> {
  return (await readVmDevices(session, vm, signal)).disks;
}

async function reconfigure(session: VsphereSession, vm: MoRef, deviceChange: DataObject[], options: WaitOptions): Promise<void> {
  const spec = data('VirtualMachineConfigSpec', { deviceChange });
  await waitForTask(session, taskOf(await session.transport.call('ReconfigVM_Task', vm, { spec }, options.signal)), options);
}

/**
 * Attaches the files that are not attached yet, each on a free unit of a SCSI controller (adding
 * controllers when all are full), in one ReconfigVM_Task. Returns the VM's disks for the requested
 * files, in the requested order, as read back from the server.
 */
export async function attachDisks(session: VsphereSession, vm: MoRef, disks: readonly DiskToAttach[], options: AttachOptions = {}): Promise<VmDisk[]> {
  const wanted = disks.map((d) => ({ ...d, fileName: canonical(d.fileName) }));
  const before = await readVmDevices(session, vm, options.signal);
  const missing = wanted.filter((w, i) => !before.disks.some((d) => sameFile(d.fileName, w.fileName)) && wanted.findIndex((x) => x.fileName === w.fileName) === i);
  if (missing.length > 0) {
    const plan = planScsiSlots(before, missing.length, options.newControllerType ?? 'pvscsi');
    await reconfigure(
      session,
      vm,
      [
        ...plan.newControllers.map(addScsiControllerSpec),
        ...missing.map((w, i) =>
          data('VirtualDeviceConfigSpec', {
            operation: 'add',
            device: diskDevice({ key: -1 - i, slot: plan.slots[i] as { controllerKey: number; unitNumber: number }, fileName: w.fileName, capacityBytes: w.capacityBytes }),
          }),
        ),
      ],
      options,
    );
  }
  const after = missing.length > 0 ? await readVmDevices(session, vm, options.signal) : before;
  return wanted.map((w) => {
    const disk = after.disks.find((d) => sameFile(d.fileName, w.fileName));
    if (!disk) throw new ProtocolError('VSPHERE_ATTACH_INCOMPLETE', `${w.fileName} is not attached to ${vm.value} after the reconfiguration`);
    return disk;
  });
}

/**
 * Detaches the given files from the VM, keeping the files (no fileOperation `destroy`). Files that
 * are not attached are skipped. Returns the file names actually detached.
 */
export async function detachDisks(session: VsphereSession, vm: MoRef, fileNames: readonly string[], options: WaitOptions = {}): Promise<string[]> {
  const wanted = fileNames.map(canonical);
  const { disks } = await readVmDevices(session, vm, options.signal);
  const attached = disks.filter((d) => wanted.some((w) => sameFile(d.fileName, w)));
  if (attached.length === 0) return [];
  await reconfigure(
    session,
    vm,
    attached.map((d) =>
      data('VirtualDeviceConfigSpec', {
        operation: 'remove',
        device: diskDevice({
          key: d.key,
          slot: { controllerKey: d.controllerKey ?? 0, unitNumber: d.unitNumber ?? 0 },
          fileName: d.fileName,
          datastore: d.datastore,
          capacityBytes: d.capacityBytes,
        }),
      }),
    ),
    options,
  );
  const left = (await readVmDevices(session, vm, options.signal)).disks.filter((d) => attached.some((a) => a.key === d.key));
  if (left.length > 0) throw new ProtocolError('VSPHERE_DETACH_INCOMPLETE', `${left.map((d) => d.fileName).join(', ')} still attached to ${vm.value} after the reconfiguration`);
  return attached.map((d) => d.fileName);
}
