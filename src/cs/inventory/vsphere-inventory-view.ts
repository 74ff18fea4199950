import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { DatastoreInfo, HostInfo, VmInfo, VsphereInventory } from '../../fabrics/vsphere/inventory.js';
import type { MoRef } from '../../fabrics/vsphere/xml.js';
import type { FabricInventoryRow } from '../db/schema.js';
import { Timestamp, Uuid } from '../domain/names.js';

/**
 * What the API shows of a vsphere fabric's inventory: the stored snapshot with references turned
 * into names (hosts, datastores), and how the last read went.
 */

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

const HostView = Type.Object({
  ref: Type.String({ description: 'managed object id in vCenter' }),
  name: Type.String(),
  datacenter: Type.String(),
  product: Type.Object({ name: Type.String(), version: Type.String(), fullName: Type.String(), line: Type.String({ description: 'embeddedEsx for ESXi' }) }),
  connectionState: Type.String(),
  memoryBytes: Type.Number(),
  memoryUsedBytes: Type.Number(),
  licence: Nullable(Type.Object({ editionKey: Type.String(), name: Type.String(), readOnlyApi: Type.Boolean({ description: 'the free ESXi edition: no writes through the API' }) })),
  datastores: Type.Array(Type.String(), { description: 'names of the datastores the host mounts (ids of those the account cannot see)' }),
});

const DatastoreView = Type.Object({
  ref: Type.String(),
  name: Type.String(),
  datacenter: Type.String(),
  type: Type.Union(['VMFS', 'NFS', 'NFS41', 'vsan', 'vvol', 'other'].map((t) => Type.Literal(t))),
  rawType: Type.String(),
  capacityBytes: Type.Number(),
  freeBytes: Type.Number(),
  url: Type.String(),
  accessible: Type.Boolean(),
  mounts: Type.Array(Type.Object({ host: Type.String(), accessMode: Type.Union([Type.Literal('readWrite'), Type.Literal('readOnly'), Type.Literal('unknown')]), mounted: Type.Boolean(), accessible: Type.Boolean() })),
});

const DiskView = Type.Object({
  key: Type.Integer(),
  label: Type.String(),
  fileName: Type.String(),
  datastore: Nullable(Type.String()),
  capacityBytes: Type.Number(),
  uuid: Nullable(Type.String()),
  backingType: Type.String(),
  thinProvisioned: Nullable(Type.Boolean()),
  diskMode: Nullable(Type.String()),
  controllerType: Type.String(),
  controllerKey: Nullable(Type.Integer()),
  unitNumber: Nullable(Type.Integer()),
});

const VmView = Type.Object({
  ref: Type.String(),
  name: Type.String(),
  datacenter: Type.String(),
  powerState: Type.String(),
  uuid: Nullable(Type.String({ description: 'config.uuid (BIOS UUID)' })),
  instanceUuid: Nullable(Type.String()),
  guestId: Nullable(Type.String()),
  guestFamily: Type.String(),
  toolsRunningStatus: Type.String(),
  toolsStatus: Nullable(Type.String()),
  host: Nullable(Type.String()),
  template: Type.Boolean(),
  memoryBytes: Type.Number(),
  snapshotCount: Type.Integer(),
  enableUuid: Type.Boolean({ description: 'disk.EnableUUID is TRUE in extraConfig' }),
  datastores: Type.Array(Type.String()),
  disks: Type.Array(DiskView),
});

export const InventoryView = Type.Object({
  fabricId: Uuid,
  fabricName: Type.String(),
  status: Type.Union(['pending', 'ok', 'lacking-privileges', 'failed'].map((s) => Type.Literal(s)), {
    description: 'pending: not read yet; lacking-privileges: read, but the account cannot see or do everything Boomerang needs; failed: the last read failed (the previous inventory, if any, is shown)',
  }),
  refreshedAt: Nullable(Timestamp),
  attemptedAt: Nullable(Timestamp),
  error: Nullable(Type.Object({ code: Type.String(), message: Type.String(), remedy: Type.Optional(Type.String()) })),
  vcenter: Nullable(Type.Object({ fullName: Type.String(), apiType: Type.String(), apiVersion: Type.String(), instanceUuid: Nullable(Type.String()) })),
  privileges: Nullable(Type.Object({ checked: Type.Boolean(), missing: Type.Array(Type.String()), hiddenDatastores: Type.Array(Type.String()) })),
  datacenters: Type.Array(Type.String()),
  hosts: Type.Array(HostView),
  datastores: Type.Array(DatastoreView),
  vms: Type.Array(VmView),
});
export type InventoryView = Static<typeof InventoryView>;

