import { randomBytes } from 'node:crypto';
import { open, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { BoomerangError } from '../../replication/errors.js';
import { FileDisk } from '../../replication/disk.js';
import { descriptorDiskUuid, normalizeDiskUuid } from './vm-disk-uuid.js';

/**
 * Monolithic-flat VMDKs, the layout the MT writes where a datastore is a local directory (vcsim):
 * a small text descriptor `x.vmdk` naming one raw extent `x-flat.vmdk`, whose bytes are the disk's
 * bytes. ESXi's own thick disks use the same pair (createType "vmfs"), and `qemu-img` reads both.
 * The flat file is opened as the replication BlockDevice (FileDisk).
 */

export class VmdkDescriptorError extends BoomerangError {}

export const SECTOR = 512;
const MAX_DESCRIPTOR = 64 * 1024;
/** A hosted sparse VMDK starts with this magic: binary, not a descriptor. */
const SPARSE_MAGIC = Buffer.from('KDMV');

/** Adapter types a VMDK descriptor names (pvscsi and LSI Logic SAS disks say `lsilogic`). */
export type VmdkAdapterType = 'ide' | 'buslogic' | 'lsilogic' | 'legacyESX';

export interface VmdkDescriptor {
  /** `monolithicFlat` (hosted) or `vmfs` (ESXi); both are one flat extent. */
  createType: string;
  sizeBytes: number;
  /** The flat extent's file name, in the descriptor's directory. */
  extentFile: string;
  /** 32 hex digits, when the descriptor has `ddb.uuid`. */
  uuid: string | undefined;
  adapterType: string;
  thinProvisioned: boolean;
  /** Content id (8 hex digits). */
  cid: string;
}

/** `x.vmdk` → `x-flat.vmdk`, as vSphere names a descriptor's flat extent. */
export function flatExtentName(descriptorName: string): string {
  if (!descriptorName.endsWith('.vmdk') || descriptorName.length === '.vmdk'.length) {
    throw new VmdkDescriptorError('VMDK_BAD_NAME', `${descriptorName} is not a .vmdk file name`);
  }
  return `${descriptorName.slice(0, -'.vmdk'.length)}-flat.vmdk`;
}

function geometry(sectors: number, adapterType: string): { cylinders: number; heads: number; sectors: number } {
  const [heads, perTrack, maxCylinders] = adapterType === 'ide' ? [16, 63, 16383] : [255, 63, 65535];
  return { cylinders: Math.max(1, Math.min(maxCylinders, Math.floor(sectors / (heads * perTrack)))), heads, sectors: perTrack };
}

/** The descriptor's text. */
export function formatVmdkDescriptor(d: VmdkDescriptor): string {
  const sectors = d.sizeBytes / SECTOR;
  const g = geometry(sectors, d.adapterType);
  const ddb: [string, string][] = [
    ['ddb.adapterType', d.adapterType],
    ['ddb.geometry.cylinders', String(g.cylinders)],
    ['ddb.geometry.heads', String(g.heads)],
    ['ddb.geometry.sectors', String(g.sectors)],
    ['ddb.longContentID', `${d.cid}${randomBytes(12).toString('hex')}`],
  ];
  if (d.thinProvisioned) ddb.push(['ddb.thinProvisioned', '1']);
  if (d.uuid !== undefined) ddb.push(['ddb.uuid', descriptorDiskUuid(d.uuid)]);
  ddb.push(['ddb.virtualHWVersion', '13']);
  return [
    '# Disk DescriptorFile',
    'version=1',
    'encoding="UTF-8"',
    `CID=${d.cid}`,
    'parentCID=ffffffff',
    `createType="${d.createType}"`,
    '',
    '# Extent description',
    `RW ${sectors} FLAT "${d.extentFile}" 0`,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    ...ddb.map(([k, v]) => `${k} = "${v}"`),
    '',
  ].join('\n');
}

const unquote = (v: string): string => v.trim().replace(/^"(.*)"$/, '$1');

/**
 * Parses a descriptor and checks it is one flat extent at offset 0 in the same directory: the only
 * shape the MT writes through. `source` names the file in errors.
 */
export function parseVmdkDescriptor(text: string, source = 'descriptor'): VmdkDescriptor {
  const bad = (why: string): VmdkDescriptorError => new VmdkDescriptorError('VMDK_BAD_DESCRIPTOR', `${source}: ${why}`);
  const values = new Map<string, string>();
  const extents: { access: string; sectors: number; type: string; file: string; offset: number }[] = [];
  // Writers pad the descriptor with NULs to a sector (qemu does when it updates the CID).
  const body = text.split('\0', 1)[0] ?? '';
  for (const raw of body.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const extent = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)\s+"([^"]*)"(?:\s+(\d+))?$/.exec(line);
    if (extent) {
      extents.push({ access: extent[1] as string, sectors: Number(extent[2]), type: extent[3] as string, file: extent[4] as string, offset: Number(extent[5] ?? 0) });
      continue;
    }
    const kv = /^([A-Za-z0-9_.]+)\s*=\s*(.*)$/.exec(line);
    if (!kv) throw bad(`unreadable line ${JSON.stringify(line.slice(0, 80))}`);
    values.set(kv[1] as string, unquote(kv[2] as string));
  }
  const createType = values.get('createType');
  if (createType !== 'monolithicFlat' && createType !== 'vmfs') throw bad(`createType ${JSON.stringify(createType ?? '')} is not a flat disk (monolithicFlat or vmfs)`);
  if (values.has('parentFileNameHint') || (values.get('parentCID') ?? 'ffffffff') !== 'ffffffff') throw bad('it is a delta disk (it has a parent)');
  const [extent, ...more] = extents;
  if (!extent || more.length > 0) throw bad(`expected one extent, found ${extents.length}`);
  if (extent.type !== 'FLAT' && extent.type !== 'VMFS') throw bad(`extent type ${extent.type} is not FLAT`);
  if (extent.offset !== 0) throw bad('the extent does not start at offset 0');
  if (!Number.isSafeInteger(extent.sectors) || extent.sectors <= 0) throw bad('the extent has no sectors');
  if (extent.file === '' || extent.file.includes('/') || extent.file.includes('\\') || extent.file === '.' || extent.file === '..') {
    throw bad(`the extent file ${JSON.stringify(extent.file)} is not a file in the descriptor's directory`);
  }
  const uuid = values.get('ddb.uuid');
  return {
    createType,
    sizeBytes: extent.sectors * SECTOR,
    extentFile: extent.file,
    uuid: uuid === undefined ? undefined : normalizeDiskUuid(uuid),
    adapterType: values.get('ddb.adapterType') ?? 'lsilogic',
    thinProvisioned: values.get('ddb.thinProvisioned') === '1',
    cid: values.get('CID') ?? 'ffffffff',
  };
}

