import { BoomerangError, ProtocolError } from '../../replication/errors.js';
import { formatDatastorePath } from './datastore-path.js';
import { retrieveObjects } from './property-collector.js';
import type { VsphereSession } from './session.js';
import { taskOf, waitForTask, type WaitOptions } from './tasks.js';
import { addScsiControllerSpec, diskDevice, planScsiSlots, readVmDevices, type VmDisk } from './vm-devices.js';
import { newDiskUuid } from './vm-disk-uuid.js';
import { data, moRefOf, ref, type MoRef } from './xml.js';

/**
 * Creating the VM for alternate-location recovery: on the MT's host and a datastore it mounts,
 * with one disk per source disk, of the source's size.
 */

export class VmSpecError extends BoomerangError {}

/** `thin` grows on write; `eagerZeroedThick` is allocated and zeroed at creation (fastest writes, no surprises on a full datastore). */
export type DiskProvisioning = 'thin' | 'eagerZeroedThick';

export interface NewVmDisk {
  sizeBytes: number;
  provisioning: DiskProvisioning;
  /** A given disk UUID (a clone keeps its template's); a fresh one otherwise. */
  uuid?: string;
}

export interface NewVmSpec {
  name: string;
  /** vSphere guest id, e.g. `otherLinux64Guest`, `windows9Server64Guest`. */
  guestId: string;
  memoryMB: number;
  numCPUs: number;
  scsiControllerType: 'pvscsi' | 'lsilogic-sas';
  disks: readonly NewVmDisk[];
  host: MoRef;
  datastore: { ref: MoRef; name: string };
  folder: MoRef;
  pool: MoRef;
}

export interface CreatedVm {
  vm: MoRef;
  /** The disks as the server reports them, in the order of `spec.disks`. */
  disks: VmDisk[];
}

const MAX_NAME = 80;
const MAX_DISKS = 60;

function validate(spec: NewVmSpec): void {
  const bad = (why: string): VmSpecError => new VmSpecError('VSPHERE_BAD_VM_SPEC', `VM ${JSON.stringify(spec.name.slice(0, MAX_NAME))}: ${why}`);
  if (spec.name.trim() === '' || spec.name.length > MAX_NAME) throw bad(`the name must have 1 to ${MAX_NAME} characters`);
  // `/`, `\` and `%` are escaped by vSphere in inventory names; `[`/`]` would break datastore paths.
  if (/[/\\%[\]\p{Cc}]/u.test(spec.name)) throw bad('the name contains / \\ % [ ] or a control character');
  if (!/^[A-Za-z0-9_]+$/.test(spec.guestId)) throw bad(`guest id ${JSON.stringify(spec.guestId)} is not a vSphere guest id`);
  if (!Number.isSafeInteger(spec.memoryMB) || spec.memoryMB < 4 || spec.memoryMB % 4 !== 0) throw bad('memory must be a positive multiple of 4 MB');
  if (!Number.isSafeInteger(spec.numCPUs) || spec.numCPUs < 1) throw bad('it needs at least one CPU');
  if (spec.disks.length === 0 || spec.disks.length > MAX_DISKS) throw bad(`it needs 1 to ${MAX_DISKS} disks`);
  for (const [i, d] of spec.disks.entries()) {
    if (!Number.isSafeInteger(d.sizeBytes) || d.sizeBytes <= 0 || d.sizeBytes % 1024 !== 0) throw bad(`disk ${i}: the size must be a positive multiple of 1 KiB, not ${d.sizeBytes}`);
  }
}

/** `[ds] <vm>/<vm>_<n>.vmdk`: the file of the VM's disk number `n`. */
export function newDiskFileName(datastore: string, vmName: string, n: number): string {
  return formatDatastorePath({ datastore, path: `${vmName}/${vmName}_${n}.vmdk` });
}

/**
 * CreateVM_Task in `folder` on `host` / `pool`: the VM's files in `[ds] <name>/`, one SCSI
 * controller of the chosen type (more if over 15 disks), and the disks as new flat VMDKs
 * `[ds] <name>/<name>_<n>.vmdk`, each with a fresh disk UUID. The result is read back from the
 * server. A VM of that name in the folder → DuplicateNameError; existing disk files are never
 * overwritten (FileAlreadyExists).
 */
