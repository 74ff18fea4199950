import type { MoRef } from './xml.js';

/** What discovery reads from a vCenter: plain data, safe to store and compare. */

export type DatastoreType = 'VMFS' | 'NFS' | 'NFS41' | 'vsan' | 'vvol' | 'other';
export type VmPowerState = 'poweredOn' | 'poweredOff' | 'suspended';
export type GuestFamily = 'windowsGuest' | 'linuxGuest' | 'netwareGuest' | 'solarisGuest' | 'darwinGuestFamily' | 'otherGuestFamily' | 'unknown';
export type ToolsRunningStatus = 'guestToolsRunning' | 'guestToolsNotRunning' | 'guestToolsExecutingScripts' | 'unknown';

export interface DatacenterInfo {
  ref: MoRef;
  name: string;
}

export interface HostInfo {
  ref: MoRef;
  name: string;
  datacenter: string;
  productName: string;
  productVersion: string;
  productFullName: string;
  memoryBytes: number;
  /** Datastores this host mounts (from HostSystem.datastore, the reliable side of the relation). */
  datastores: MoRef[];
}

export interface DatastoreInfo {
  ref: MoRef;
  name: string;
  datacenter: string;
  type: DatastoreType;
  /** The type as vCenter reported it (`summary.type`). */
  rawType: string;
  capacityBytes: number;
  freeBytes: number;
  url: string;
  accessible: boolean;
  /** Hosts that mount it (derived from the hosts' datastore lists). */
  hosts: MoRef[];
}

export interface VirtualDiskInfo {
  key: number;
  label: string;
  /** `[datastore] dir/name.vmdk` */
  fileName: string;
  datastore: MoRef | undefined;
  capacityBytes: number;
  uuid: string | undefined;
  controllerKey: number | undefined;
  unitNumber: number | undefined;
}

export interface VmInfo {
  ref: MoRef;
  name: string;
  datacenter: string;
  powerState: VmPowerState;
  uuid: string | undefined;
  instanceUuid: string | undefined;
  guestId: string | undefined;
  guestFamily: GuestFamily;
  toolsRunningStatus: ToolsRunningStatus;
  toolsStatus: string | undefined;
  host: MoRef | undefined;
  template: boolean;
  disks: VirtualDiskInfo[];
}

export interface VsphereInventory {
  datacenters: DatacenterInfo[];
  hosts: HostInfo[];
  datastores: DatastoreInfo[];
  vms: VmInfo[];
}