/** The descriptor at `path`, or undefined when the file is absent or empty (vSphere's stub). */
async function readDescriptorIfAny(path: string): Promise<VmdkDescriptor | undefined> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new VmdkDescriptorError('VMDK_OPEN', `cannot open ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const buf = Buffer.alloc(MAX_DESCRIPTOR + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (bytesRead === 0) return undefined;
    if (buf.subarray(0, 4).equals(SPARSE_MAGIC)) throw new VmdkDescriptorError('VMDK_BAD_DESCRIPTOR', `${path} is a sparse VMDK, not a flat one`);
    if (bytesRead > MAX_DESCRIPTOR) throw new VmdkDescriptorError('VMDK_BAD_DESCRIPTOR', `${path} is larger than a descriptor (${MAX_DESCRIPTOR} bytes)`);
    return parseVmdkDescriptor(buf.subarray(0, bytesRead).toString('utf8'), path);
  } finally {
    await fh.close();
  }
}

/** Reads and checks the descriptor at `path`. */
export async function readFlatVmdk(path: string): Promise<VmdkDescriptor> {
  const d = await readDescriptorIfAny(path);
  if (!d) throw new VmdkDescriptorError('VMDK_NOT_FOUND', `${path} is missing or empty: no VMDK descriptor`);
  return d;
}

export interface CreateFlatVmdkOptions {
  sizeBytes: number;
  /** The disk's UUID (vSphere or descriptor form); kept as `ddb.uuid`. */
  uuid?: string;
  adapterType?: VmdkAdapterType;
  /** Recorded as `ddb.thinProvisioned`; the local flat file is sparse either way. */
  thin?: boolean;
}

/**
 * Makes `path` (`x.vmdk`) a monolithic-flat VMDK of `sizeBytes`: the flat extent `x-flat.vmdk`
 * first (sparse, or an existing 0-byte stub extended), then the descriptor, written whole under a
 * temporary name and renamed, so a descriptor never names a missing or short extent. An existing
 * descriptor of the same size and UUID is kept (idempotent); a different one is refused.
 */
export async function createFlatVmdk(path: string, options: CreateFlatVmdkOptions): Promise<VmdkDescriptor> {
  const { sizeBytes } = options;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % SECTOR !== 0) {
    throw new VmdkDescriptorError('VMDK_BAD_SIZE', `a VMDK size must be a positive multiple of ${SECTOR} bytes, not ${sizeBytes}`);
  }
  const uuid = options.uuid === undefined ? undefined : normalizeDiskUuid(options.uuid);
  const existing = await readDescriptorIfAny(path);
  if (existing) {
    if (existing.sizeBytes !== sizeBytes || (uuid !== undefined && existing.uuid !== uuid)) {
      throw new VmdkDescriptorError('VMDK_EXISTS', `${path} already describes another disk (${existing.sizeBytes} bytes, uuid ${existing.uuid ?? 'none'})`);
    }
    await (await FileDisk.open(join(dirname(path), existing.extentFile), { size: sizeBytes, create: true })).close();
    return existing;
  }
  const descriptor: VmdkDescriptor = {
    createType: 'monolithicFlat',
    sizeBytes,
    extentFile: flatExtentName(basename(path)),
    uuid,
    adapterType: options.adapterType ?? 'lsilogic',
    thinProvisioned: options.thin ?? false,
    cid: randomBytes(4).toString('hex'),
  };
  const flat = await FileDisk.open(join(dirname(path), descriptor.extentFile), { size: sizeBytes, create: true });
  await flat.close();
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, formatVmdkDescriptor(descriptor), { flag: 'wx', mode: 0o644 });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return descriptor;
}

/** A flat VMDK opened for replication: its descriptor and its extent as a BlockDevice. */
export interface OpenFlatVmdk {
  descriptor: VmdkDescriptor;
  disk: FileDisk;
}

/** Opens the flat extent of the VMDK whose descriptor is `path`; its size must match the descriptor. */
export async function openFlatVmdk(path: string, options: { readOnly?: boolean } = {}): Promise<OpenFlatVmdk> {
  const descriptor = await readFlatVmdk(path);
  const disk = await FileDisk.open(join(dirname(path), descriptor.extentFile), { size: descriptor.sizeBytes, readOnly: options.readOnly ?? false });
  return { descriptor, disk };
}
