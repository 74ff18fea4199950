import { BoomerangError } from '../../replication/errors.js';
import type { Fabric, FabricDisk, FabricMachine, LentDisks, NewMachine, NewMachineDisk, NewMachineOptions, PowerAction, PowerState } from '../fabric.js';
import { runHook, type PowerHooks } from '../physical/power.js';
import { NotAuthenticatedError } from './faults.js';
import { powerOffVm, powerOnVm, vmPowerState } from './power.js';
import { queryVmEvents, type VmEvent } from './events.js';
import { createRecoveryVm, localFlatExtents } from './recovery-vm.js';
import { mergeSnapshots } from './snapshots.js';
import { attachDisks, detachDisks, listVmDisks } from './vm-disks.js';
import type { VmDisk } from './vm-devices.js';
import { retrieveFromContainer, retrieveObjects } from './property-collector.js';
import { VsphereSession, type Credentials } from './session.js';
import type { TransportOptions } from './transport.js';
import { moRefOf, textOf, type MoRef } from './xml.js';

/**
 * A vSphere machine as the CS records it: the VM's name in vCenter, and optionally guest hooks.
 * vcsim's VMs have no guest: the lab runs a process as the guest (agent and workload) and gives
 * its start/stop hooks here, run after power-on and before power-off, as a real guest boots and
 * shuts down on its own.
 */
export interface VsphereMachinePower {
  vm: string;
  guest?: PowerHooks;
}

export function vsphereMachinePower(machine: FabricMachine): VsphereMachinePower {
  const p = machine.power as Partial<VsphereMachinePower>;
  if (typeof p.vm !== 'string' || p.vm === '') throw new BoomerangError('VSPHERE_MACHINE', `machine ${machine.name} names no VM (power.vm)`);
  return { vm: p.vm, ...(p.guest ? { guest: p.guest } : {}) };
}

export type VsphereConnection = TransportOptions & Credentials;

export interface VsphereFabricOptions {
  /** The VM each master target runs in, by the MT's component name. */
  masterTargetVms?: Readonly<Record<string, string>>;
}

const GUEST_HOOK_TIMEOUT_MS = 5 * 60 * 1000;

/** The events vCenter records when a VM's files move (Storage vMotion, SDRS, a relocation). */
const RELOCATION_EVENTS = ['VmRelocatedEvent', 'VmMigratedEvent', 'DrsVmMigratedEvent'];

/**
 * The vSphere fabric: one vCenter. The session is opened on first use and opened again when
 * vCenter has dropped it (sessions expire after 30 minutes idle).
 */
export class VsphereFabric implements Fabric {
  readonly kind = 'vsphere' as const;
  private session: Promise<VsphereSession> | undefined;

  constructor(
    private readonly connection: VsphereConnection,
    private readonly options: VsphereFabricOptions = {},
  ) {}

