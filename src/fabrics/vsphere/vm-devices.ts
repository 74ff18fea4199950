import { BoomerangError } from '../../replication/errors.js';
import { retrieveObjects } from './property-collector.js';
import type { DiskDevice } from './inventory.js';
import type { VsphereSession } from './session.js';
import { boolOf, child, data, moRefOf, numberOf, path, ref, textOf, type DataObject, type MoRef, type XNode } from './xml.js';

/**
 * A VM's disks and SCSI controllers as read from `config.hardware.device`, the choice of free SCSI
 * slots for new disks, and the device specs that add them. Shared by VM creation and disk hot-add.
 */

export type ScsiControllerType = 'pvscsi' | 'lsilogic-sas' | 'lsilogic' | 'buslogic';

const SCSI_TYPES: Readonly<Record<string, ScsiControllerType>> = {
  ParaVirtualSCSIController: 'pvscsi',
  VirtualLsiLogicSASController: 'lsilogic-sas',
  VirtualLsiLogicController: 'lsilogic',
  VirtualBusLogicController: 'buslogic',
};
const SCSI_XSI: Readonly<Record<ScsiControllerType, string>> = {
  pvscsi: 'ParaVirtualSCSIController',
  'lsilogic-sas': 'VirtualLsiLogicSASController',
  lsilogic: 'VirtualLsiLogicController',
  buslogic: 'VirtualBusLogicController',
};

/** A VM has at most four SCSI controllers (buses 0–3), each with units 0–15 but its own (7). */
export const MAX_SCSI_CONTROLLERS = 4;
const UNITS_PER_CONTROLLER = 16;
const CONTROLLER_OWN_UNIT = 7;

export class VmDeviceError extends BoomerangError {}

export interface ScsiController {
  key: number;
  busNumber: number;
  type: ScsiControllerType;
}

export interface VmDisk extends DiskDevice {
  /** The SCSI controller the disk is on, when it is on one. */
  controller: ScsiController | undefined;
  thinProvisioned: boolean;
  eagerlyScrub: boolean;
}

export interface VmDevices {
  disks: VmDisk[];
  scsiControllers: ScsiController[];
  /** `controllerKey:unitNumber` of every device that sits on a controller. */
  usedSlots: ReadonlySet<string>;
}

const slotKey = (controllerKey: number, unitNumber: number): string => `${controllerKey}:${unitNumber}`;

/** What every reader of a VirtualDisk device needs, and its backing for the rest. */
export function decodeVirtualDisk(device: XNode): DiskDevice & { backing: XNode | undefined } {
  const backing = child(device, 'backing');
  const bytes = numberOf(child(device, 'capacityInBytes'));
  const kb = numberOf(child(device, 'capacityInKB'));
  return {
    key: numberOf(child(device, 'key')) ?? 0,
    label: textOf(path(device, 'deviceInfo', 'label')) ?? '',
    fileName: textOf(child(backing, 'fileName')) ?? '',
    datastore: moRefOf(child(backing, 'datastore')),
    // Older servers send only capacityInKB (and some a zero capacityInBytes).
    capacityBytes: bytes !== undefined && bytes > 0 ? bytes : (kb ?? 0) * 1024,
    uuid: textOf(child(backing, 'uuid')) || undefined,
    controllerKey: numberOf(child(device, 'controllerKey')),
    unitNumber: numberOf(child(device, 'unitNumber')),
    backing,
  };
}

/** Decodes an ArrayOfVirtualDevice (`config.hardware.device`). */
export function decodeVmDevices(devices: XNode | undefined): VmDevices {
  const scsiControllers: ScsiController[] = [];
  const usedSlots = new Set<string>();
  for (const d of devices?.children ?? []) {
    const type = d.xsiType === undefined ? undefined : SCSI_TYPES[d.xsiType];
    if (type !== undefined) scsiControllers.push({ key: numberOf(child(d, 'key')) ?? 0, busNumber: numberOf(child(d, 'busNumber')) ?? 0, type });
    const controllerKey = numberOf(child(d, 'controllerKey'));
    const unitNumber = numberOf(child(d, 'unitNumber'));
    if (controllerKey !== undefined && unitNumber !== undefined) usedSlots.add(slotKey(controllerKey, unitNumber));
  }
  const disks = (devices?.children ?? [])
    .filter((d) => d.xsiType === 'VirtualDisk')
    .map((d): VmDisk => {
      const base = decodeVirtualDisk(d);
      return {
        ...base,
        controller: scsiControllers.find((c) => c.key === base.controllerKey),
        thinProvisioned: boolOf(child(base.backing, 'thinProvisioned')) ?? false,
        eagerlyScrub: boolOf(child(base.backing, 'eagerlyScrub')) ?? false,
      };
    });
  return { disks, scsiControllers, usedSlots };
}

