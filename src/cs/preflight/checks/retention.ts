import { defaultRetentionPath, type MasterTargetFacts, type Platform, type PreflightFacts, type VolumeFacts } from '../facts.js';
import type { Check, CheckOutcome, ParamValue } from '../types.js';

// The source lists when a master target volume may hold retention (the journal and the recovery
// points): not used for anything else such as a replication target, not locked, not the cache or
// installation volume, not FAT/FAT32, capacity above zero. Each condition is its own check so a
// volume that fails several reports all of them.

const FAT_TYPES = new Set(['fat', 'fat12', 'fat16', 'fat32', 'vfat', 'msdos']);

function normalize(path: string, platform: Platform): string {
  if (platform === 'windows') return path.replace(/\//g, '\\').replace(/\\+$/, '').toUpperCase();
  return path.replace(/\/+$/, '') || '/';
}

function contains(mount: string, path: string, platform: Platform): boolean {
  const m = normalize(mount, platform);
  const p = normalize(path, platform);
  const sep = platform === 'windows' ? '\\' : '/';
  return p === m || p.startsWith(m.endsWith(sep) ? m : m + sep);
}

function retentionPath(mt: MasterTargetFacts): string {
  return mt.retentionPath ?? defaultRetentionPath(mt.platform);
}

/**
 * The volume that holds the retention path: the one with the longest mount path containing it,
 * so `/mnt/retention` that is only a directory on `/` resolves to `/` and is judged as such.
 */
function retentionVolume(mt: MasterTargetFacts): VolumeFacts | undefined {
  const path = retentionPath(mt);
  let best: VolumeFacts | undefined;
  for (const v of mt.volumes) {
    if (contains(v.path, path, mt.platform) && (!best || normalize(v.path, mt.platform).length > normalize(best.path, mt.platform).length)) best = v;
  }
  return best;
}

/**
 * An unregistered MT is reported by `mt-no-heartbeat` (78022) and a missing volume by
 * `retention-volume-missing`; the volume checks pass then.
 */
function volumeCheck(id: string, bad: (v: VolumeFacts, facts: PreflightFacts) => Record<string, ParamValue> | false): Check {
  return {
    id,
    operations: ['enable', 'reprotect'],
    severity: 'error',
    evaluate: (facts): CheckOutcome => {
      const mt = facts.masterTarget;
      const volume = mt.registered ? retentionVolume(mt) : undefined;
      const params = volume && bad(volume, facts);
      if (!volume || !params) return { passed: true };
      return { passed: false, params: { path: retentionPath(mt), volume: volume.path, ...params } };
    },
  };
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : Number(value.toFixed(1))} ${UNITS[unit]}`;
}

export const retentionVolumeMissing: Check = {
  id: 'retention-volume-missing',
  operations: ['enable', 'reprotect'],
  severity: 'error',
  evaluate: ({ masterTarget: mt }) =>
    !mt.registered || retentionVolume(mt) ? { passed: true } : { passed: false, params: { path: retentionPath(mt) } },
};

export const RETENTION_CHECKS: readonly Check[] = [
  retentionVolumeMissing,
  volumeCheck('retention-volume-replication-target', (v) => v.inUseAsTarget && {}),
  volumeCheck('retention-volume-locked', (v) => v.locked && {}),
  volumeCheck('retention-volume-cache', (v) => v.cacheOrInstall && {}),
  volumeCheck('retention-volume-fat', (v) => FAT_TYPES.has(v.fsType.toLowerCase()) && { fsType: v.fsType }),
  volumeCheck('retention-volume-zero-capacity', (v) => v.capacityBytes <= 0 && {}),
  // Zero capacity is its own reason; only a real volume is judged on free space.
  volumeCheck(
    'retention-volume-low-space',
    (v, { thresholds }) =>
      v.capacityBytes > 0 &&
      v.freeBytes < thresholds.retentionRequiredFreeBytes && { free: formatBytes(v.freeBytes), required: formatBytes(thresholds.retentionRequiredFreeBytes) },
  ),
];
