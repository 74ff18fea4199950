/**
 * Where machines and their disks live (DESIGN §4). The lifecycle talks to a machine only through
 * this interface, so vSphere and Azure slot in beside the physical fabric.
 */

export type PowerAction = 'start' | 'stop';
export type PowerState = 'running' | 'stopped' | 'unknown';

export interface FabricMachine {
  id: string;
  name: string;
  /** The fabric's own description of the machine (physical: its power hooks). */
  power: Record<string, unknown>;
}

export interface Fabric {
  readonly kind: 'physical' | 'vsphere' | 'azure';
  /** Idempotent: starting a running machine or stopping a stopped one succeeds. */
  power(machine: FabricMachine, action: PowerAction, signal: AbortSignal): Promise<void>;
  powerState(machine: FabricMachine, signal: AbortSignal): Promise<PowerState>;
}
