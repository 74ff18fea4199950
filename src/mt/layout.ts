import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, CorruptionError } from '../replication/errors.js';
import type { StateRecord } from './records.js';
import { readFileIfPresent, replaceFileDurably, syncDir } from '../runtime/durable.js';

/**
 * A disk's retention directory:
 *   LOCK                    pid of the process using it (see lock.ts)
 *   disk.json               which disk this is: id, target path, size (for offline restore)
 *   journal/*.seg           the journal segments
 *   restore-in-place.json   present only while an in-place restore is unfinished
 *   fence.json              present while a resync session's fence holds (see ReplicaDisk.fence)
 */
export interface DiskMeta {
  diskId: string;
  targetPath: string;
  size: number;
}

/** An in-place restore in progress: cut the journal at (segment, offset) and append `state`. */
export interface RestoreIntent {
  segment: number;
  offset: number;
  state: StateRecord;
}

export function journalDir(dir: string): string {
  return join(dir, 'journal');
}

const META = 'disk.json';
const INTENT = 'restore-in-place.json';
const FENCE = 'fence.json';

/** Replaces a small file atomically and durably: written aside, synced, renamed, directory synced. */
export function writeDurably(dir: string, name: string, text: string): Promise<void> {
  return replaceFileDurably(join(dir, name), text);
}

async function readJson(dir: string, name: string): Promise<unknown> {
  const text = await readFileIfPresent(join(dir, name));
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CorruptionError('RETENTION_FILE', `${join(dir, name)} is not valid JSON`, { cause: err });
  }
}

export async function readMeta(dir: string): Promise<DiskMeta | undefined> {
  return (await readJson(dir, META)) as DiskMeta | undefined;
}

/** Creates the directory layout, or checks that it belongs to this disk (and records a moved target). */
export async function prepareRetentionDir(dir: string, meta: DiskMeta): Promise<void> {
  await mkdir(journalDir(dir), { recursive: true });
  const old = await readMeta(dir);
  if (old && (old.diskId !== meta.diskId || old.size !== meta.size))
    throw new ConfigError(
      'RETENTION_MISMATCH',
      `retention directory ${dir} belongs to disk ${old.diskId} of ${old.size} bytes, not ${meta.diskId} of ${meta.size} bytes`,
    );
  if (!old || old.targetPath !== meta.targetPath) await writeDurably(dir, META, JSON.stringify(meta));
}

export async function readIntent(dir: string): Promise<RestoreIntent | undefined> {
  return (await readJson(dir, INTENT)) as RestoreIntent | undefined;
}

export async function writeIntent(dir: string, intent: RestoreIntent): Promise<void> {
  await writeDurably(dir, INTENT, JSON.stringify(intent));
}

export async function removeIntent(dir: string): Promise<void> {
  await rm(join(dir, INTENT), { force: true });
  await syncDir(dir);
}

/** What a resync session fenced off: batches of other lineages sealed before `time`. */
export interface FenceRecord {
  lineage: string;
  time: number;
}

export async function readFence(dir: string): Promise<FenceRecord | undefined> {
  const v = (await readJson(dir, FENCE)) as Partial<FenceRecord> | undefined;
  if (v === undefined) return undefined;
  if (typeof v.lineage !== 'string' || !Number.isSafeInteger(v.time)) throw new CorruptionError('RETENTION_FILE', `${join(dir, FENCE)} is not a fence`);
  return { lineage: v.lineage, time: v.time! };
}

export async function writeFence(dir: string, fence: FenceRecord): Promise<void> {
  await writeDurably(dir, FENCE, JSON.stringify(fence));
}

export async function removeFence(dir: string): Promise<void> {
  await rm(join(dir, FENCE), { force: true });
  await syncDir(dir);
}
