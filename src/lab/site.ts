import type { FabricMachine } from '../fabrics/fabric.js';
import type { PowerHooks } from '../fabrics/physical/power.js';
import { startMachine, type MachineRun } from './machine.js';

/**
 * How one lab site keeps its machines: the fabric the CS is given for it, where a machine's disk
 * lives, how the machine is described and started. The physical site is the default; a vCenter
 * (`vsphere-site.ts`) or an Azure subscription (`azure-site.ts`) can take a site's place.
 */
export interface LabSite {
  /** The body of `POST /v1/fabrics` for this site. */
  fabric(name: string): object;
  /** What the site's components (its MT, its machines' agents) need in their config. */
  componentConfig(): Record<string, unknown>;
  /** Makes the machine in the fabric; its disk's location, or undefined for the lab's own file. */
  createMachine(name: string, diskBytes: number): Promise<string | undefined>;
  /** The machine's power description for the CS, around the lab's power hooks (its guest). */
  power(name: string, hooks: Required<Omit<PowerHooks, 'manual'>>): Record<string, unknown>;
  /** Starts a machine the way its fabric does. */
  start(machine: FabricMachine, run: MachineRun): Promise<void>;
  /** Stops what the site started for itself (emulators); machines are stopped by the lab. */
  stop(): Promise<void>;
}

/** Machines whose disks are files in the site's folder, powered by the lab's hooks. */
export class PhysicalLabSite implements LabSite {
  fabric(name: string): object {
    return { kind: 'physical', name };
  }

  componentConfig(): Record<string, unknown> {
    return {};
  }

  async createMachine(): Promise<string | undefined> {
    return undefined;
  }

  power(_name: string, hooks: Required<Omit<PowerHooks, 'manual'>>): Record<string, unknown> {
    return hooks;
  }

  start(_machine: FabricMachine, run: MachineRun): Promise<void> {
    return startMachine(run);
  }

  async stop(): Promise<void> {}
}

/** Only the guest part of the hooks: vSphere and Azure power the VM, the hooks its guest. */
export function guestHooks(hooks: Required<Omit<PowerHooks, 'manual'>>): { start: string[]; stop: string[] } {
  return { start: hooks.start, stop: hooks.stop };
}
