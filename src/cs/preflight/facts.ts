import type { ItemState, Direction } from '../domain/item-state.js';
import type { SpoolState } from '../../ps/spool.js';

/**
 * What the configuration server knows when an operation is asked for, gathered from its database,
 * the components' heartbeats and the fabrics. Checks decide from this snapshot alone, so they are
 * pure and a test can describe any situation as a plain object.
 *
 * The CS fills it for the direction the operation sets up: for enable the protected machine, its
 * agent and the PS/MT chosen at the recovery site; for reprotect and failback the failed-over
 * machine (the cloud VM), its agent and the PS/MT chosen at the original site.
 */
export interface PreflightFacts {
  item: ItemFacts;
  /** The machine that will send data (or, for failback and cancel, that is being switched from). */
  source: MachineFacts;
  /** The agent (mobility service) on `source`. */
  agent: ComponentFacts;
  processServer: ProcessServerFacts;
  masterTarget: MasterTargetFacts;
  policy: { rpoThresholdS: number };
  /** How far the target lags behind the source (age of its newest recovery point); null before the first one. */
  currentRpoS: number | null;
  thresholds: Thresholds;
  /**
   * What vCenter says about the site that receives (for reprotect and failback: the on-premises
   * site), when that site is a vSphere fabric; absent for physical and Azure sites.
   */
  vsphere?: VsphereFacts;
}

/** The vCenter facts behind the source's VMware prerequisites (DESIGN §5), from the last discovery. */
export interface VsphereFacts {
  fabric: string;
  /** Privileges the account lacks (datastores it cannot list, NoPermission on writes); empty when it has them all. */
  missingPrivileges: string[];
  /** The MT's VM runs on an ESXi host known to vCenter (not on a physical machine or another hypervisor). */
  mtHost: VsphereHostFacts | null;
  /** The master target's own VM; null when vCenter has no VM for the MT. */
  mtVm: VsphereVmFacts | null;
  /** The on-premises VM the item fails back to; null for alternate location before it is created. */
  targetVm: VsphereVmFacts | null;
  /** The host the target VM powers on at failback. */
  targetHost: VsphereHostFacts | null;
  /** Alternate location: the name the new VM will get, and whether a VM of that name already runs on the MT's host. */
  newVm?: { name: string; nameTaken: boolean };
  /** The datastore chosen for the target disks, as the MT's host sees it; null when none was chosen. */
  datastore: VsphereDatastoreFacts | null;
  /** Datastores the MT's host mounts read-write and that are accessible. */
  usableDatastores: string[];
  /** Datastores of the MT's disks and of the target VM recorded at reprotect, against where they are now. */
  moved: { what: string; from: string; to: string }[];
}

export interface VsphereHostFacts {
  name: string;
  /** `HostSystem` product line: `embeddedEsx` for ESXi. */
  productLine: string;
  /** Licence edition; the free ESXi licence gives a read-only API. */
  licence: { name: string; readOnlyApi: boolean };
  memoryBytes: number;
  memoryUsedBytes: number;
}

export interface VsphereVmFacts {
  name: string;
  powerState: 'poweredOn' | 'poweredOff' | 'suspended';
  snapshots: number;
  /** `disk.EnableUUID` in the VM's extraConfig is `TRUE`. */
  enableUuid: boolean;
  toolsRunning: boolean;
  memoryBytes: number;
  diskUuids: string[];
  datastores: string[];
}

export interface VsphereDatastoreFacts {
  name: string;
  type: string;
  accessible: boolean;
  /** Mounted read-write on the MT's host. */
  mountedReadWrite: boolean;
}

/** The item's lifecycle position comes from the CS domain model: one definition of the states. */
export type { ItemState, Direction } from '../domain/item-state.js';

export interface ItemFacts {
  id: string;
  name: string;
  state: ItemState;
  direction: Direction;
  flags: {
    /** Recovery machine, failback agent, PS and MT are known: reprotect and failback can run. */
    failbackConfigured?: boolean;
    /** The source machine was deleted, or moved where the CS no longer finds it (another resource group). */
    sourceDeleted: boolean;
    migrated: boolean;
    protectionDisabled: boolean;
  };
}

export type PowerState = 'running' | 'stopped' | 'unknown';

export interface MachineFacts {
  name: string;
  /** Found by the last fabric discovery. */
  exists: boolean;
  powerState: PowerState;
  /** Answers the fabric's liveness probe (guest tools, ping, agent port). */
  responding: boolean;
}

export interface ComponentFacts {
  id: string;
  name: string;
  /** False when the item names no component for this role (failback not configured). */
  configured?: boolean;
  registered: boolean;
  /** Time since the CS last received a heartbeat; null if it never did. */
  lastHeartbeatAgeMs: number | null;
}

export interface ProcessServerFacts extends ComponentFacts {
  /** From the PS's last heartbeat. */
  spool: { ratio: number; state: SpoolState };
}

export type Platform = 'linux' | 'windows';

export interface MasterTargetFacts extends ComponentFacts {
  platform: Platform;
  /** From the MT's last heartbeat. */
  volumes: VolumeFacts[];
  /** The retention path chosen for the operation; the platform's default when absent. */
  retentionPath?: string;
}

export interface VolumeFacts {
  /** Mount point (Linux) or drive / mount path (Windows: `R:`, `C:\mounts\ret`). */
  path: string;
  fsType: string;
  locked: boolean;
  inUseAsTarget: boolean;
  /** Holds the PS/MT installation or cache. */
  cacheOrInstall: boolean;
  capacityBytes: number;
  freeBytes: number;
}

export interface Thresholds {
  /** A component whose last heartbeat is older than this is reported as not connected. */
  heartbeatTimeoutMs: number;
  retentionRequiredFreeBytes: number;
  /** Spool usage ratio from which a warning is raised. */
  spoolNearlyFullRatio: number;
}

export const DEFAULT_THRESHOLDS: Readonly<Thresholds> = {
  heartbeatTimeoutMs: 90_000, // the CS monitor's default: 3 × the 30 s heartbeat interval
  retentionRequiredFreeBytes: 1024 ** 3,
  spoolNearlyFullRatio: 0.8,
};

/** The source's default retention volumes: `R:` on Windows, `/mnt/retention` on Linux. */
export function defaultRetentionPath(platform: Platform): string {
  return platform === 'windows' ? 'R:' : '/mnt/retention';
}
