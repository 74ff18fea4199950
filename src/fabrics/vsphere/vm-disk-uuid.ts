import { randomBytes } from 'node:crypto';
import { lstat, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { BoomerangError } from '../../replication/errors.js';

/**
 * Virtual disk UUIDs and how a guest sees them. vSphere shows a disk's UUID as
 * `6000C29b-6a2c-35f8-803b-7ee50c7a1d5b` (`backing.uuid`); the VMDK descriptor stores the same
 * 16 bytes as `ddb.uuid = "60 00 C2 9b 6a 2c 35 f8-80 3b 7e e5 0c 7a 1d 5b"`. With
 * `disk.EnableUUID = TRUE` in the VM's extraConfig, ESXi reports those 16 bytes to the guest as the
 * SCSI disk's NAA identifier (VPD page 0x83), so Linux udev names the device
 * `/dev/disk/by-id/wwn-0x6000c29b6a2c35f8803b7ee50c7a1d5b` and
 * `/dev/disk/by-id/scsi-36000c29b6a2c35f8803b7ee50c7a1d5b` (`3` is udev's prefix for an NAA id).
 * Without it the guest sees no identifier and the MT cannot tell hot-added disks apart: the reason
 * the pre-flight check insists on `disk.EnableUUID` on the MT VM.
 */

export class DiskUuidError extends BoomerangError {}

/** The 32 lower-case hex digits of a disk UUID given in either vSphere or descriptor form. */
export function normalizeDiskUuid(uuid: string): string {
  const hex = uuid.replace(/[\s-]/g, '').toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new DiskUuidError('VSPHERE_BAD_DISK_UUID', `${JSON.stringify(uuid.slice(0, 80))} is not a disk UUID (16 bytes in hex)`);
  return hex;
}

/** `6000C29b-6a2c-35f8-803b-7ee50c7a1d5b`, as `backing.uuid` shows it. */
export function backingDiskUuid(uuid: string): string {
  const h = normalizeDiskUuid(uuid);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`.replace(/^6000c29/, '6000C29');
}

/** `60 00 C2 9b 6a 2c 35 f8-80 3b 7e e5 0c 7a 1d 5b`, as a descriptor's `ddb.uuid` holds it. */
export function descriptorDiskUuid(uuid: string): string {
  const bytes = normalizeDiskUuid(uuid).match(/../g) as string[];
  return `${bytes.slice(0, 8).join(' ')}-${bytes.slice(8).join(' ')}`;
}

/** A new UUID in ESXi's style (the VMware NAA prefix 6000C29 followed by random digits). */
export function newDiskUuid(): string {
  return backingDiskUuid(`6000c29${randomBytes(13).toString('hex').slice(0, 25)}`);
}

/** The `/dev/disk/by-id` names a Linux MT gives the disk with this UUID, most specific first. */
export function byIdNamesForDiskUuid(uuid: string): string[] {
  const hex = normalizeDiskUuid(uuid);
  return [`wwn-0x${hex}`, `scsi-3${hex}`];
}

/**
 * The MT's block device for a hot-added disk, found by its UUID under `/dev/disk/by-id` (or
 * `byIdDir`): the resolved device path, or undefined while udev has not (yet) named it.
 */
export async function deviceForDiskUuid(uuid: string, byIdDir = '/dev/disk/by-id'): Promise<string | undefined> {
  for (const name of byIdNamesForDiskUuid(uuid)) {
    const link = join(byIdDir, name);
    if (!(await lstat(link).then(() => true, () => false))) continue;
    const device = await realpath(link).catch(() => undefined); // a dangling link: the device went away
    if (device !== undefined) return device;
  }
  return undefined;
}
