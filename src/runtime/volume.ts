import { access, constants, stat, statfs } from 'node:fs/promises';
import type { VolumeFacts } from '../cs/preflight/facts.js';

/** statfs magic numbers of the file systems a retention volume is likely to be on. */
const FS_TYPES: Record<number, string> = {
  0xef53: 'ext4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x01021994: 'tmpfs',
  0x6969: 'nfs',
  0x4d44: 'vfat',
  0x2011bab0: 'exfat',
  0x5346544e: 'ntfs',
  0x65735546: 'fuse',
  0x2fc12fc1: 'zfs',
  0x794c7630: 'overlay',
};

/** What the master target reports of its retention volume (the pre-flight checks' input). */
export type { VolumeFacts } from '../cs/preflight/facts.js';

/**
 * The facts that decide whether `path` may hold a retention journal (DESIGN §5): its file
 * system, whether it is writable, whether replication targets or the PS cache / the program
 * itself live on the same volume, its size and free space.
 */
export async function volumeFacts(path: string, sameVolumeAs: { targets: string[]; cacheOrInstall: string[] }): Promise<VolumeFacts> {
  const [fs, st] = await Promise.all([statfs(path), stat(path)]);
  const onSameDevice = async (paths: string[]) => {
    for (const p of paths) {
      try {
        if ((await stat(p)).dev === st.dev) return true;
      } catch {
        // a path that does not exist (yet) is not on this volume
      }
    }
    return false;
  };
  const writable = await access(path, constants.W_OK).then(
    () => true,
    () => false,
  );
  return {
    path,
    fsType: FS_TYPES[fs.type] ?? `0x${fs.type.toString(16)}`,
    locked: !writable,
    inUseAsTarget: await onSameDevice(sameVolumeAs.targets),
    cacheOrInstall: await onSameDevice(sameVolumeAs.cacheOrInstall),
    capacityBytes: fs.blocks * fs.bsize,
    freeBytes: fs.bavail * fs.bsize,
  };
}
