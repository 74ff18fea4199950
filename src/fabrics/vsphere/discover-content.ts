import type { VsphereSession } from './session.js';
import { child, moRefOf, type MoRef } from './xml.js';

/** The managers discovery needs beyond what VsphereSession keeps of ServiceContent. */
export interface DiscoveryManagers {
  /** Absent on some ESXi builds and for accounts that may not see it. */
  licenseManager: MoRef | undefined;
  authorizationManager: MoRef | undefined;
}

const SERVICE_INSTANCE: MoRef = { type: 'ServiceInstance', value: 'ServiceInstance' };

export async function discoveryManagers(session: VsphereSession, signal?: AbortSignal): Promise<DiscoveryManagers> {
  const rv = child(await session.transport.call('RetrieveServiceContent', SERVICE_INSTANCE, {}, signal), 'returnval');
  return { licenseManager: moRefOf(child(rv, 'licenseManager')), authorizationManager: moRefOf(child(rv, 'authorizationManager')) };
}
