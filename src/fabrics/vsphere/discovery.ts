import { discoveryManagers } from './discover-content.js';
import { DATASTORE_PATHS, decodeDatastore, decodeHost, HOST_PATHS, refKey } from './discover-host.js';
import { decodeVm, VM_PATHS } from './discover-vm.js';
import type { VsphereInventory } from './inventory.js';
import { hostLicences } from './licences.js';
import { checkPrivileges } from './privileges.js';
import { retrieveFromContainer, type ObjectProps, type RetrieveOptions } from './property-collector.js';
import type { VsphereSession } from './session.js';
import { textOf, type MoRef } from './xml.js';

export { refKey } from './discover-host.js';

const DATACENTER_PATHS = ['name'];

/** Datastores that hosts or VMs refer to but that were not listed: the account may not see them. */
function hiddenDatastores(inv: VsphereInventory): string[] {
  const listed = new Set(inv.datastores.map((d) => refKey(d.ref)));
  const referred: MoRef[] = [...inv.hosts.flatMap((h) => h.datastores), ...inv.vms.flatMap((v) => [...v.datastores, ...v.disks.flatMap((d) => (d.datastore ? [d.datastore] : []))])];
  return [...new Set(referred.filter((r) => !listed.has(refKey(r))).map((r) => r.value))].sort();
}

/**
 * Reads the inventory: every datacenter, and in each its hosts (with their licences), datastores
 * (with their mounts) and VMs (templates included, flagged); then checks the account's
 * privileges, so an account that cannot see datastores is reported as such rather than taken
 * for an empty site. One ContainerView per datacenter, so each object is attributed to its
 * datacenter; `maxObjects` pages the results.
 */
export async function discover(session: VsphereSession, options: RetrieveOptions = {}): Promise<VsphereInventory> {
  const { about } = session.content;
  const inv: VsphereInventory = {
    about: { fullName: about.fullName, apiType: about.apiType, apiVersion: about.apiVersion, instanceUuid: about.instanceUuid },
    datacenters: [],
    hosts: [],
    datastores: [],
    vms: [],
    privileges: { checked: false, missing: [], hiddenDatastores: [] },
  };
  const managers = await discoveryManagers(session, options.signal);
  const dcs = await retrieveFromContainer(session, session.content.rootFolder, [{ type: 'Datacenter', paths: DATACENTER_PATHS }], options);
  for (const dc of dcs) {
    const name = textOf(dc.props.get('name')) ?? dc.obj.value;
    inv.datacenters.push({ ref: dc.obj, name });
    const objects = await retrieveFromContainer(
      session,
      dc.obj,
      [
        { type: 'HostSystem', paths: HOST_PATHS },
        { type: 'Datastore', paths: DATASTORE_PATHS },
        { type: 'VirtualMachine', paths: VM_PATHS },
      ],
      options,
    );
    const ofType = (t: string): ObjectProps[] => objects.filter((o) => o.obj.type === t);
    const hostObjects = ofType('HostSystem');
    const licences = await hostLicences(session, managers.licenseManager, hostObjects.map((o) => o.obj), options.signal);
    const hosts = hostObjects.map((o) => decodeHost(o, name, licences.get(o.obj.value)));
    inv.hosts.push(...hosts);
    inv.datastores.push(...ofType('Datastore').map((o) => decodeDatastore(o, name, hosts)));
    inv.vms.push(...ofType('VirtualMachine').map((o) => decodeVm(o, name)));
  }
  inv.privileges = await checkPrivileges(session, managers.authorizationManager, inv.datacenters.map((d) => d.ref), hiddenDatastores(inv), options.signal);
  return inv;
}
