import type { PreflightFacts, VsphereFacts } from '../facts.js';
import type { Check, CheckOutcome, Operation } from '../types.js';

// The source's VMware prerequisites for reprotect and failback (DESIGN §5), decided from what the
// last vCenter discovery found. Sites that are not vSphere have no `vsphere` facts: these pass.
// An account without the privileges to see everything fails `vsphere-account-privileges` alone:
// what it could not see would otherwise show as other failures with the wrong remedy.

const PASS: CheckOutcome = { passed: true };

function whenVsphere(evaluate: (v: VsphereFacts, facts: PreflightFacts) => CheckOutcome): (facts: PreflightFacts) => CheckOutcome {
  return (facts) => (facts.vsphere === undefined || facts.vsphere.missingPrivileges.length > 0 ? PASS : evaluate(facts.vsphere, facts));
}

function vsphereCheck(id: string, operations: readonly Operation[], evaluate: (v: VsphereFacts, facts: PreflightFacts) => CheckOutcome, extra: Partial<Check> = {}): Check {
  return { id, operations, severity: 'error', evaluate: whenVsphere(evaluate), ...extra };
}

export const vsphereAccountPrivileges: Check = {
  id: 'vsphere-account-privileges',
  operations: ['reprotect', 'failback'],
  severity: 'error',
  evaluate: ({ vsphere }) =>
    vsphere === undefined || vsphere.missingPrivileges.length === 0
      ? PASS
      : { passed: false, params: { fabric: vsphere.fabric, privileges: vsphere.missingPrivileges.join(', ') } },
};

/** ESXi reports product line `embeddedEsx` (older releases `esx`). */
function isEsxi(productLine: string): boolean {
  return productLine === 'embeddedEsx' || productLine === 'esx';
}

/** The MT must be a VM on an ESXi host: its disks are hot-added there. */
export const vsphereTargetNotEsxi = vsphereCheck('vsphere-target-not-esxi', ['reprotect'], (v) =>
  v.mtHost !== null && isEsxi(v.mtHost.productLine) ? PASS : { passed: false, params: { fabric: v.fabric, host: v.mtHost?.name ?? '-' } },
);

/** The free ESXi licence makes the API read-only: no disk can be attached, no VM created or powered on. */
export const vsphereFreeLicence = vsphereCheck('vsphere-free-licence', ['reprotect', 'failback'], (v) => {
  const host = [v.mtHost, v.targetHost].find((h) => h?.licence.readOnlyApi === true);
  return host ? { passed: false, params: { host: host.name, licence: host.licence.name } } : PASS;
});

export const mtVmSnapshots = vsphereCheck('mt-vm-snapshots', ['reprotect'], (v) =>
  v.mtVm === null || v.mtVm.snapshots === 0 ? PASS : { passed: false, params: { vm: v.mtVm.name, snapshots: v.mtVm.snapshots } },
);

/** The reprotect job removes the target VM's snapshots (their disks are the replicas), so this only warns. */
export const targetVmSnapshots = vsphereCheck(
  'target-vm-snapshots',
  ['reprotect'],
  (v) => (v.targetVm === null || v.targetVm.snapshots === 0 ? PASS : { passed: false, params: { vm: v.targetVm.name, snapshots: v.targetVm.snapshots } }),
  { severity: 'warning' },
);

/** Without `disk.EnableUUID` the guest sees no disk UUIDs, and the MT cannot tell hot-added disks apart. */
export const mtEnableUuid = vsphereCheck('mt-enable-uuid', ['reprotect'], (v) =>
  v.mtVm === null || v.mtVm.enableUuid ? PASS : { passed: false, params: { vm: v.mtVm.name } },
);

export const mtToolsNotRunning = vsphereCheck('mt-tools-not-running', ['reprotect'], (v) =>
  v.mtVm === null || v.mtVm.toolsRunning ? PASS : { passed: false, params: { vm: v.mtVm.name } },
);

export const noUsableDatastore = vsphereCheck('no-usable-datastore', ['reprotect'], (v) =>
  v.mtHost === null || v.usableDatastores.length > 0 ? PASS : { passed: false, params: { host: v.mtHost.name } },
);

/** With no usable datastore at all, `no-usable-datastore` reports it. */
export const datastoreNotAccessible = vsphereCheck(
  'datastore-not-accessible',
  ['reprotect'],
  (v) => {
    const ds = v.datastore;
    if (ds === null || v.mtHost === null || v.usableDatastores.length === 0 || (ds.accessible && ds.mountedReadWrite)) return PASS;
    return { passed: false, params: { datastore: ds.name, host: v.mtHost.name } };
  },
  { code: 8061 },
);

export const vmNameTaken = vsphereCheck(
  'vm-name-taken',
  ['reprotect'],
  (v) => (v.newVm === undefined || !v.newVm.nameTaken ? PASS : { passed: false, params: { vm: v.newVm.name, host: v.mtHost?.name ?? '-' } }),
  { code: 78052 },
);

/** VMs cloned from one template share disk UUIDs; the MT would then find the wrong disk by UUID. */
export const diskUuidCollision = vsphereCheck('disk-uuid-collision', ['reprotect'], (v) => {
  if (v.mtVm === null || v.targetVm === null) return PASS;
  const mine = new Set(v.mtVm.diskUuids.map((u) => u.toLowerCase()));
  const shared = v.targetVm.diskUuids.find((u) => mine.has(u.toLowerCase()));
  return shared === undefined ? PASS : { passed: false, params: { vm: v.targetVm.name, mtVm: v.mtVm.name, uuid: shared } };
});

const MiB = 1024 * 1024;

export const hostMemory = vsphereCheck(
  'host-memory',
  ['failback'],
  (v) => {
    const host = v.targetHost;
    const vm = v.targetVm;
    if (host === null || vm === null || vm.powerState === 'poweredOn') return PASS;
    const free = host.memoryBytes - host.memoryUsedBytes;
    return free >= vm.memoryBytes ? PASS : { passed: false, params: { vm: vm.name, host: host.name, neededMiB: Math.ceil(vm.memoryBytes / MiB), freeMiB: Math.floor(free / MiB) } };
  },
  { code: 8038 },
);

/** Storage vMotion (or SDRS) moved the MT's or the target VM's disks after reprotect recorded where they are. */
export const storageMoved = vsphereCheck('storage-moved', ['failback'], (v) => {
  const first = v.moved[0];
  return first === undefined ? PASS : { passed: false, params: { what: first.what, from: first.from, to: first.to } };
});

export const VSPHERE_CHECKS: readonly Check[] = [
  vsphereAccountPrivileges,
  vsphereTargetNotEsxi,
  vsphereFreeLicence,
  mtVmSnapshots,
  targetVmSnapshots,
  mtEnableUuid,
  mtToolsNotRunning,
  noUsableDatastore,
  datastoreNotAccessible,
  vmNameTaken,
  diskUuidCollision,
  hostMemory,
  storageMoved,
];