  /** Runs `fn` on a logged-in session; once more on a fresh one if the session had expired. */
  async withSession<T>(fn: (session: VsphereSession) => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      this.session ??= VsphereSession.login(this.connection, signal);
      const pending = this.session;
      let session: VsphereSession;
      try {
        session = await pending;
      } catch (err) {
        if (this.session === pending) this.session = undefined;
        throw err;
      }
      try {
        return await fn(session);
      } catch (err) {
        if (!(err instanceof NotAuthenticatedError) || attempt > 0) throw err;
        if (this.session === pending) this.session = undefined;
      }
    }
  }

  /** The VM of that name, or VSPHERE_VM_NOT_FOUND. */
  async findVm(name: string, signal?: AbortSignal): Promise<MoRef> {
    const [vm] = await this.findVms([name], signal);
    return vm!;
  }

  /** The VMs of these names, in order, from one read of the inventory; VSPHERE_VM_NOT_FOUND for a missing one. */
  async findVms(names: readonly string[], signal?: AbortSignal): Promise<MoRef[]> {
    const byName = await this.vmsByName(signal);
    return names.map((name) => {
      const vm = byName.get(name);
      if (!vm) throw new BoomerangError('VSPHERE_VM_NOT_FOUND', `vCenter has no VM named ${name}`);
      return vm;
    });
  }

  /** Every VM by name, from one read of the inventory. */
  private vmsByName(signal?: AbortSignal): Promise<Map<string | undefined, MoRef>> {
    return this.withSession(async (s) => {
      const vms = await retrieveFromContainer(s, s.content.rootFolder, [{ type: 'VirtualMachine', paths: ['name'] }], signal === undefined ? {} : { signal });
      return new Map(vms.map((o) => [textOf(o.props.get('name')), o.obj]));
    }, signal);
  }

  async power(machine: FabricMachine, action: PowerAction, signal: AbortSignal): Promise<void> {
    const { vm: name, guest } = vsphereMachinePower(machine);
    const vm = await this.findVm(name, signal);
    const state = await this.withSession((s) => vmPowerState(s, vm, signal), signal);
    if (action === 'start') {
      if (state !== 'poweredOn') await this.withSession((s) => powerOnVm(s, vm, { signal }), signal);
      if (guest?.start) {
        // The guest finds its disks as a booting OS would: the VM's, in device order.
        const disks = await this.withSession(async (s) => localFlatExtents(s, (await listVmDisks(s, vm, signal)).map((d) => d.fileName), signal), signal);
        await this.guestHook(machine, guest.start, action, signal, { BOOMERANG_DISKS: JSON.stringify(disks) });
      }
    } else {
      if (guest?.stop) await this.guestHook(machine, guest.stop, action, signal);
      if (state !== 'poweredOff') await this.withSession((s) => powerOffVm(s, vm, { signal }), signal);
    }
  }

  async powerState(machine: FabricMachine, signal: AbortSignal): Promise<PowerState> {
    const { vm: name } = vsphereMachinePower(machine);
    const vm = await this.findVm(name, signal);
    const state = await this.withSession((s) => vmPowerState(s, vm, signal), signal);
    return state === 'poweredOn' ? 'running' : state === 'poweredOff' ? 'stopped' : 'unknown';
  }

  /**
   * The machine's VM is off; its snapshots are merged (a replica is written to the base disks, so
   * no delta may sit on top) and its disks hot-added to the MT's VM, where the MT writes them.
   */
  async lendDisksToMt(machine: FabricMachine, mtName: string, disks: readonly FabricDisk[], signal: AbortSignal): Promise<LentDisks> {
    const names = [vsphereMachinePower(machine).vm, this.mtVmName(mtName)];
    const [vm, mtVm] = (await this.findVms(names, signal)) as [MoRef, MoRef];
    const lent = await this.vmDisksFor(machine, vm, disks, signal);
    await this.withSession((s) => mergeSnapshots(s, vm, { signal }), signal);
    await this.withSession((s) => attachDisks(s, mtVm, lent.map((d) => ({ fileName: d.fileName, capacityBytes: d.capacityBytes })), { signal }), signal);
    const held = await this.vmDatastores([vm, mtVm], signal);
    return { datastores: Object.fromEntries(names.map((n, i) => [n, held[i]!])) };
  }

  /** The names of the datastores holding each VM's files, in two reads whatever the number of VMs. */
  private async vmDatastores(vms: readonly MoRef[], signal: AbortSignal): Promise<string[][]> {
    return this.withSession(async (s) => {
      const objects = await retrieveObjects(s, vms, { type: 'VirtualMachine', paths: ['datastore'] }, { signal });
      const refsOf = (vm: MoRef) => (objects.find((o) => o.obj.value === vm.value)?.props.get('datastore')?.children ?? []).map((c) => moRefOf(c)).filter((r): r is MoRef => r !== undefined);
      const all = vms.flatMap(refsOf);
      const named = all.length === 0 ? [] : await retrieveObjects(s, all, { type: 'Datastore', paths: ['name'] }, { signal });
      const nameOf = new Map(named.map((d) => [d.obj.value, textOf(d.props.get('name')) ?? d.obj.value]));
      return vms.map((vm) => refsOf(vm).map((r) => nameOf.get(r.value) ?? r.value).sort());
    }, signal);
  }

  /** The disks leave the MT's VM (the files stay: no destroy), so the machine's VM can power on with them. */
  async returnDisksFromMt(machine: FabricMachine, mtName: string, disks: readonly FabricDisk[], signal: AbortSignal): Promise<void> {
    const [vm, mtVm] = (await this.findVms([vsphereMachinePower(machine).vm, this.mtVmName(mtName)], signal)) as [MoRef, MoRef];
    const lent = await this.vmDisksFor(machine, vm, disks, signal);
    await this.withSession((s) => detachDisks(s, mtVm, lent.map((d) => d.fileName), { signal }), signal);
  }

  /**
   * A new VM on the MT VM's host, on `options.datastore` or the MT VM's first datastore, with thin
   * disks of the sizes given; powered off. It keeps `machine`'s guest hooks (the lab's guest).
   * A VM of that name already on vCenter is refused (78052), so a rerun after a crash is told so.
   */
  async createMachineLike(machine: FabricMachine, mtName: string, disks: readonly NewMachineDisk[], options: NewMachineOptions, signal: AbortSignal): Promise<NewMachine> {
    const { guest } = vsphereMachinePower(machine);
    const vms = await this.vmsByName(signal);
    const mtVm = vms.get(this.mtVmName(mtName));
    if (!mtVm) throw new BoomerangError('VSPHERE_VM_NOT_FOUND', `vCenter has no VM named ${this.mtVmName(mtName)}`);
    if (vms.has(options.name)) throw new BoomerangError('VSPHERE_VM_NAME_TAKEN', `a VM named ${options.name} already exists`);
    return this.withSession(async (s) => {
      const [vmProps] = await retrieveObjects(s, [mtVm], { type: 'VirtualMachine', paths: ['runtime.host', 'datastore'] }, { signal });
      const hostRef = moRefOf(vmProps?.props.get('runtime.host'));
      const dsRef = moRefOf(vmProps?.props.get('datastore')?.children[0]);
      if (!hostRef) throw new BoomerangError('VSPHERE_MT_VM_UNKNOWN', `the VM of master target ${mtName} runs on no host`);
      const [hostProps] = await retrieveObjects(s, [hostRef], { type: 'HostSystem', paths: ['name'] }, { signal });
      let datastore = options.datastore;
      if (datastore === undefined && dsRef) {
        const [dsProps] = await retrieveObjects(s, [dsRef], { type: 'Datastore', paths: ['name'] }, { signal });
        datastore = textOf(dsProps?.props.get('name'));
      }
      if (datastore === undefined) throw new BoomerangError('VSPHERE_NO_DATASTORE', `no datastore given and the VM of master target ${mtName} has none`);
      const created = await createRecoveryVm(s, { name: options.name, host: textOf(hostProps?.props.get('name')) ?? hostRef.value, datastore, diskSizes: disks.map((d) => d.sizeBytes) }, signal);
      return {
        power: { vm: options.name, ...(guest ? { guest } : {}) },
        disks: disks.map((d, i) => ({ diskId: d.diskId, path: created.disks[i]!.localPath, sizeBytes: d.sizeBytes })),
      };
    }, signal);
  }

  /** Storage vMotion (relocation) events of a VM since `since` (ISO time), oldest first. */
  async relocationsSince(vmName: string, since: string, signal: AbortSignal): Promise<VmEvent[]> {
    const vm = await this.findVm(vmName, signal);
    return this.withSession((s) => queryVmEvents(s, vm, { types: RELOCATION_EVENTS, since, signal }), signal);
  }

  /** The VM of an MT, as this fabric's settings name it. */
  masterTargetVm(mtName: string): string | undefined {
    return this.options.masterTargetVms?.[mtName];
  }

  private mtVmName(mtName: string): string {
    const name = this.masterTargetVm(mtName);
    if (name === undefined) throw new BoomerangError('VSPHERE_MT_VM_UNKNOWN', `the fabric names no VM for master target ${mtName} (masterTargetVms)`);
    return name;
  }

  /** The VM's disks behind `disks`, matched by the flat extent the MT writes; a disk the VM lacks is an error. */
  private async vmDisksFor(machine: FabricMachine, vm: MoRef, disks: readonly FabricDisk[], signal: AbortSignal): Promise<VmDisk[]> {
    return this.withSession(async (s) => {
      const all = await listVmDisks(s, vm, signal);
      const flats = await localFlatExtents(s, all.map((d) => d.fileName), signal);
      return disks.map((disk) => {
        const i = flats.indexOf(disk.path);
        const found = all[i];
        if (found === undefined) throw new BoomerangError('VSPHERE_DISK_NOT_ON_VM', `VM of ${machine.name} has no disk whose data is ${disk.path} (disk ${disk.diskId})`);
        return found;
      });
    }, signal);
  }

  private async guestHook(machine: FabricMachine, argv: string[], action: PowerAction, signal: AbortSignal, env: Record<string, string> = {}): Promise<void> {
    const r = await runHook(argv, { ...env, BOOMERANG_MACHINE: machine.name, BOOMERANG_ACTION: action }, signal, GUEST_HOOK_TIMEOUT_MS);
    if (r.exitCode !== 0) throw new BoomerangError('POWER_HOOK', `guest ${action} hook ${argv[0]} exited with ${r.exitCode}${r.output ? `: ${r.output}` : ''}`);
  }

  async close(): Promise<void> {
    const pending = this.session;
    this.session = undefined;
    if (pending) await (await pending.catch(() => undefined))?.logout().catch(() => undefined);
  }
}