export async function createVm(session: VsphereSession, spec: NewVmSpec, options: WaitOptions = {}): Promise<CreatedVm> {
  validate(spec);
  const plan = planScsiSlots({ scsiControllers: [], usedSlots: new Set() }, spec.disks.length, spec.scsiControllerType);
  const fileNames = spec.disks.map((_, n) => newDiskFileName(spec.datastore.name, spec.name, n));
  const deviceChange = [
    ...plan.newControllers.map(addScsiControllerSpec),
    ...spec.disks.map((d, n) =>
      data('VirtualDeviceConfigSpec', {
        operation: 'add',
        fileOperation: 'create',
        device: diskDevice({
          key: -1 - n,
          slot: plan.slots[n] as { controllerKey: number; unitNumber: number },
          fileName: fileNames[n] as string,
          datastore: spec.datastore.ref,
          capacityBytes: d.sizeBytes,
          thinProvisioned: d.provisioning === 'thin',
          eagerlyScrub: d.provisioning === 'eagerZeroedThick',
          uuid: d.uuid ?? newDiskUuid(),
        }),
      }),
    ),
  ];
  const config = data('VirtualMachineConfigSpec', {
    name: spec.name,
    guestId: spec.guestId,
    files: data('VirtualMachineFileInfo', { vmPathName: formatDatastorePath({ datastore: spec.datastore.name, path: '' }) }),
    numCPUs: spec.numCPUs,
    memoryMB: spec.memoryMB,
    deviceChange,
  });
  const task = taskOf(await session.transport.call('CreateVM_Task', spec.folder, { config, pool: ref(spec.pool), host: ref(spec.host) }, options.signal));
  const { result } = await waitForTask(session, task, options);
  const vm = moRefOf(result);
  if (!vm) throw new ProtocolError('VSPHERE_BAD_XML', `CreateVM_Task for ${spec.name} returned no VM`);
  const devices = await readVmDevices(session, vm, options.signal);
  const disks = fileNames.map((f) => {
    const disk = devices.disks.find((d) => d.fileName === f);
    if (!disk) throw new ProtocolError('VSPHERE_VM_CREATE_INCOMPLETE', `VM ${spec.name} (${vm.value}) was created without its disk ${f}`);
    return disk;
  });
  return { vm, disks };
}

/** Where a new VM goes to run on `host`: its datacenter, that datacenter's VM folder and the host's resource pool. */
export interface HostPlacement {
  datacenter: MoRef;
  vmFolder: MoRef;
  pool: MoRef;
}

const MAX_INVENTORY_DEPTH = 32;

async function property(session: VsphereSession, obj: MoRef, name: string, signal?: AbortSignal): Promise<MoRef | undefined> {
  const [o] = await retrieveObjects(session, [obj], { type: obj.type, paths: [name] }, signal === undefined ? {} : { signal });
  return moRefOf(o?.props.get(name));
}

/** Reads the placement of new VMs on `host` (the parent chain up to its datacenter). */
export async function hostPlacement(session: VsphereSession, host: MoRef, signal?: AbortSignal): Promise<HostPlacement> {
  const compute = await property(session, host, 'parent', signal);
  const pool = compute && (await property(session, compute, 'resourcePool', signal));
  if (!compute || !pool) throw new ProtocolError('VSPHERE_BAD_INVENTORY', `host ${host.value} has no compute resource or resource pool`);
  let at: MoRef | undefined = compute;
  for (let depth = 0; at !== undefined && at.type !== 'Datacenter'; depth++) {
    if (depth === MAX_INVENTORY_DEPTH) throw new ProtocolError('VSPHERE_BAD_INVENTORY', `host ${host.value} is nested deeper than ${MAX_INVENTORY_DEPTH} levels`);
    at = await property(session, at, 'parent', signal);
  }
  if (!at) throw new ProtocolError('VSPHERE_BAD_INVENTORY', `host ${host.value} is not in a datacenter`);
  const vmFolder = await property(session, at, 'vmFolder', signal);
  if (!vmFolder) throw new ProtocolError('VSPHERE_BAD_INVENTORY', `datacenter ${at.value} has no VM folder`);
  return { datacenter: at, vmFolder, pool };
}
