import { NoPermissionError, MethodNotFoundError } from './faults.js';
import type { HostLicence } from './inventory.js';
import { retrieveObjects } from './property-collector.js';
import type { VsphereSession } from './session.js';
import { child, childrenNamed, moRefOf, textOf, type MoRef, type XNode } from './xml.js';

/**
 * Host licences, from vCenter's LicenseAssignmentManager. One query without an entity returns
 * every assignment on vCenter; hosts it leaves out are asked for one by one (vcsim answers only
 * per entity). Without an assignment manager (a standalone ESXi) or the right to read it, the
 * licences are unknown rather than an error: discovery goes on.
 */

/** The free ESXi edition ("vSphere Hypervisor"): its API does not allow writes. */
const FREE_EDITION = /^esxBasic/i;

function decodeLicence(info: XNode | undefined): HostLicence | undefined {
  const editionKey = textOf(child(info, 'editionKey'));
  if (info === undefined || editionKey === undefined) return undefined;
  return { editionKey, name: textOf(child(info, 'name')) ?? '', readOnlyApi: FREE_EDITION.test(editionKey) };
}

async function query(session: VsphereSession, manager: MoRef, entityId: string | undefined, signal?: AbortSignal): Promise<Map<string, HostLicence>> {
  const res = await session.transport.call('QueryAssignedLicenses', manager, { entityId }, signal);
  const out = new Map<string, HostLicence>();
  for (const a of childrenNamed(res, 'returnval')) {
    const licence = decodeLicence(child(a, 'assignedLicense'));
    const id = textOf(child(a, 'entityId'));
    if (licence !== undefined && id !== undefined) out.set(id, licence);
  }
  return out;
}

const UNKNOWN = (err: unknown): boolean => err instanceof NoPermissionError || err instanceof MethodNotFoundError;

/** Licences by host moref value; empty when vCenter has none to tell. */
export async function hostLicences(session: VsphereSession, licenseManager: MoRef | undefined, hosts: readonly MoRef[], signal?: AbortSignal): Promise<Map<string, HostLicence>> {
  if (licenseManager === undefined || hosts.length === 0) return new Map();
  let manager: MoRef | undefined;
  try {
    const [lm] = await retrieveObjects(session, [licenseManager], { type: 'LicenseManager', paths: ['licenseAssignmentManager'] }, signal === undefined ? {} : { signal });
    manager = moRefOf(lm?.props.get('licenseAssignmentManager'));
  } catch (err) {
    if (UNKNOWN(err)) return new Map();
    throw err;
  }
  if (manager === undefined) return new Map();
  try {
    const all = await query(session, manager, undefined, signal);
    for (const h of hosts) {
      if (all.has(h.value)) continue;
      const one = (await query(session, manager, h.value, signal)).get(h.value);
      if (one !== undefined) all.set(h.value, one);
    }
    return all;
  } catch (err) {
    if (UNKNOWN(err)) return new Map();
    throw err;
  }
}
