import type { Fabric } from '../fabrics/fabric.js';
import { AzureFabric } from '../fabrics/azure/fabric.js';
import { PhysicalFabric } from '../fabrics/physical/power.js';
import { VsphereFabric } from '../fabrics/vsphere/fabric.js';
import type { Db } from './db/open.js';
import type { FabricRow } from './db/schema.js';
import { csError } from './errors.js';
import { azureCredentialsOf } from './inventory/azure-config.js';
import { azureFabricAccess } from './inventory/azure-credentials.js';
import { vsphereFabricAccess } from './inventory/vsphere-credentials.js';
import { tlsOf } from './inventory/vsphere-config.js';

/**
 * The clients of the fabrics the CS knows, built from their rows (settings and stored secret) and
 * kept per fabric, so a vCenter session is shared by every job and check that talks to it.
 */
export class FabricClients {
  private readonly clients = new Map<string, Promise<Fabric>>();

  constructor(private readonly db: Db) {}

  get(row: FabricRow): Promise<Fabric> {
    let client = this.clients.get(row.id);
    if (client === undefined) {
      client = this.build(row);
      this.clients.set(row.id, client);
      // A failed build (a secret missing, say) is not kept: the next call tries again.
      client.catch(() => this.clients.delete(row.id));
    }
    return client;
  }

  private async build(row: FabricRow): Promise<Fabric> {
    switch (row.kind) {
      case 'physical':
        return new PhysicalFabric();
      case 'vsphere': {
        const access = await vsphereFabricAccess(this.db, row.id);
        const c = access.config;
        return new VsphereFabric({ url: c.url, tls: tlsOf(c), username: c.username, password: access.password }, c.masterTargetVms ? { masterTargetVms: c.masterTargetVms } : {});
      }
      case 'azure': {
        const access = await azureFabricAccess(this.db, row.id);
        return new AzureFabric(azureCredentialsOf(access.config, access.clientSecret));
      }
      default:
        throw csError('FABRIC_KIND_NOT_AVAILABLE', { kind: row.kind });
    }
  }

  async close(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    for (const c of all) await (await c.catch(() => undefined))?.close?.();
  }
}
