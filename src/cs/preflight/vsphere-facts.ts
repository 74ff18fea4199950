import { refKey } from '../../fabrics/vsphere/discovery.js';
import type { HostInfo, VmInfo, VsphereInventory } from '../../fabrics/vsphere/inventory.js';
import type { MoRef } from '../../fabrics/vsphere/xml.js';
import type { VsphereDatastoreFacts, VsphereFacts, VsphereHostFacts, VsphereVmFacts } from './facts.js';

/** What the CS knows besides the inventory: which VMs play which part, and what moved since reprotect. */
export interface VsphereRoles {
  fabric: string;
  /** The MT's VM (from the fabric's masterTargetVms); undefined when the fabric names none. */
  mtVm: string | undefined;
  /** The on-premises VM the item fails back to. */
  targetVm: string | undefined;
  /** Alternate location: the VM to be created (the target VM is then undefined). */
  newVm?: string;
  /** The datastore chosen for new disks (alternate location); original location uses the target VM's. */
  datastore?: string;
  /** Moves vCenter reported as events since the last reprotect. */
  moved: VsphereFacts['moved'];
  /** Datastores of the VMs recorded when the disks were lent at the last reprotect, by VM name. */
  lentDatastores?: Readonly<Record<string, readonly string[]>>;
}

/** The vCenter facts of the pre-flight checks, from a stored inventory (pure: tests give any inventory). */
export function vsphereFacts(inv: VsphereInventory, roles: VsphereRoles): VsphereFacts {
  const hostByRef = new Map(inv.hosts.map((h) => [refKey(h.ref), h]));
  const dsByRef = new Map(inv.datastores.map((d) => [refKey(d.ref), d]));
  const vmNamed = (name: string | undefined) => (name === undefined ? undefined : inv.vms.find((v) => v.name === name && !v.template));
  const hostOf = (vm: VmInfo | undefined) => (vm?.host === undefined ? undefined : hostByRef.get(refKey(vm.host)));
  const dsNames = (refs: readonly MoRef[]) => refs.map((r) => dsByRef.get(refKey(r))?.name ?? r.value);

  const mtVm = vmNamed(roles.mtVm);
  const targetVm = vmNamed(roles.targetVm);
  const mtHost = hostOf(mtVm);
  const usable = mtHost === undefined ? [] : inv.datastores.filter((d) => d.accessible && d.mounts.some((m) => refKey(m.host) === refKey(mtHost.ref) && m.mounted && m.accessible && m.accessMode === 'readWrite'));

  // Original location writes where the VM's disks are; a new VM goes to the MT's datastore unless one was chosen.
  const holder = targetVm ?? (roles.newVm === undefined ? undefined : mtVm);
  const chosenName = roles.datastore ?? (holder === undefined ? undefined : dsNames(holder.datastores)[0]);
  const chosen = chosenName === undefined ? undefined : inv.datastores.find((d) => d.name === chosenName);
  let datastore: VsphereDatastoreFacts | null = null;
  if (chosenName !== undefined) {
    const mount = chosen && mtHost ? chosen.mounts.find((m) => refKey(m.host) === refKey(mtHost.ref)) : undefined;
    datastore = {
      name: chosenName,
      type: chosen?.type ?? 'unknown',
      accessible: chosen?.accessible === true && mount?.accessible === true,
      mountedReadWrite: mount?.mounted === true && mount.accessMode === 'readWrite',
    };
  }
  return {
    fabric: roles.fabric,
    missingPrivileges: [...inv.privileges.missing, ...inv.privileges.hiddenDatastores.map((d) => `see datastore ${d}`), ...(inv.privileges.checked ? [] : ['System.View'])],
    mtHost: mtHost === undefined ? null : hostFacts(mtHost),
    mtVm: mtVm === undefined ? null : vmFacts(mtVm, dsNames),
    targetVm: targetVm === undefined ? null : vmFacts(targetVm, dsNames),
    targetHost: hostOf(targetVm) === undefined ? null : hostFacts(hostOf(targetVm)!),
    ...(roles.newVm === undefined ? {} : { newVm: { name: roles.newVm, nameTaken: mtHost !== undefined && inv.vms.some((v) => v.name === roles.newVm && v.host !== undefined && refKey(v.host) === refKey(mtHost.ref)) } }),
    datastore,
    usableDatastores: usable.map((d) => d.name),
    moved: [...movedSinceLent(roles.lentDatastores ?? {}, vmNamed, dsNames), ...roles.moved],
  };
}

/** VMs whose datastores are not those recorded when their disks were lent (Storage vMotion, SDRS). */
function movedSinceLent(lent: Readonly<Record<string, readonly string[]>>, vmNamed: (name: string) => VmInfo | undefined, dsNames: (refs: readonly MoRef[]) => string[]): VsphereFacts['moved'] {
  const moved: VsphereFacts['moved'] = [];
  for (const [name, then] of Object.entries(lent)) {
    const vm = vmNamed(name);
    if (vm === undefined) continue;
    const now = dsNames(vm.datastores).sort();
    const before = [...then].sort();
    if (now.join(',') !== before.join(',')) moved.push({ what: name, from: before.join(', '), to: now.join(', ') });
  }
  return moved;
}

function hostFacts(h: HostInfo): VsphereHostFacts {
  return {
    name: h.name,
    productLine: h.productLine,
    licence: { name: h.licence?.name ?? 'unknown', readOnlyApi: h.licence?.readOnlyApi === true },
    memoryBytes: h.memoryBytes,
    memoryUsedBytes: h.memoryUsedBytes,
  };
}

function vmFacts(v: VmInfo, dsNames: (refs: readonly MoRef[]) => string[]): VsphereVmFacts {
  return {
    name: v.name,
    powerState: v.powerState,
    snapshots: v.snapshotCount,
    enableUuid: v.enableUuid,
    toolsRunning: v.toolsRunningStatus === 'guestToolsRunning',
    memoryBytes: v.memoryBytes,
    diskUuids: v.disks.map((d) => d.uuid).filter((u): u is string => u !== undefined),
    datastores: dsNames(v.datastores),
  };
}
