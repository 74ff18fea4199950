import type { ControllerType, GuestFamily, ToolsRunningStatus, VirtualDiskInfo, VmInfo, VmPowerState } from './inventory.js';
import type { ObjectProps } from './property-collector.js';
import { boolOf, child, childrenNamed, moRefOf, numberOf, textOf, type MoRef, type XNode } from './xml.js';
import { decodeVirtualDisk } from './vm-devices.js';

/** Decoding of VirtualMachine properties into VmInfo. */

export const VM_PATHS = [
  'name',
  'runtime.powerState',
  'runtime.host',
  'config.uuid',
  'config.instanceUuid',
  'config.guestId',
  'config.template',
  'config.hardware.memoryMB',
  'config.hardware.device',
  'config.extraConfig',
  'guest.guestFamily',
  'guest.toolsRunningStatus',
  'guest.toolsStatus',
  'snapshot',
  'datastore',
];

const CONTROLLERS: Readonly<Record<string, ControllerType>> = {
  ParaVirtualSCSIController: 'pvscsi',
  VirtualLsiLogicController: 'lsilogic',
  VirtualLsiLogicSASController: 'lsilogic-sas',
  VirtualBusLogicController: 'buslogic',
  VirtualIDEController: 'ide',
  VirtualAHCIController: 'sata',
  VirtualNVMEController: 'nvme',
};

function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], fallback: T): T {
  return allowed.includes(value as T) ? (value as T) : fallback;
}

/** An ArrayOfManagedObjectReference value. */
export const refs = (n: XNode | undefined): MoRef[] => (n ? n.children.map((c) => moRefOf(c)).filter((r): r is MoRef => r !== undefined) : []);

function controllerType(devices: readonly XNode[], key: number | undefined): ControllerType {
  if (key === undefined) return 'unknown';
  const controller = devices.find((d) => numberOf(child(d, 'key')) === key);
  if (controller === undefined) return 'unknown';
  return CONTROLLERS[controller.xsiType ?? ''] ?? 'other';
}

function decodeDisk(device: XNode, devices: readonly XNode[]): VirtualDiskInfo {
  const { backing, ...base } = decodeVirtualDisk(device);
  return {
    ...base,
    backingType: backing?.xsiType ?? 'unknown',
    thinProvisioned: boolOf(child(backing, 'thinProvisioned')),
    diskMode: textOf(child(backing, 'diskMode')),
    controllerType: controllerType(devices, base.controllerKey),
  };
}

/** Snapshots in a VirtualMachineSnapshotTree list, children included. */
function countSnapshots(trees: readonly XNode[], depth = 0): number {
  // vSphere allows 32 levels; the bound only guards against a malformed answer.
  if (depth > 64) return 0;
  return trees.reduce((n, t) => n + 1 + countSnapshots(childrenNamed(t, 'childSnapshotList'), depth + 1), 0);
}

/** The last value of an extraConfig key (ESXi appends; the last one is in force). */
function extraConfig(options: XNode | undefined, key: string): string | undefined {
  let value: string | undefined;
  for (const o of options?.children ?? []) if (textOf(child(o, 'key')) === key) value = textOf(child(o, 'value'));
  return value;
}

export function decodeVm(o: ObjectProps, datacenter: string): VmInfo {
  const prop = (name: string): XNode | undefined => o.props.get(name);
  const str = (name: string): string | undefined => textOf(prop(name));
  const devices = prop('config.hardware.device')?.children ?? [];
  return {
    ref: o.obj,
    name: str('name') ?? o.obj.value,
    datacenter,
    powerState: oneOf<VmPowerState>(str('runtime.powerState'), ['poweredOn', 'poweredOff', 'suspended'], 'poweredOff'),
    uuid: str('config.uuid'),
    instanceUuid: str('config.instanceUuid'),
    guestId: str('config.guestId'),
    guestFamily: oneOf<GuestFamily>(str('guest.guestFamily'), ['windowsGuest', 'linuxGuest', 'netwareGuest', 'solarisGuest', 'darwinGuestFamily', 'otherGuestFamily'], 'unknown'),
    toolsRunningStatus: oneOf<ToolsRunningStatus>(str('guest.toolsRunningStatus'), ['guestToolsRunning', 'guestToolsNotRunning', 'guestToolsExecutingScripts'], 'unknown'),
    toolsStatus: str('guest.toolsStatus'),
    host: moRefOf(prop('runtime.host')),
    template: boolOf(prop('config.template')) ?? false,
    memoryBytes: (numberOf(prop('config.hardware.memoryMB')) ?? 0) * 1024 * 1024,
    snapshotCount: countSnapshots(childrenNamed(prop('snapshot'), 'rootSnapshotList')),
    enableUuid: (extraConfig(prop('config.extraConfig'), 'disk.EnableUUID') ?? '').toUpperCase() === 'TRUE',
    datastores: refs(prop('datastore')),
    disks: devices.filter((d) => d.xsiType === 'VirtualDisk').map((d) => decodeDisk(d, devices)),
  };
}
