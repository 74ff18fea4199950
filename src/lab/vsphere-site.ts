import type { FabricMachine } from '../fabrics/fabric.js';
import type { PowerHooks } from '../fabrics/physical/power.js';
import { VsphereFabric } from '../fabrics/vsphere/fabric.js';
import { createRecoveryVm } from '../fabrics/vsphere/recovery-vm.js';
import { guestHooks, type LabSite } from './site.js';

/**
 * A vCenter as a lab site (vcsim in tests): each machine becomes a VM created on `host` with its
 * disk on `datastore` (a local directory under vcsim, where the agent and the MT write the VMDK's
 * flat extent); the site's master target stands for the VM `mtVm`. vcsim's VMs have no guest:
 * the lab's guest process is run by the fabric's guest hooks when the VM powers on and off.
 */
export interface LabVsphereSite {
  url: string;
  caPem: string;
  username: string;
  password: string;
  host: string;
  datastore: string;
  mtVm: string;
}

export class VsphereLabSite implements LabSite {
  constructor(
    private readonly v: LabVsphereSite,
    /** The component name of the site's MT. */
    private readonly mtName: string,
  ) {}

  fabric(name: string): object {
    const v = this.v;
    return { kind: 'vsphere', name, config: { url: v.url, username: v.username, caPem: v.caPem, masterTargetVms: { [this.mtName]: v.mtVm } }, password: v.password };
  }

  componentConfig(): Record<string, unknown> {
    return {};
  }

  /** A powered-off VM; the path of its disk's flat extent. */
  createMachine(name: string, diskBytes: number): Promise<string> {
    return this.withFabric(async (f) => {
      const vm = await f.withSession((session) => createRecoveryVm(session, { name, host: this.v.host, datastore: this.v.datastore, diskSizes: [diskBytes] }));
      return vm.disks[0]!.localPath;
    });
  }

  power(name: string, hooks: Required<Omit<PowerHooks, 'manual'>>): Record<string, unknown> {
    return { vm: name, guest: guestHooks(hooks) };
  }

  /** The VM powers on, then its guest starts. */
  start(machine: FabricMachine): Promise<void> {
    return this.withFabric((f) => f.power(machine, 'start', AbortSignal.timeout(120_000)));
  }

  async stop(): Promise<void> {}

  private async withFabric<T>(fn: (f: VsphereFabric) => Promise<T>): Promise<T> {
    const v = this.v;
    const fabric = new VsphereFabric({ url: v.url, tls: { caPem: v.caPem }, username: v.username, password: v.password });
    try {
      return await fn(fabric);
    } finally {
      await fabric.close();
    }
  }
}
