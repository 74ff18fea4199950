import { join } from 'node:path';
import { CorruptionError } from '../replication/errors.js';
import { isDiskId } from '../replication/position.js';
import { writeDurably } from './layout.js';
import { readFileIfPresent } from '../runtime/durable.js';

/**
 * The master target's runtime disk list, `<retention volume>/attachments.json`: the disks
 * attached by lifecycle commands (on top of the configuration's), which disks are frozen, and
 * releases under way. Replaced atomically (tmp, fsync, rename, fsync the directory).
 *
 *   {
 *     "version": 1,
 *     "disks": [ { "id": "disk0", "target": "/abs/disk0.img", "sizeBytes": 1073741824,
 *                  "releasing"?: { "handTo"?: "/abs/path" }, "blobSnapshots"?: true } ],
 *     "frozen": [ "disk0" ]
 *   }
 *
 * `releasing` is written before a release starts and the entry removed once it is done: a crash
 * in between is finished on the next start. `frozen` may name configured disks too.
 */
export const ATTACHMENTS_FILE = 'attachments.json';

export interface Attachment {
  id: string;
  target: string;
  sizeBytes: number;
  /** A release was started: on the next start it is finished, not reopened. */
  releasing?: { handTo?: string };
  /** The disk's own choice of keeping recovery points as blob snapshots; absent follows the MT's. */
  blobSnapshots?: boolean;
}

export interface Attachments {
  version: 1;
  disks: Attachment[];
  /** Disks whose batches are refused (retryably) until they are attached again. */
  frozen: string[];
}

export function emptyAttachments(): Attachments {
  return { version: 1, disks: [], frozen: [] };
}

function bad(path: string, why: string): CorruptionError {
  return new CorruptionError('ATTACHMENTS_FILE', `${path}: ${why}`);
}

function parseAttachment(path: string, v: unknown): Attachment {
  const a = v as Partial<Attachment> | null;
  if (!a || typeof a !== 'object') throw bad(path, 'a disk entry is not an object');
  if (typeof a.id !== 'string' || !isDiskId(a.id)) throw bad(path, `disk id ${JSON.stringify(a.id)} is not valid`);
  if (typeof a.target !== 'string' || a.target.length === 0) throw bad(path, `disk ${a.id} has no target`);
  if (!Number.isSafeInteger(a.sizeBytes) || a.sizeBytes! <= 0 || a.sizeBytes! % 512 !== 0) throw bad(path, `disk ${a.id} has a bad size ${String(a.sizeBytes)}`);
  const out: Attachment = { id: a.id, target: a.target, sizeBytes: a.sizeBytes! };
  if (a.blobSnapshots !== undefined) {
    if (typeof a.blobSnapshots !== 'boolean') throw bad(path, `disk ${a.id} has a bad blobSnapshots ${JSON.stringify(a.blobSnapshots)}`);
    out.blobSnapshots = a.blobSnapshots;
  }
  if (a.releasing !== undefined) {
    const r = a.releasing as { handTo?: unknown } | null;
    if (!r || typeof r !== 'object' || (r.handTo !== undefined && (typeof r.handTo !== 'string' || r.handTo.length === 0))) throw bad(path, `disk ${a.id} has a bad release`);
    out.releasing = typeof r.handTo === 'string' ? { handTo: r.handTo } : {};
  }
  return out;
}

/** Reads the file; a missing one is an empty list. A file that does not validate is refused. */
export async function readAttachments(retentionDir: string): Promise<Attachments> {
  const path = join(retentionDir, ATTACHMENTS_FILE);
  const text = await readFileIfPresent(path);
  if (text === undefined) return emptyAttachments();
  let v: Partial<Attachments>;
  try {
    v = JSON.parse(text) as Partial<Attachments>;
  } catch (err) {
    throw new CorruptionError('ATTACHMENTS_FILE', `${path} is not valid JSON`, { cause: err });
  }
  if (!v || typeof v !== 'object' || v.version !== 1) throw bad(path, `unknown version ${JSON.stringify((v as { version?: unknown } | null)?.version)}`);
  if (!Array.isArray(v.disks)) throw bad(path, 'disks is not a list');
  const frozen = v.frozen ?? [];
  if (!Array.isArray(frozen) || frozen.some((id) => typeof id !== 'string' || !isDiskId(id))) throw bad(path, 'frozen is not a list of disk ids');
  const disks = v.disks.map((d) => parseAttachment(path, d));
  const ids = new Set<string>();
  for (const d of disks) {
    if (ids.has(d.id)) throw bad(path, `disk ${d.id} is listed twice`);
    ids.add(d.id);
  }
  return { version: 1, disks, frozen: [...new Set(frozen)] };
}

export async function writeAttachments(retentionDir: string, a: Attachments): Promise<void> {
  await writeDurably(retentionDir, ATTACHMENTS_FILE, `${JSON.stringify(a, null, 2)}\n`);
}
