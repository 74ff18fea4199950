import type { DatastoreInfo, DatastoreType, GuestFamily, HostInfo, ToolsRunningStatus, VirtualDiskInfo, VmInfo, VmPowerState, VsphereInventory } from './inventory.js';
import { retrieveFromContainer, type ObjectProps, type RetrieveOptions } from './property-collector.js';
import type { VsphereSession } from './session.js';
import { boolOf, child, moRefOf, numberOf, path, textOf, type MoRef, type XNode } from './xml.js';

const DATACENTER_PATHS = ['name'];
const HOST_PATHS = ['name', 'summary.config.product', 'summary.hardware.memorySize', 'datastore'];
const DATASTORE_PATHS = ['summary'];
const VM_PATHS = [
  'name',
  'runtime.powerState',
  'runtime.host',
  'config.uuid',
  'config.instanceUuid',
  'config.guestId',
  'config.template',
  'config.hardware.device',
  'guest.guestFamily',
  'guest.toolsRunningStatus',
  'guest.toolsStatus',
];

export const refKey = (r: MoRef): string => `${r.type}:${r.value}`;

function datastoreType(raw: string): DatastoreType {
  switch (raw.toUpperCase()) {
    case 'VMFS':
      return 'VMFS';
    case 'NFS':
      return 'NFS';
    case 'NFS41':
      return 'NFS41';
    case 'VSAN':
      return 'vsan';
    case 'VVOL':
      return 'vvol';
    default:
      return 'other';
  }
}

function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], fallback: T): T {
  return allowed.includes(value as T) ? (value as T) : fallback;
}

const prop = (o: ObjectProps, name: string): XNode | undefined => o.props.get(name);
const str = (o: ObjectProps, name: string): string | undefined => textOf(prop(o, name));
/** An ArrayOfManagedObjectReference value. */
const refs = (n: XNode | undefined): MoRef[] => (n ? n.children.map((c) => moRefOf(c)).filter((r): r is MoRef => r !== undefined) : []);

function decodeDisk(device: XNode): VirtualDiskInfo {
  const backing = child(device, 'backing');
  const bytes = numberOf(child(device, 'capacityInBytes'));
  const kb = numberOf(child(device, 'capacityInKB'));
  return {
    key: numberOf(child(device, 'key')) ?? 0,
    label: textOf(path(device, 'deviceInfo', 'label')) ?? '',
    fileName: textOf(child(backing, 'fileName')) ?? '',
    datastore: moRefOf(child(backing, 'datastore')),
    capacityBytes: bytes ?? (kb ?? 0) * 1024,
    uuid: textOf(child(backing, 'uuid')) || undefined,
    controllerKey: numberOf(child(device, 'controllerKey')),
    unitNumber: numberOf(child(device, 'unitNumber')),
  };
}

function decodeVm(o: ObjectProps, datacenter: string): VmInfo {
  const devices = prop(o, 'config.hardware.device')?.children ?? [];
  return {
    ref: o.obj,
    name: str(o, 'name') ?? o.obj.value,
    datacenter,
    powerState: oneOf<VmPowerState>(str(o, 'runtime.powerState'), ['poweredOn', 'poweredOff', 'suspended'], 'poweredOff'),
    uuid: str(o, 'config.uuid'),
    instanceUuid: str(o, 'config.instanceUuid'),
    guestId: str(o, 'config.guestId'),
    guestFamily: oneOf<GuestFamily>(
      str(o, 'guest.guestFamily'),
      ['windowsGuest', 'linuxGuest', 'netwareGuest', 'solarisGuest', 'darwinGuestFamily', 'otherGuestFamily'],
      'unknown',
    ),
    toolsRunningStatus: oneOf<ToolsRunningStatus>(
      str(o, 'guest.toolsRunningStatus'),
      ['guestToolsRunning', 'guestToolsNotRunning', 'guestToolsExecutingScripts'],
      'unknown',
    ),
    toolsStatus: str(o, 'guest.toolsStatus'),
    host: moRefOf(prop(o, 'runtime.host')),
    template: boolOf(prop(o, 'config.template')) ?? false,
    disks: devices.filter((d) => d.xsiType === 'VirtualDisk').map(decodeDisk),
  };
}

function decodeHost(o: ObjectProps, datacenter: string): HostInfo {
  const product = prop(o, 'summary.config.product');
  return {
    ref: o.obj,
    name: str(o, 'name') ?? o.obj.value,
    datacenter,
    productName: textOf(child(product, 'name')) ?? '',
    productVersion: textOf(child(product, 'version')) ?? '',
    productFullName: textOf(child(product, 'fullName')) ?? '',
    memoryBytes: numberOf(prop(o, 'summary.hardware.memorySize')) ?? 0,
    datastores: refs(prop(o, 'datastore')),
  };
}

function decodeDatastore(o: ObjectProps, datacenter: string, hosts: readonly HostInfo[]): DatastoreInfo {
  const s = prop(o, 'summary');
  const rawType = textOf(child(s, 'type')) ?? '';
  const key = refKey(o.obj);
  return {
    ref: o.obj,
    name: textOf(child(s, 'name')) ?? o.obj.value,
    datacenter,
    type: datastoreType(rawType),
    rawType,
    capacityBytes: numberOf(child(s, 'capacity')) ?? 0,
    freeBytes: numberOf(child(s, 'freeSpace')) ?? 0,
    url: textOf(child(s, 'url')) ?? '',
    accessible: boolOf(child(s, 'accessible')) ?? false,
    hosts: hosts.filter((h) => h.datastores.some((d) => refKey(d) === key)).map((h) => h.ref),
  };
}

/**
 * Reads the inventory: every datacenter, and in each its hosts, datastores and VMs (templates
 * included, flagged). One ContainerView per datacenter, so each object is attributed to its
 * datacenter; `maxObjects` pages the results.
 */
export async function discover(session: VsphereSession, options: RetrieveOptions = {}): Promise<VsphereInventory> {
  const inv: VsphereInventory = { datacenters: [], hosts: [], datastores: [], vms: [] };
  const dcs = await retrieveFromContainer(session, session.content.rootFolder, [{ type: 'Datacenter', paths: DATACENTER_PATHS }], options);
  for (const dc of dcs) {
    const name = str(dc, 'name') ?? dc.obj.value;
    inv.datacenters.push({ ref: dc.obj, name });
    const objects = await retrieveFromContainer(
      session,
      dc.obj,
      [
        { type: 'HostSystem', paths: HOST_PATHS },
        { type: 'Datastore', paths: DATASTORE_PATHS },
        { type: 'VirtualMachine', paths: VM_PATHS },
      ],
      options,
    );
    const hosts = objects.filter((o) => o.obj.type === 'HostSystem').map((o) => decodeHost(o, name));
    inv.hosts.push(...hosts);
    for (const o of objects) {
      if (o.obj.type === 'Datastore') inv.datastores.push(decodeDatastore(o, name, hosts));
      else if (o.obj.type === 'VirtualMachine') inv.vms.push(decodeVm(o, name));
    }
  }
  return inv;
}
