/**
 * Where machines and their disks live (DESIGN §4). The lifecycle talks to a machine only through
 * this interface, so vSphere and Azure slot in beside the physical fabric.
 */

export type PowerAction = 'start' | 'stop';
export type PowerState = 'running' | 'stopped' | 'unknown';

export interface FabricMachine {
  id: string;
  name: string;
  /** The fabric's own description of the machine (physical: its power hooks; vSphere: its VM). */
  power: Record<string, unknown>;
}

/** What a fabric itself says about a machine, for the pre-flight checks. */
export interface FabricMachineFacts {
  /** Found where it was recorded (an Azure VM moved to another resource group is not). */
  exists: boolean;
  powerState: PowerState;
  /** Running and answering the fabric's own liveness signal (guest agent, tools). */
  responding: boolean;
}

/** One of a machine's disks, as the master target writes it. */
export interface FabricDisk {
  diskId: string;
  /** The disk's data as the MT sees it: a file or device path (vSphere: the VMDK's flat extent). */
  path: string;
  sizeBytes: number;
}

/** Where things were when the disks were lent, so that a later move (Storage vMotion) can be told. */
export interface LentDisks {
  /** Datastores of the machine's VM and of the MT's VM, by VM name. */
  datastores: Record<string, string[]>;
}

export interface NewMachineDisk {
  diskId: string;
  sizeBytes: number;
}

export interface NewMachineOptions {
  name: string;
  /** Where its disks go; the fabric's choice (the MT's) when absent. */
  datastore?: string;
}

export interface NewMachine {
  power: Record<string, unknown>;
  disks: FabricDisk[];
}

export interface Fabric {
  readonly kind: 'physical' | 'vsphere' | 'azure';
  /** Idempotent: starting a running machine or stopping a stopped one succeeds. */
  power(machine: FabricMachine, action: PowerAction, signal: AbortSignal): Promise<void>;
  powerState(machine: FabricMachine, signal: AbortSignal): Promise<PowerState>;
  /**
   * Before the master target `mtName` takes the (stopped) machine's disks as its replicas: on
   * vSphere the VM's snapshots are removed and its disks hot-added to the MT's VM. Idempotent.
   * Fabrics whose MT reaches the disks directly (physical) leave it out.
   */
  lendDisksToMt?(machine: FabricMachine, mtName: string, disks: readonly FabricDisk[], signal: AbortSignal): Promise<LentDisks>;
  /** Before the machine starts on its disks again: they are detached from the MT's VM, never deleted. Idempotent. */
  returnDisksFromMt?(machine: FabricMachine, mtName: string, disks: readonly FabricDisk[], signal: AbortSignal): Promise<void>;
  /**
   * Alternate location: a new machine in place of `machine`, on the MT's host, with empty disks of
   * the given sizes. `name` must be free there. Returns how the new machine is powered and where
   * its disks are for the MT.
   */
  createMachineLike?(machine: FabricMachine, mtName: string, disks: readonly NewMachineDisk[], options: NewMachineOptions, signal: AbortSignal): Promise<NewMachine>;
  /** Asks the fabric about the machine (fabrics that only run hooks leave it out). */
  machineFacts?(machine: FabricMachine, signal: AbortSignal): Promise<FabricMachineFacts>;
  /** Releases connections; the fabric is not used afterwards. */
  close?(): Promise<void>;
}
