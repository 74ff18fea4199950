import type { MoRef } from './xml.js';

/** What discovery reads from a vCenter: plain data, safe to store and compare. */

export type DatastoreType = 'VMFS' | 'NFS' | 'NFS41' | 'vsan' | 'vvol' | 'other';
export type VmPowerState = 'poweredOn' | 'poweredOff' | 'suspended';
export type GuestFamily = 'windowsGuest' | 'linuxGuest' | 'netwareGuest' | 'solarisGuest' | 'darwinGuestFamily' | 'otherGuestFamily' | 'unknown';
export type ToolsRunningStatus = 'guestToolsRunning' | 'guestToolsNotRunning' | 'guestToolsExecutingScripts' | 'unknown';
/** The kind of controller a disk hangs off (from the controller device's type). */
export type ControllerType = 'pvscsi' | 'lsilogic' | 'lsilogic-sas' | 'buslogic' | 'ide' | 'sata' | 'nvme' | 'other' | 'unknown';
export type MountAccess = 'readWrite' | 'readOnly' | 'unknown';

export interface DatacenterInfo {
  ref: MoRef;
  name: string;
}

/** The licence vCenter assigns to a host (LicenseAssignmentManager). */
export interface HostLicence {
  editionKey: string;
  name: string;
  /** The free ESXi edition: its API is read-only, so Boomerang cannot create or reconfigure VMs there. */
  readOnlyApi: boolean;
}

export interface HostInfo {
  ref: MoRef;
  name: string;
  datacenter: string;
  productName: string;
  productVersion: string;
  productFullName: string;
  /** `embeddedEsx` for ESXi. */
  productLine: string;
  memoryBytes: number;
  /** From the host's quick stats. */
  memoryUsedBytes: number;
  connectionState: string;
  /** Undefined when vCenter would not say (no licence manager, or the account may not read it). */
  licence: HostLicence | undefined;
  /** Datastores this host mounts (from HostSystem.datastore, the reliable side of the relation). */
  datastores: MoRef[];
}

/** One host's mount of a datastore (`Datastore.host[].mountInfo`). */
export interface DatastoreMount {
  host: MoRef;
  accessMode: MountAccess;
  mounted: boolean;
  accessible: boolean;
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
  /** How each host mounts it; a host known only from its own datastore list has access `unknown`. */
  mounts: DatastoreMount[];
}

/** A VirtualDisk device as every reader sees it. */
export interface DiskDevice {
  key: number;
  label: string;
  /** `[datastore] dir/name.vmdk` */
  fileName: string;
  datastore: MoRef | undefined;
  capacityBytes: number;
  /** As vSphere shows it (`6000C29…`); undefined when the server reports none. */
  uuid: string | undefined;
  controllerKey: number | undefined;
  unitNumber: number | undefined;
}

export interface VirtualDiskInfo extends DiskDevice {
  /** The backing's type, e.g. `VirtualDiskFlatVer2BackingInfo`, `VirtualDiskRawDiskMappingVer1BackingInfo`. */
  backingType: string;
  thinProvisioned: boolean | undefined;
  diskMode: string | undefined;
  controllerType: ControllerType;
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
  memoryBytes: number;
  /** How many snapshots the VM's tree holds (0: none). */
  snapshotCount: number;
  /** `disk.EnableUUID` in extraConfig is true (the last value wins, as on ESXi). */
  enableUuid: boolean;
  /** Datastores holding the VM's files (`VirtualMachine.datastore`). */
  datastores: MoRef[];
  disks: VirtualDiskInfo[];
}

/** What the account may do, checked at discovery time. */
export interface PrivilegeReport {
  /** False when vCenter refused the check itself (then `missing` is what could not be verified). */
  checked: boolean;
  /** Privileges Boomerang needs that the account lacks on at least one datacenter. */
  missing: string[];
  /** Datastores hosts or VMs refer to but that the account cannot list. */
  hiddenDatastores: string[];
}

export interface VcenterAbout {
  fullName: string;
  apiType: string;
  apiVersion: string;
  instanceUuid: string | undefined;
}

export interface VsphereInventory {
  about: VcenterAbout;
  datacenters: DatacenterInfo[];
  hosts: HostInfo[];
  datastores: DatastoreInfo[];
  vms: VmInfo[];
  privileges: PrivilegeReport;
}

/** The account lacks something Boomerang needs: the inventory is partial, not empty. */
export function lacksPrivileges(inv: VsphereInventory): boolean {
  return !inv.privileges.checked || inv.privileges.missing.length > 0 || inv.privileges.hiddenDatastores.length > 0;
}