function namer(inv: VsphereInventory): (r: MoRef | undefined) => string | null {
  const names = new Map<string, string>();
  for (const o of [...inv.hosts, ...inv.datastores]) names.set(`${o.ref.type}:${o.ref.value}`, o.name);
  return (r) => (r === undefined ? null : (names.get(`${r.type}:${r.value}`) ?? r.value));
}

function hostView(h: HostInfo, name: ReturnType<typeof namer>): Static<typeof HostView> {
  return {
    ref: h.ref.value,
    name: h.name,
    datacenter: h.datacenter,
    product: { name: h.productName, version: h.productVersion, fullName: h.productFullName, line: h.productLine },
    connectionState: h.connectionState,
    memoryBytes: h.memoryBytes,
    memoryUsedBytes: h.memoryUsedBytes,
    licence: h.licence ?? null,
    datastores: h.datastores.map((d) => name(d) ?? d.value),
  };
}

function datastoreView(d: DatastoreInfo, name: ReturnType<typeof namer>): Static<typeof DatastoreView> {
  return {
    ref: d.ref.value,
    name: d.name,
    datacenter: d.datacenter,
    type: d.type,
    rawType: d.rawType,
    capacityBytes: d.capacityBytes,
    freeBytes: d.freeBytes,
    url: d.url,
    accessible: d.accessible,
    mounts: d.mounts.map((m) => ({ host: name(m.host) ?? m.host.value, accessMode: m.accessMode, mounted: m.mounted, accessible: m.accessible })),
  };
}

function vmView(v: VmInfo, name: ReturnType<typeof namer>): Static<typeof VmView> {
  return {
    ref: v.ref.value,
    name: v.name,
    datacenter: v.datacenter,
    powerState: v.powerState,
    uuid: v.uuid ?? null,
    instanceUuid: v.instanceUuid ?? null,
    guestId: v.guestId ?? null,
    guestFamily: v.guestFamily,
    toolsRunningStatus: v.toolsRunningStatus,
    toolsStatus: v.toolsStatus ?? null,
    host: name(v.host),
    template: v.template,
    memoryBytes: v.memoryBytes,
    snapshotCount: v.snapshotCount,
    enableUuid: v.enableUuid,
    datastores: v.datastores.map((d) => name(d) ?? d.value),
    disks: v.disks.map((d) => ({
      key: d.key,
      label: d.label,
      fileName: d.fileName,
      datastore: name(d.datastore),
      capacityBytes: d.capacityBytes,
      uuid: d.uuid ?? null,
      backingType: d.backingType,
      thinProvisioned: d.thinProvisioned ?? null,
      diskMode: d.diskMode ?? null,
      controllerType: d.controllerType,
      controllerKey: d.controllerKey ?? null,
      unitNumber: d.unitNumber ?? null,
    })),
  };
}

/** The API's view of a stored inventory row. */
export function inventoryView(fabric: { id: string; name: string }, row: FabricInventoryRow): InventoryView {
  const inv = row.snapshot === null ? undefined : (JSON.parse(row.snapshot) as VsphereInventory);
  const name = inv === undefined ? () => null : namer(inv);
  return {
    fabricId: fabric.id,
    fabricName: fabric.name,
    status: row.status,
    refreshedAt: row.refreshed_at,
    attemptedAt: row.attempted_at,
    error: row.error === null ? null : (JSON.parse(row.error) as InventoryView['error']),
    vcenter: inv === undefined ? null : { ...inv.about, instanceUuid: inv.about.instanceUuid ?? null },
    privileges: inv?.privileges ?? null,
    datacenters: inv?.datacenters.map((d) => d.name) ?? [],
    hosts: inv?.hosts.map((h) => hostView(h, name)) ?? [],
    datastores: inv?.datastores.map((d) => datastoreView(d, name)) ?? [],
    vms: inv?.vms.map((v) => vmView(v, name)) ?? [],
  };
}
