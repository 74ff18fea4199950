import { BoomerangError } from '../../replication/errors.js';
import type { Fabric, FabricMachine, PowerAction, PowerState } from '../fabric.js';
import { runHook, type PowerHooks } from '../physical/power.js';
import { ArmVmClient, validateVmRef, type ArmClientOptions, type AzureCredentials, type AzureVmRef, type VmFacts, type VmPowerState } from './arm.js';
import { AzureArmError } from './arm-errors.js';

/**
 * The Azure fabric: machines are VMs reached through Resource Manager. A FabricMachine's `power`
 * record holds its AzureVmRef (`subscriptionId`, `resourceGroup`, `vmName`, and `vmId` once
 * discovered), and optionally `guest` hooks.
 *
 * Guest hooks are the lab's stand-in for the guest OS: ARM (and the lab's fake of it) starts no
 * operating system, so the lab gives the commands that start and stop its guest process (agent
 * and workload) here; they run after the VM is started and before it is deallocated, as a real
 * guest boots and shuts down on its own. Real Azure machines have none.
 *
 * Stop deallocates. The source powers the Azure VM off at failback; we deallocate instead, because
 * a VM that is only powered off keeps its compute allocation and is billed for it, while its disks
 * (what failback and a later failover need) are kept either way. Starting a deallocated VM takes a
 * little longer and may land on another host, which nothing here depends on.
 */

/** What the configuration server's pre-flight needs from the fabric about one machine. */
export interface AzureMachineFacts {
  name: string;
  /** The VM is where it was recorded (moved or deleted: false, so only `source-deleted` fails). */
  exists: boolean;
  powerState: PowerState;
  /** Running and its Azure guest agent reports Ready. */
  responding: boolean;
  flags: {
    /** Deleted, or moved to another resource group: not where the CS recorded it. */
    sourceDeleted: boolean;
    /** Found in another resource group of the subscription (the `source-deleted` message names this case). */
    resourceGroupMoved: boolean;
  };
  /** The whole ARM reading, for messages and logs. */
  vm: VmFacts;
}

/** The fabric's three-valued power state: deallocated is stopped; a VM changing state is not yet either. */
export function fabricPowerState(state: VmPowerState): PowerState {
  if (state === 'running') return 'running';
  if (state === 'stopped' || state === 'deallocated') return 'stopped';
  return 'unknown';
}

/** The AzureVmRef in a machine's `power` record; AZURE_INVALID_INPUT when it is not one. */
export function vmRefOf(machine: FabricMachine): AzureVmRef {
  const p = machine.power;
  const ref: AzureVmRef = {
    subscriptionId: p['subscriptionId'] as string,
    resourceGroup: p['resourceGroup'] as string,
    vmName: p['vmName'] as string,
    ...(p['vmId'] !== undefined ? { vmId: p['vmId'] as string } : {}),
  };
  try {
    return validateVmRef(ref);
  } catch (err) {
    throw new AzureArmError('AZURE_INVALID_INPUT', `machine ${machine.name}: ${(err as Error).message}`);
  }
}

/** The guest hooks in a machine's `power` record, if any (the lab's guest; see above). */
export function guestHooksOf(machine: FabricMachine): PowerHooks | undefined {
  const guest = machine.power['guest'];
  if (guest === undefined) return undefined;
  const argv = (v: unknown) => v === undefined || (Array.isArray(v) && v.length > 0 && v.every((a) => typeof a === 'string'));
  const g = guest as Record<string, unknown>;
  if (typeof guest !== 'object' || guest === null || !argv(g['start']) || !argv(g['stop'])) {
    throw new AzureArmError('AZURE_INVALID_INPUT', `machine ${machine.name}: power.guest must hold start and/or stop commands (arrays of strings)`);
  }
  return guest as PowerHooks;
}

const GUEST_HOOK_TIMEOUT_MS = 5 * 60 * 1000;

export class AzureFabric implements Fabric {
  readonly kind = 'azure' as const;
  readonly #arm: ArmVmClient;

  constructor(credentials: AzureCredentials, options: ArmClientOptions = {}) {
    this.#arm = new ArmVmClient(credentials, options);
  }

  /**
   * Idempotent. Stop deallocates (see above). A VM that is not where recorded fails with
   * AZURE_VM_NOT_FOUND. Guest hooks run after the start and before the deallocation.
   */
  async power(machine: FabricMachine, action: PowerAction, signal: AbortSignal): Promise<void> {
    const ref = vmRefOf(machine);
    const guest = guestHooksOf(machine);
    if (action === 'start') {
      await this.#arm.start(ref, signal);
      if (guest?.start) await guestHook(machine, guest.start, action, signal);
    } else {
      if (guest?.stop) await guestHook(machine, guest.stop, action, signal);
      await this.#arm.deallocate(ref, signal);
    }
  }

  /** AZURE_VM_NOT_FOUND when the VM is not where recorded: "unknown" would hide a deleted or moved VM. */
  async powerState(machine: FabricMachine, signal: AbortSignal): Promise<PowerState> {
    const ref = vmRefOf(machine);
    const facts = await this.#arm.vmFacts(ref, signal);
    if (!facts.exists) {
      const where = facts.resourceGroupMoved ? `it was moved to resource group ${facts.resourceGroup}` : 'it was deleted';
      throw new AzureArmError('AZURE_VM_NOT_FOUND', `VM ${ref.vmName} is no longer in resource group ${ref.resourceGroup}: ${where}`);
    }
    return fabricPowerState(facts.powerState);
  }

  /** The facts the pre-flight checks consume (source-deleted, 78093). Errors other than a missing VM propagate. */
  async machineFacts(machine: FabricMachine, signal: AbortSignal): Promise<AzureMachineFacts> {
    const vm = await this.#arm.vmFacts(vmRefOf(machine), signal);
    const powerState = vm.exists ? fabricPowerState(vm.powerState) : 'unknown';
    return {
      name: machine.name,
      exists: vm.exists,
      powerState,
      responding: powerState === 'running' && vm.agentReady,
      flags: { sourceDeleted: !vm.exists, resourceGroupMoved: vm.resourceGroupMoved },
      vm,
    };
  }
}

async function guestHook(machine: FabricMachine, argv: string[], action: PowerAction, signal: AbortSignal): Promise<void> {
  const r = await runHook(argv, { BOOMERANG_MACHINE: machine.name, BOOMERANG_ACTION: action }, signal, GUEST_HOOK_TIMEOUT_MS);
  if (r.exitCode !== 0) throw new BoomerangError('POWER_HOOK', `guest ${action} hook ${argv[0]} exited with ${r.exitCode}${r.output ? `: ${r.output}` : ''}`);
}