/** Reads a VM's devices through the PropertyCollector. */
export async function readVmDevices(session: VsphereSession, vm: MoRef, signal?: AbortSignal): Promise<VmDevices> {
  const [o] = await retrieveObjects(session, [vm], { type: 'VirtualMachine', paths: ['config.hardware.device'] }, signal === undefined ? {} : { signal });
  return decodeVmDevices(o?.props.get('config.hardware.device'));
}

export interface ScsiSlot {
  controllerKey: number;
  unitNumber: number;
}

export interface SlotPlan {
  slots: ScsiSlot[];
  /** Controllers to add in the same reconfiguration; their keys are negative (assigned by the server). */
  newControllers: ScsiController[];
}

/**
 * Picks `count` free SCSI slots: free units on existing controllers first (lowest bus, lowest
 * unit), then on new controllers of `newControllerType` on the free buses. More than four
 * controllers' worth → VmDeviceError `VSPHERE_NO_SCSI_SLOT`.
 */
export function planScsiSlots(devices: Pick<VmDevices, 'scsiControllers' | 'usedSlots'>, count: number, newControllerType: ScsiControllerType): SlotPlan {
  const slots: ScsiSlot[] = [];
  const newControllers: ScsiController[] = [];
  const freeUnits = (controllerKey: number): number[] => {
    const out: number[] = [];
    for (let u = 0; u < UNITS_PER_CONTROLLER; u++) if (u !== CONTROLLER_OWN_UNIT && !devices.usedSlots.has(slotKey(controllerKey, u))) out.push(u);
    return out;
  };
  for (const c of [...devices.scsiControllers].sort((a, b) => a.busNumber - b.busNumber)) {
    for (const unitNumber of freeUnits(c.key)) {
      if (slots.length === count) return { slots, newControllers };
      slots.push({ controllerKey: c.key, unitNumber });
    }
  }
  const usedBuses = new Set(devices.scsiControllers.map((c) => c.busNumber));
  for (let bus = 0; bus < MAX_SCSI_CONTROLLERS && slots.length < count; bus++) {
    if (usedBuses.has(bus)) continue;
    const controller: ScsiController = { key: -100 - bus, busNumber: bus, type: newControllerType };
    newControllers.push(controller);
    for (const unitNumber of freeUnits(controller.key)) {
      if (slots.length === count) break;
      slots.push({ controllerKey: controller.key, unitNumber });
    }
  }
  if (slots.length < count) throw new VmDeviceError('VSPHERE_NO_SCSI_SLOT', `no free SCSI slot for ${count - slots.length} of ${count} disks (at most ${MAX_SCSI_CONTROLLERS} controllers)`);
  return { slots, newControllers };
}

/** VirtualDeviceConfigSpec adding a SCSI controller (no bus sharing). */
export function addScsiControllerSpec(c: ScsiController): DataObject {
  return data('VirtualDeviceConfigSpec', {
    operation: 'add',
    device: data(SCSI_XSI[c.type], { key: c.key, busNumber: c.busNumber, sharedBus: 'noSharing' }),
  });
}

export interface DiskDeviceSpec {
  key: number;
  slot: ScsiSlot;
  fileName: string;
  datastore?: MoRef | undefined;
  capacityBytes?: number | undefined;
  thinProvisioned?: boolean | undefined;
  eagerlyScrub?: boolean | undefined;
  uuid?: string | undefined;
}

/** A VirtualDisk on a flat (ver. 2) backing, persistent mode; fields in the WSDL's order. */
export function diskDevice(d: DiskDeviceSpec): DataObject {
  const bytes = d.capacityBytes ?? 0;
  return data('VirtualDisk', {
    key: d.key,
    backing: data('VirtualDiskFlatVer2BackingInfo', {
      fileName: d.fileName,
      datastore: d.datastore === undefined ? undefined : ref(d.datastore),
      diskMode: 'persistent',
      thinProvisioned: d.thinProvisioned,
      eagerlyScrub: d.eagerlyScrub,
      uuid: d.uuid,
    }),
    controllerKey: d.slot.controllerKey,
    unitNumber: d.slot.unitNumber,
    // capacityInKB is required by the WSDL; 0 on an existing file lets the server read the size.
    capacityInKB: Math.floor(bytes / 1024),
    capacityInBytes: d.capacityBytes,
  });
}
