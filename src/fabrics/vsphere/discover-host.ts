import type { DatastoreInfo, DatastoreMount, DatastoreType, HostInfo, HostLicence, MountAccess } from './inventory.js';
import type { ObjectProps } from './property-collector.js';
import { refs } from './discover-vm.js';
import { boolOf, child, moRefOf, numberOf, textOf, type MoRef, type XNode } from './xml.js';

/** Decoding of HostSystem and Datastore properties. */

export const HOST_PATHS = ['name', 'summary.config.product', 'summary.hardware.memorySize', 'summary.quickStats.overallMemoryUsage', 'runtime.connectionState', 'datastore'];
export const DATASTORE_PATHS = ['summary', 'host'];

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

export function decodeHost(o: ObjectProps, datacenter: string, licence: HostLicence | undefined): HostInfo {
  const prop = (name: string): XNode | undefined => o.props.get(name);
  const product = prop('summary.config.product');
  return {
    ref: o.obj,
    name: textOf(prop('name')) ?? o.obj.value,
    datacenter,
    productName: textOf(child(product, 'name')) ?? '',
    productVersion: textOf(child(product, 'version')) ?? '',
    productFullName: textOf(child(product, 'fullName')) ?? '',
    productLine: textOf(child(product, 'productLineId')) ?? '',
    memoryBytes: numberOf(prop('summary.hardware.memorySize')) ?? 0,
    // overallMemoryUsage is in MB.
    memoryUsedBytes: (numberOf(prop('summary.quickStats.overallMemoryUsage')) ?? 0) * 1024 * 1024,
    connectionState: textOf(prop('runtime.connectionState')) ?? 'unknown',
    licence,
    datastores: refs(prop('datastore')),
  };
}

function decodeMount(m: XNode): DatastoreMount | undefined {
  const host = moRefOf(child(m, 'key'));
  if (host === undefined) return undefined;
  const info = child(m, 'mountInfo');
  const mode = textOf(child(info, 'accessMode'));
  return {
    host,
    accessMode: (mode === 'readWrite' || mode === 'readOnly' ? mode : 'unknown') satisfies MountAccess,
    mounted: boolOf(child(info, 'mounted')) ?? true,
    accessible: boolOf(child(info, 'accessible')) ?? true,
  };
}

export function decodeDatastore(o: ObjectProps, datacenter: string, hosts: readonly HostInfo[]): DatastoreInfo {
  const s = o.props.get('summary');
  const rawType = textOf(child(s, 'type')) ?? '';
  const key = refKey(o.obj);
  const fromHosts = hosts.filter((h) => h.datastores.some((d) => refKey(d) === key)).map((h) => h.ref);
  const mounts = (o.props.get('host')?.children ?? []).map(decodeMount).filter((m): m is DatastoreMount => m !== undefined);
  // vCenter keeps both sides; a host listed on one side only still mounts the datastore.
  for (const h of fromHosts) {
    if (!mounts.some((m) => refKey(m.host) === refKey(h))) mounts.push({ host: h, accessMode: 'unknown', mounted: true, accessible: true });
  }
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
    hosts: fromHosts,
    mounts,
  };
}
