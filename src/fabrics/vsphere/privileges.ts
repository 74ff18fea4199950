import { MethodNotFoundError, NoPermissionError } from './faults.js';
import type { PrivilegeReport } from './inventory.js';
import { retrieveObjects } from './property-collector.js';
import type { VsphereSession } from './session.js';
import { child, childrenNamed, ref, textOf, type MoRef } from './xml.js';

/**
 * Whether the vCenter account may do what Boomerang does at a site: browse and fill datastores,
 * create VMs and attach disks to the master target, power VMs, merge snapshots. vCenter hides
 * objects an account holds no permission on instead of failing, so an account without rights
 * on datastores sees an inventory that merely looks empty: this check asks vCenter outright
 * (AuthorizationManager.HasPrivilegeOnEntities for the session) and the caller adds the
 * datastores that hosts and VMs refer to but that could not be listed.
 */

export const REQUIRED_PRIVILEGES: readonly string[] = [
  'System.View',
  'Datastore.Browse',
  'Datastore.AllocateSpace',
  'Datastore.FileManagement',
  'VirtualMachine.Inventory.Create',
  'VirtualMachine.Config.AddExistingDisk',
  'VirtualMachine.Config.AddNewDisk',
  'VirtualMachine.Config.RemoveDisk',
  'VirtualMachine.Config.AdvancedConfig',
  'VirtualMachine.Interact.PowerOn',
  'VirtualMachine.Interact.PowerOff',
  'VirtualMachine.State.RemoveSnapshot',
  'Resource.AssignVMToPool',
];

async function sessionKey(session: VsphereSession, signal?: AbortSignal): Promise<string | undefined> {
  const [sm] = await retrieveObjects(session, [session.content.sessionManager], { type: 'SessionManager', paths: ['currentSession'] }, signal === undefined ? {} : { signal });
  return textOf(child(sm?.props.get('currentSession'), 'key'));
}

async function missingOn(session: VsphereSession, manager: MoRef, entities: readonly MoRef[], key: string, signal?: AbortSignal): Promise<Set<string>> {
  const missing = new Set<string>();
  try {
    const res = await session.transport.call('HasPrivilegeOnEntities', manager, { entity: entities.map(ref), sessionId: key, privId: [...REQUIRED_PRIVILEGES] }, signal);
    for (const e of childrenNamed(res, 'returnval')) {
      for (const p of childrenNamed(e, 'privAvailability')) if (textOf(child(p, 'isGranted')) !== 'true') missing.add(textOf(child(p, 'privId')) ?? '');
    }
  } catch (err) {
    // vCenter before 6.5 has only the one-entity form.
    if (!(err instanceof MethodNotFoundError)) throw err;
    for (const entity of entities) {
      const res = await session.transport.call('HasPrivilegeOnEntity', manager, { entity: ref(entity), sessionId: key, privId: [...REQUIRED_PRIVILEGES] }, signal);
      childrenNamed(res, 'returnval').forEach((v, i) => {
        if (textOf(v) !== 'true') missing.add(REQUIRED_PRIVILEGES[i] ?? '');
      });
    }
  }
  missing.delete('');
  return missing;
}

/**
 * The privileges in REQUIRED_PRIVILEGES the session lacks on any of `entities` (the datacenters,
 * or the root folder when none is visible). A check vCenter refuses is reported as unchecked,
 * with every required privilege listed as unverified.
 */
export async function checkPrivileges(
  session: VsphereSession,
  authorizationManager: MoRef | undefined,
  entities: readonly MoRef[],
  hiddenDatastores: readonly string[],
  signal?: AbortSignal,
): Promise<PrivilegeReport> {
  const unchecked: PrivilegeReport = { checked: false, missing: [...REQUIRED_PRIVILEGES], hiddenDatastores: [...hiddenDatastores] };
  if (authorizationManager === undefined) return unchecked;
  try {
    const key = await sessionKey(session, signal);
    if (key === undefined) return unchecked;
    const missing = await missingOn(session, authorizationManager, entities.length > 0 ? entities : [session.content.rootFolder], key, signal);
    return { checked: true, missing: REQUIRED_PRIVILEGES.filter((p) => missing.has(p)), hiddenDatastores: [...hiddenDatastores] };
  } catch (err) {
    if (err instanceof NoPermissionError || err instanceof MethodNotFoundError) return unchecked;
    throw err;
  }
}
