import { basename, dirname, join } from 'node:path';
import { BoomerangError } from '../../replication/errors.js';
import { DatastorePathError, findDatastore, localFileFor, parseDatastorePath } from './datastore-path.js';
import { flatExtentName } from './flat-vmdk.js';
import { retrieveFromContainer } from './property-collector.js';
import type { VsphereSession } from './session.js';
import { createVm, hostPlacement } from './vm-create.js';
import { textOf, type MoRef } from './xml.js';

/** A VM made to receive replicated disks: where each disk's data lives for the MT. */
export interface RecoveryVm {
  vm: MoRef;
  disks: { fileName: string; capacityBytes: number; uuid: string | undefined; /** The flat extent the MT writes (local datastores only). */ localPath: string }[];
}

export interface RecoveryVmSpec {
  name: string;
  host: string;
  datastore: string;
  diskSizes: readonly number[];
  /** Disk UUIDs by position (a VM cloned from a template keeps the template's). */
  diskUuids?: readonly string[];
  guestId?: string;
  memoryMB?: number;
  numCPUs?: number;
}

export async function findHost(session: VsphereSession, name: string, signal?: AbortSignal): Promise<MoRef> {
  const hosts = await retrieveFromContainer(session, session.content.rootFolder, [{ type: 'HostSystem', paths: ['name'] }], signal === undefined ? {} : { signal });
  const found = hosts.find((h) => textOf(h.props.get('name')) === name);
  if (!found) throw new BoomerangError('VSPHERE_HOST_NOT_FOUND', `vCenter has no host named ${name}`);
  return found.obj;
}

/** The flat extent behind `[ds] dir/x.vmdk`, as the MT writes it on a local datastore. */
export async function localFlatExtent(session: VsphereSession, fileName: string, signal?: AbortSignal): Promise<string> {
  return (await localFlatExtents(session, [fileName], signal))[0]!;
}

/** The flat extents of several disks, each datastore looked up once (a VM's disks share a few). */
export async function localFlatExtents(session: VsphereSession, fileNames: readonly string[], signal?: AbortSignal): Promise<string[]> {
  const urls = new Map<string, Promise<string>>();
  return Promise.all(
    fileNames.map(async (fileName) => {
      const p = parseDatastorePath(fileName);
      if (p.path === '') throw new DatastorePathError('VSPHERE_BAD_DATASTORE_PATH', `${fileName} names the datastore, not a file`);
      let url = urls.get(p.datastore);
      if (url === undefined) {
        url = findDatastore(session, p.datastore, session.content.rootFolder, signal).then((ds) => ds.url);
        urls.set(p.datastore, url);
      }
      const descriptor = localFileFor(await url, p);
      return join(dirname(descriptor), flatExtentName(basename(descriptor)));
    }),
  );
}

/**
 * Creates a powered-off VM on `host` with thin disks of the given sizes on `datastore`: the
 * recovery machine of alternate-location recovery, or a lab machine.
 */
export async function createRecoveryVm(session: VsphereSession, spec: RecoveryVmSpec, signal?: AbortSignal): Promise<RecoveryVm> {
  const host = await findHost(session, spec.host, signal);
  const placement = await hostPlacement(session, host, signal);
  const ds = await findDatastore(session, spec.datastore, placement.datacenter, signal);
  const created = await createVm(
    session,
    {
      name: spec.name,
      guestId: spec.guestId ?? 'otherLinux64Guest',
      memoryMB: spec.memoryMB ?? 1024,
      numCPUs: spec.numCPUs ?? 1,
      scsiControllerType: 'pvscsi',
      disks: spec.diskSizes.map((sizeBytes, i) => ({ sizeBytes, provisioning: 'thin' as const, ...(spec.diskUuids?.[i] ? { uuid: spec.diskUuids[i] } : {}) })),
      host,
      datastore: { ref: ds.ref, name: ds.name },
      folder: placement.vmFolder,
      pool: placement.pool,
    },
    signal === undefined ? {} : { signal },
  );
  const disks = [];
  for (const d of created.disks) disks.push({ fileName: d.fileName, capacityBytes: d.capacityBytes, uuid: d.uuid, localPath: await localFlatExtent(session, d.fileName, signal) });
  return { vm: created.vm, disks };
}
