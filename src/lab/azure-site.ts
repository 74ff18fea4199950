import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FabricMachine } from '../fabrics/fabric.js';
import { AZURITE_ACCOUNT } from '../fabrics/azure/azure-storage.js';
import type { PowerHooks } from '../fabrics/physical/power.js';
import type { AzureConfig } from '../replication/azure-config.js';
import { AZBLOB_SCHEME } from '../replication/disk-location.js';
import { createCa, issueCertificate } from '../security/pki.js';
import { startAzurite, type AzuriteProcess } from './azurite.js';
import { FakeArm } from './fake-arm.js';
import { startMachine, type MachineRun } from './machine.js';
import { guestHooks, type LabSite } from './site.js';

/**
 * The lab's Azure site as lab.json keeps it: the storage account `lab` (Azurite's development
 * account, its key in a file) that the site's MT and agents name in `azblob://lab/…` locations,
 * and where its VMs are in the fake ARM. No secret: the key stays in its file.
 */
export interface LabAzureSite {
  /** The `azure` config section of the site's components. */
  config: AzureConfig;
  subscriptionId: string;
  resourceGroup: string;
  armUrl: string;
  azuritePid: number;
}

/** The storage account name the lab's blob locations use, the container of its disks and the resource group of its VMs. */
export const LAB_AZURE = Object.freeze({ account: 'lab', container: 'disks', resourceGroup: 'boomerang-lab' });

/**
 * An Azure subscription as a lab site: Azurite (started here, over TLS with a CA of the site's
 * own) holds the machines' disks as page blobs, the fake ARM (run in the lab's process, like a
 * test's peer: ARM has no emulator) holds their VMs. ARM runs no guest: the lab's guest process is
 * run by the fabric's guest hooks when a VM starts and before it is deallocated.
 */
export class AzureLabSite implements LabSite {
  private constructor(
    readonly state: LabAzureSite,
    readonly arm: FakeArm,
    private readonly azurite: AzuriteProcess,
    private readonly login: { tenantId: string; clientId: string; clientSecret: string },
  ) {}

  static async start(dir: string, print: (line: string) => void): Promise<AzureLabSite> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const ca = await createCa({ commonName: 'Boomerang lab Azure CA' });
    const leaf = await issueCertificate(ca, { commonName: '127.0.0.1', ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'], usage: 'server' });
    const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'azurite-cert.pem'), key: join(dir, 'azurite-key.pem'), accountKey: join(dir, 'lab.key') };
    await writeFile(files.ca, ca.certPem);
    await writeFile(files.cert, leaf.certPem, { mode: 0o600 });
    await writeFile(files.key, leaf.keyPem, { mode: 0o600 });
    // Azurite's published development key: not a secret, but kept in a key file like a real account's.
    await writeFile(files.accountKey, `${AZURITE_ACCOUNT.accountKey}\n`, { mode: 0o600 });
    const azurite = await startAzurite({ location: join(dir, 'azurite'), certPath: files.cert, keyPath: files.key });
    let arm: FakeArm | undefined;
    try {
      arm = await FakeArm.start({ ca });
      const login = { tenantId: randomUUID(), clientId: randomUUID(), clientSecret: randomBytes(24).toString('base64url') };
      const subscriptionId = randomUUID();
      arm.addClient(login.tenantId, login.clientId, login.clientSecret);
      arm.addSubscription(subscriptionId, login.tenantId);
      arm.addResourceGroup(subscriptionId, LAB_AZURE.resourceGroup);
      const account = { url: `${azurite.origin}/${AZURITE_ACCOUNT.accountName}`, accountName: AZURITE_ACCOUNT.accountName, keyFile: files.accountKey, caFile: files.ca };
      const state = { config: { accounts: { [LAB_AZURE.account]: account } }, subscriptionId, resourceGroup: LAB_AZURE.resourceGroup, armUrl: arm.url, azuritePid: azurite.pid };
      print(`site B is an Azure site: Azurite ${azurite.origin} (pid ${azurite.pid}), fake ARM ${arm.url}`);
      return new AzureLabSite(state, arm, azurite, login);
    } catch (err) {
      await arm?.stop();
      await azurite.stop();
      throw err;
    }
  }

  fabric(name: string): object {
    const { tenantId, clientId, clientSecret } = this.login;
    return { kind: 'azure', name, config: { tenantId, clientId, subscriptionId: this.state.subscriptionId, authorityHost: this.state.armUrl, armEndpoint: this.state.armUrl, caPem: this.arm.caPem }, clientSecret };
  }

  componentConfig(): Record<string, unknown> {
    return { azure: this.state.config };
  }

  /** The machine's VM, deallocated until failover; the page blob its disk will be. */
  async createMachine(name: string): Promise<string> {
    this.arm.addVm({ subscriptionId: this.state.subscriptionId, resourceGroup: this.state.resourceGroup, name, powerState: 'deallocated' });
    return `${AZBLOB_SCHEME}${LAB_AZURE.account}/${LAB_AZURE.container}/${name}-disk0`;
  }

  power(name: string, hooks: Required<Omit<PowerHooks, 'manual'>>): Record<string, unknown> {
    return { subscriptionId: this.state.subscriptionId, resourceGroup: this.state.resourceGroup, vmName: name, guest: guestHooks(hooks) };
  }

  /** The VM runs, then its guest starts. */
  async start(machine: FabricMachine, run: MachineRun): Promise<void> {
    this.arm.setPowerState({ subscriptionId: this.state.subscriptionId, resourceGroup: this.state.resourceGroup, name: machine.name }, 'running');
    await startMachine(run);
  }

  async stop(): Promise<void> {
    await this.azurite.stop();
    await this.arm.stop();
  }
}
